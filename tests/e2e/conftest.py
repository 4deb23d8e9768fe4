"""Fixtures for whole-gateway tests: separate role processes on the real RabbitMQ and Redis, the fake
Telegram Bot API and a real SMTP server, all on localhost."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.procs import GatewayProcess
from tests.e2e.smtp_sink import SmtpSink
from tests.fakes import FakeTelegram, telegram_update_request

SECRET = "e2e-secret"

STORIES = """\
bot:
  fallback: fallback
stories:
  greet:
    triggers: [hi]
    steps:
      - id: ask
        actions:
          - message: "What's your name?"
            quick_replies: [Ada, Grace]
        next: save
      - id: save
        actions:
          - set_user: {Name: "{{@message}}"}
          - message: "Nice to meet you, {{@user.Name}}."
  ticket:
    triggers: [help]
    steps:
      - id: ask
        actions:
          - message: What is the problem?
        next: send
      - id: send
        actions:
          - email:
              to: support@example.com
              subject: "Ticket from {{@user.Name || 'someone'}}"
              body: "The user wrote: <<@message>>"
          - message: Ticket sent.
  count:
    triggers: ["re:^n\\\\d+$"]
    steps:
      - id: echo
        actions:
          - message: "got {{@message}}"
  fallback:
    steps:
      - id: sorry
        actions:
          - message: "Sorry, try hi or help."
"""


def write_stories(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.yml").write_text(STORIES)
    return folder


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = await SmtpSink().start()
    yield sink
    await sink.stop()


@pytest.fixture
def role_env(
    amqp_url: str,
    redis_url: str,
    queue_prefix: str,
    redis_prefix: str,
    tmp_path: Path,
    telegram: FakeTelegram,
    smtp: SmtpSink,
) -> dict[str, str]:
    """The settings every role of one test deployment shares."""
    return {
        "GATEWAY_AMQP_URL": amqp_url,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_QUEUE_PREFIX": queue_prefix,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_PARTITIONS": "4",
        "GATEWAY_STORIES": str(write_stories(tmp_path / "stories")),
        "GATEWAY_SMTP_URL": smtp.url,
        "GATEWAY_PORT": "0",
        "GATEWAY_CONNECT_TIMEOUT": "10s",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }


Start = Callable[..., Awaitable[GatewayProcess]]


@pytest.fixture
async def start_role(role_env: dict[str, str]) -> AsyncIterator[Start]:
    """``await start_role("worker", GATEWAY_X="...")`` → a started role process, stopped after the test."""
    started: list[GatewayProcess] = []

    async def start(command: str, *args: str, wait_ready: bool = True, **env: str) -> GatewayProcess:
        process = await GatewayProcess(command, *args, env={**role_env, **env}).start()
        started.append(process)
        if wait_ready:
            await process.wait_for(r"INFO .*: ready$")
        return process

    yield start
    for process in started:
        await process.stop()
        print(f"--- gateway {' '.join(process.args)}:\n{process.output()}")  # shown when a test fails


class TelegramUser:
    """Posts updates to a `serve` process as Telegram would, for one chat."""

    def __init__(self, http: aiohttp.ClientSession, address: str, chat_id: int, first_update: int) -> None:
        self.http = http
        self.address = address
        self.chat_id = chat_id
        self.next_update = first_update

    async def post(self, update: dict[str, Any], secret: str | None = SECRET) -> int:
        request = telegram_update_request(update, secret)
        async with self.http.post(
            self.address + request.path, data=request.body, headers=request.headers
        ) as r:
            return r.status

    async def say(self, text: str) -> int:
        from tests.fakes import telegram_text_update

        self.next_update += 1
        return await self.post(telegram_text_update(self.next_update, self.chat_id, text))

    async def press(self, data: str, title: str) -> int:
        from tests.fakes import telegram_callback_update

        self.next_update += 1
        return await self.post(telegram_callback_update(self.next_update, self.chat_id, data, title=title))


def sent_texts(telegram: FakeTelegram, chat_id: int | None = None) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in telegram.calls_to("sendMessage", ok=True)
        if chat_id is None or str(c.params.get("chat_id")) == str(chat_id)
    ]

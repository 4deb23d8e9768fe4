"""A test deployment of `gateway` role processes: the stories it runs, a Telegram user talking to its
`serve` process, what the bot sent, and its queues on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.fakes import (
    FakeTelegram,
    telegram_callback_update,
    telegram_text_update,
    telegram_update_request,
)
from tests.support.processes import GatewayProcess

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
        self.next_update += 1
        return await self.post(telegram_text_update(self.next_update, self.chat_id, text))

    async def press(self, data: str, title: str) -> int:
        self.next_update += 1
        return await self.post(telegram_callback_update(self.next_update, self.chat_id, data, title=title))


def sent_texts(telegram: FakeTelegram, chat_id: int | None = None) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in telegram.calls_to("sendMessage", ok=True)
        if chat_id is None or str(c.params.get("chat_id")) == str(chat_id)
    ]


async def address_of(serve: GatewayProcess) -> str:
    return (await serve.wait_for(r"listening on (http://\S+)")).group(1)


def queue_depths(vhost: str, prefix: str) -> dict[str, int]:
    """Messages ready or unacknowledged in each of the test's queues."""
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    out = subprocess.run(
        [ctl, "-q", "list_queues", "-p", vhost, "name", "messages"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    depths = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith(prefix + ".") and parts[1].isdigit():
            depths[parts[0]] = int(parts[1])
    return depths


async def wait_until_drained(vhost: str, prefix: str, timeout: float = 20.0) -> None:
    """Until every work queue of the test is empty and nothing is unacknowledged (dead letters aside)."""
    async with asyncio.timeout(timeout):
        while True:
            busy = {q: n for q, n in queue_depths(vhost, prefix).items() if n and ".dead." not in q}
            if not busy:
                return
            await asyncio.sleep(0.2)  # rabbitmqctl offers no event to wait on

"""Support desks under load: how fast a person's email answer reaches the user, and how many mails the
inbox takes. Each figure beside a baseline measured in the same run, on the same deployment.

The deployment: ``gateway serve`` (Telegram, against a fake Bot API in this process), two ``gateway
worker``, ``gateway mailer`` (tickets to an outbox folder) and ``gateway inbox`` (SMTP), as separate
processes on the machine's RabbitMQ (a vhost of its own) and Redis (a prefix of its own).

1. ``--conversations`` users (200) each write "human" then their problem: the story hands every one over
   to the email desk.
2. Latency: staff answers are mailed to the inbox at ``--rate`` (50/s, an open loop: each starts on time
   whether or not the ones before were answered), each to one of the handed-over conversations through
   its signed reply address. Measured: from the inbox's ``250`` (the answer is accepted: published with
   confirm) to the fake Bot API receiving the answer for that chat. Goal: p99 <= 500 ms.
   Baseline, same rate, same deployment, just before: a user's message posted to the webhook until the
   bot's reply reaches the same fake API (a conversation not handed over).
3. Intake: ``--mails`` (2,000) answers sent by ``--clients`` (16) SMTP connections at once, each a new
   mail; mails/s from the first to the last ``250``. Goal: >= 200 mails/s.

    .venv/bin/python bench/desk_bench.py [--conversations 200] [--rate 50] [--answers 500] [--mails 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import delete_keys, free_port, percentile, rabbit_vhost  # noqa: E402
from bench.http_bench import Processes, wait_ready  # noqa: E402
from gateway.core.desk import reply_address  # noqa: E402
from gateway.core.schema import ConversationKey  # noqa: E402
from tests.support.fakes import FakeTelegram, telegram_text_update  # noqa: E402

SECRET = "desk-bench-webhook"
KEY = "desk-bench-secret-key"
INBOX = "desk@bot.example.com"
STAFF = "agent@example.com"
STORIES = """\
bot:
  fallback: echo
stories:
  echo:
    steps:
      - id: say
        actions:
          - message: "You said {{@message}}"
  human:
    triggers: [human]
    steps:
      - id: ask
        actions:
          - message: What is the problem?
        next: hand
      - id: hand
        actions:
          - set_session: {Problem: "{{@message}}"}
          - message: Passing you to a person.
          - handoff:
              desk: email
              to: support@example.com
              summary: "{{@session.Problem}}"
              until: 24h
"""


class BotApi(FakeTelegram):
    """The fake Bot API, resolving a future when a chat receives a text it waits for."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: dict[tuple[str, str], asyncio.Future[int]] = {}

    def expect(self, chat: int, text: str) -> asyncio.Future[int]:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting[(str(chat), text)] = future
        return future

    async def record(
        self, method: str, params: dict[str, Any], request: web.Request, status: int, error: str | None = None
    ) -> None:
        if method != "sendMessage":
            return
        future = self.waiting.pop((str(params.get("chat_id")), str(params.get("text", ""))), None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter_ns())


def answer_mail(chat: int, text: str, number: int) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = f"Agent <{STAFF}>"
    mail["To"] = reply_address(KEY, ConversationKey("telegram", str(chat), str(chat)), INBOX)
    mail["Subject"] = "Re: Conversation with you"
    mail["Message-ID"] = f"<answer-{number}-{uuid.uuid4().hex}@example.com>"
    mail.set_content(f"{text}\n\nOn Mon, the gateway wrote:\n> the ticket\n")
    return mail


async def post_update(http: aiohttp.ClientSession, url: str, update: dict[str, Any]) -> None:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with http.post(f"{url}/webhooks/telegram", json=update, headers=headers) as response:
        assert response.status == 200, response.status


async def paced(rate: float, count: int, start: Any) -> list[float]:
    """Start ``count`` calls of ``start(n)`` at ``rate`` per second (an open loop); their results
    (seconds, as bench.common.percentile takes them)."""
    began = time.perf_counter()
    tasks = []
    for n in range(count):
        delay = began + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(start(n)))
    return list(await asyncio.gather(*tasks))


def show(name: str, values: list[float]) -> str:
    return (
        f"{name}: p50 {percentile(values, 0.5):.1f} ms, p99 {percentile(values, 0.99):.1f} ms, "
        f"max {max(values) * 1000:.1f} ms ({len(values)})"
    )


async def run(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="desk-bench-"))
    (folder / "stories").mkdir()
    (folder / "stories" / "bot.yml").write_text(STORIES)
    port, smtp_port, prefix = free_port(), free_port(), f"db{uuid.uuid4().hex[:6]}"
    updates = itertools.count(1)
    print(f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    with rabbit_vhost() as (vhost, _):
        async with BotApi() as api, aiohttp.ClientSession() as http:
            env = {
                **os.environ,
                "GATEWAY_AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                "GATEWAY_REDIS_URL": args.redis,
                "GATEWAY_QUEUE_PREFIX": prefix,
                "GATEWAY_REDIS_PREFIX": prefix,
                "GATEWAY_STORIES": str(folder / "stories"),
                "GATEWAY_PORT": str(port),
                "GATEWAY_LOG_LEVEL": "warning",
                "GATEWAY_RATE_LIMITS": "false",
                "TELEGRAM_BOT_TOKEN": api.token,
                "TELEGRAM_API_URL": api.url,
                "TELEGRAM_WEBHOOK_SECRET": SECRET,
                "GATEWAY_OUTBOX": str(folder / "outbox"),
                "GATEWAY_SECRET_KEY": KEY,
                "GATEWAY_INBOX_ADDRESS": INBOX,
                "GATEWAY_INBOX_PORT": str(smtp_port),
                "GATEWAY_STAFF": STAFF,
                "PYTHONPATH": str(ROOT),
            }
            roles = ["serve", "worker", "worker", "mailer", "inbox"]
            processes = Processes([[sys.executable, "-m", "gateway.app.cli", r] for r in roles], ROOT, env)
            url = f"http://127.0.0.1:{port}"
            try:
                await wait_ready(f"{url}/readyz")
                await wait_smtp(smtp_port)
                chats = [700_000 + n for n in range(args.conversations)]

                async def say(chat: int, text: str, expected: str) -> float:
                    arrived = api.expect(chat, expected)
                    started = time.perf_counter_ns()
                    await post_update(http, url, telegram_text_update(next(updates), chat, text))
                    return (await asyncio.wait_for(arrived, 30) - started) / 1e9

                await asyncio.gather(*(say(c, "human", "What is the problem?") for c in chats))
                await asyncio.gather(*(say(c, f"problem {c}", "Passing you to a person.") for c in chats))
                print(f"{len(chats)} conversations handed over to the email desk", flush=True)

                others = [800_000 + n for n in range(args.conversations)]
                baseline = await paced(
                    args.rate, args.answers, lambda n: say(others[n % len(others)], f"m{n}", f"You said m{n}")
                )
                print(show(f"baseline: a bot reply at {args.rate:g} msg/s (webhook to Bot API)", baseline))

                async def answer(n: int) -> float:
                    chat = chats[n % len(chats)]
                    text = f"answer {n}"
                    arrived = api.expect(chat, text)
                    await aiosmtplib.send(answer_mail(chat, text, n), hostname="127.0.0.1", port=smtp_port)
                    accepted = time.perf_counter_ns()
                    return (await asyncio.wait_for(arrived, 30) - accepted) / 1e9

                answers = await paced(args.rate, args.answers, answer)
                print(show(f"staff answer at {args.rate:g}/s, accepted by the inbox to Bot API", answers))
                p99 = percentile(answers, 0.99)
                verdict = "met" if p99 <= 500 else "MISSED"
                print(f"== goal p99 <= 500 ms: {verdict} ({p99:.0f} ms)", flush=True)

                intake = await mails_per_second(args, chats, smtp_port)
                print(f"inbox intake: {intake:.0f} mails/s, {args.clients} SMTP clients, {args.mails} mails")
                print(f"== goal >= 200 mails/s: {'met' if intake >= 200 else 'MISSED'}", flush=True)
            finally:
                processes.stop()
                await delete_keys(args.redis, f"{prefix}:*")
                shutil.rmtree(folder, ignore_errors=True)
                print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)


async def wait_smtp(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
            await smtp.connect()
            await smtp.quit()
            return
        except (OSError, aiosmtplib.SMTPException):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)  # a starting process offers no event to wait on


async def mails_per_second(args: argparse.Namespace, chats: list[int], port: int) -> float:
    """``args.mails`` answers over ``args.clients`` connections at once; rate from first to last 250."""
    numbers = iter(range(10_000_000, 10_000_000 + args.mails))

    async def client() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await smtp.connect()
        for n in numbers:
            chat = chats[n % len(chats)]
            await smtp.send_message(answer_mail(chat, f"bulk {n}", n))
        await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.clients)))
    return args.mails / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--answers", type=int, default=500)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

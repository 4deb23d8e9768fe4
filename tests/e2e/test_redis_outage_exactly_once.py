"""Redis restarted while many conversations are in flight: every reply and every email exactly once, in
order, and every role handling messages again shortly after Redis answers.

The record of an effect ("this reply was sent") cannot be written while Redis is away; the effect must not
be repeated because of that. Before the fix, a reply sent in the moment Redis went away was sent again
once Redis came back (the deliverer retried the whole handler, send included).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import aiohttp

from tests.support.deployment import TelegramUser, address_of, wait_until_drained
from tests.support.fakes import FakeTelegram
from tests.support.faults import PrivateRedis
from tests.support.processes import Start
from tests.support.smtp_sink import SmtpSink

USERS = 120
SCRIPT = ["hi", "Ada", "help", "the printer is on fire"]
EXPECTED = ["What's your name?", "Nice to meet you, Ada.", "What is the problem?", "Ticket sent."]


async def converse(user: TelegramUser) -> None:
    """One user's four messages, each posted until the gateway takes it (it may answer 503 meanwhile)."""
    for text in SCRIPT:
        while await user.say(text) != 200:
            user.next_update -= 1  # the same update again, as Telegram retries it


async def test_redis_restart_mid_flight_sends_each_reply_and_email_once(
    start_role: Start,
    telegram: FakeTelegram,
    smtp: SmtpSink,
    tmp_path: Path,
    rabbit_vhost: str,
    queue_prefix: str,
) -> None:
    redis = PrivateRedis(tmp_path)
    await redis.start()
    try:
        env = {"GATEWAY_REDIS_URL": redis.url, "GATEWAY_RATE_LIMITS": "false"}
        serve = await start_role("serve", **env)
        workers = [await start_role("worker", **env) for _ in range(2)]
        mailer = await start_role("mailer", **env)
        address = await address_of(serve)
        async with aiohttp.ClientSession() as http:
            users = [
                TelegramUser(http, address, chat_id=9000 + n, first_update=100 * n) for n in range(USERS)
            ]
            talking = asyncio.gather(*(converse(user) for user in users))
            await telegram.wait_for_calls(USERS, method="sendMessage", ok=True, timeout=60)
            await redis.stop()  # while replies, commits and emails are in flight
            await redis.start()
            back = time.monotonic()
            sent_before = len(telegram.calls_to("sendMessage", ok=True))
            await telegram.wait_for_calls(sent_before + 1, method="sendMessage", ok=True, timeout=30)
            print(f"first reply {time.monotonic() - back:.2f} s after Redis answered again")
            await talking
            await telegram.wait_for_calls(USERS * len(SCRIPT), method="sendMessage", ok=True, timeout=90)
            await smtp.wait_for(USERS, timeout=60)
        await wait_until_drained(rabbit_vhost, queue_prefix, timeout=60)

        by_chat: dict[str, list[str]] = {}
        for call in telegram.calls_to("sendMessage", ok=True):
            by_chat.setdefault(str(call.params["chat_id"]), []).append(str(call.params["text"]))
        doubled = {chat: texts for chat, texts in by_chat.items() if texts != EXPECTED}
        some = list(doubled.items())[:3]
        assert not doubled, f"{len(doubled)} chats got other replies than once each, in order: {some}"
        assert len(by_chat) == USERS
        emails = Counter(str(message["Message-ID"]) for message in smtp.messages)
        assert len(emails) == USERS and all(n == 1 for n in emails.values()), emails
        for process in (serve, *workers, mailer):
            assert process.process is not None and process.process.returncode is None
    finally:
        await redis.stop()

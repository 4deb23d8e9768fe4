"""The user's data across separate `serve`, `worker` and `mailer` processes on the real RabbitMQ and Redis:
an erase reaches everything kept (a queued email, a dead letter, a web chat user's markers) and leaves no
key naming the user; a broadcast to 1,000 users survives a kill -9 of the worker running it; retention
erases an idle user."""

from __future__ import annotations

import asyncio
import re
import signal
import time

import aiohttp

from gateway.core.schema import ConversationKey
from gateway.core.services import build_user_stores
from gateway.core.store.base import Commit
from gateway.core.store.redis import RedisStore
from tests.support.admin import ADMIN_TOKENS, Admin, keys_naming
from tests.support.bus import eventually
from tests.support.deployment import TelegramUser, address_of, sent_texts
from tests.support.fakes import FakeTelegram
from tests.support.processes import GatewayProcess, Start
from tests.support.smtp_sink import SmtpSink
from tests.support.webchat import Browser


async def meet(user: TelegramUser, telegram: FakeTelegram, name: str) -> None:
    before = len(telegram.calls_to("sendMessage", ok=True))
    assert await user.say("hi") == 200
    question = (await telegram.wait_for_calls(before + 1, method="sendMessage", ok=True))[before]
    keyboard = question.params["reply_markup"]["inline_keyboard"]
    button = next(b for row in keyboard for b in row if b["text"] == name)
    assert await user.press(button["callback_data"], name) == 200
    await telegram.wait_for_calls(before + 2, method="sendMessage", ok=True)


async def dead_letter_of(admin: Admin, channel: str, user: str) -> None:
    """Until the user's export shows a dead letter (the broker stores it a moment after the refusal)."""

    async def found() -> bool:
        status, exported = await admin.call("GET", f"/users/{channel}/{user}/export")
        return status == 200 and len(exported["dead_letters"]) == 1

    await eventually(found)


async def test_an_erase_reaches_everything_and_leaves_no_key_naming_the_user(
    start_role: Start,
    telegram: FakeTelegram,
    smtp: SmtpSink,
    http: aiohttp.ClientSession,
    redis_url: str,
    redis_prefix: str,
) -> None:
    serve = await start_role("serve", GATEWAY_ADMIN_TOKEN=ADMIN_TOKENS)
    await start_role("worker")
    address = await address_of(serve)
    admin = Admin(http, address)
    ada, bob = TelegramUser(http, address, 4242, 100), TelegramUser(http, address, 5151, 900)
    await meet(ada, telegram, "Ada")
    assert await ada.say("help") == 200
    assert await ada.say("my data, please") == 200  # a ticket email, queued: no mailer runs yet
    await telegram.wait_for_calls(4, method="sendMessage", ok=True)
    telegram.blocked_chats.update({"4242", "5151"})
    assert await ada.say("n1") == 200  # the reply is refused (blocked): dead-lettered with its words
    assert await bob.say("n2") == 200
    await dead_letter_of(admin, "telegram", "4242")
    await dead_letter_of(admin, "telegram", "5151")
    telegram.blocked_chats.clear()
    browser = Browser(http, address)
    web_user = await browser.open()
    await browser.say("hi")
    await browser.next_replies(1)
    await browser.press("Grace")
    assert await browser.next_replies(1) == ["Nice to meet you, Grace."]

    status, exported = await admin.call("GET", "/users/telegram/4242/export")
    assert status == 200 and exported["attributes"] == {"Name": "Ada"}
    [ticket] = [job for message in exported["messages"] for job in message["emails"]]
    assert ticket["text"] == "The user wrote: my data, please"
    assert exported["dead_letters"][0]["message"]["text"] == "got n1"

    status, erased = await admin.call("DELETE", "/users/telegram/4242")
    assert status == 200, erased
    assert erased["erased"] == {
        "attributes": 1, "opted_out": False, "sessions": 1, "records": {}, "messages": 5,
        "index_entry": True, "email_jobs_cancelled": 1, "dead_letters": 1, "held_web_chat_replies": 0,
    }  # fmt: skip
    status, erased = await admin.call("DELETE", f"/users/webchat/{web_user}")
    assert (status, erased["erased"]["attributes"], erased["erased"]["messages"]) == (200, 1, 2)

    mailer = await start_role("mailer")  # the queued ticket is dropped, not sent
    await mailer.wait_for(rf"email {re.escape(ticket['id'])} was sent already; dropped")
    assert smtp.messages == []
    status, bobs = await admin.call("GET", "/users/telegram/5151/export")
    assert len(bobs["dead_letters"]) == 1, "another user's dead letter stays"
    for erased_user in ("4242", web_user):
        assert await keys_naming(redis_url, redis_prefix, erased_user) == [], erased_user
    assert await keys_naming(redis_url, redis_prefix, "5151") != [], "the scan finds what is there"

    assert await ada.say("hi") == 200
    await telegram.wait_for_calls(5, method="sendMessage", ok=True)
    assert sent_texts(telegram, 4242)[-1] == "What's your name?", "greeted as new"
    await browser.say("hi")
    assert await browser.next_replies(1) == ["What's your name?"]
    await browser.close()


USERS = 1000


async def seed_users(redis_url: str, redis_prefix: str) -> set[str]:
    """1,000 Telegram users who wrote in private; every third has Plan=pro. The ones with Plan=pro."""
    store = RedisStore(redis_url, prefix=redis_prefix)
    index = build_user_stores(store).index
    pro = set()
    try:
        for n in range(USERS):
            user = str(300_000 + n)
            plan = "pro" if n % 3 == 0 else "free"
            await store.commit(
                ConversationKey("telegram", user, user), Commit(f"seed-{n}", None, {"Plan": plan})
            )
            await index.touch("telegram", user, time.time(), user)
            if plan == "pro":
                pro.add(user)
    finally:
        await store.close()
    return pro


async def running_in(workers: list[GatewayProcess], broadcast_id: str) -> GatewayProcess:
    """The worker whose runner claimed the broadcast (it logs so)."""
    pattern = re.compile(rf"broadcast {broadcast_id}: running")
    async with asyncio.timeout(20):
        while True:
            for worker in workers:
                if any(pattern.search(line) for line in worker.lines):
                    return worker
            await asyncio.sleep(0.05)  # two processes' logs: no one event to wait on


async def test_a_broadcast_reaches_each_matching_user_once_through_a_kill_of_its_worker(
    start_role: Start, telegram: FakeTelegram, http: aiohttp.ClientSession, redis_url: str, redis_prefix: str
) -> None:
    pro = await seed_users(redis_url, redis_prefix)
    serve = await start_role("serve", GATEWAY_ADMIN_TOKEN=ADMIN_TOKENS, GATEWAY_RATE_LIMITS="false")
    pace = {"GATEWAY_BROADCAST_RATE": "100", "GATEWAY_BROADCAST_LEASE": "2s"}
    workers = [await start_role("worker", **pace), await start_role("worker", **pace)]
    admin = Admin(http, await address_of(serve))

    status, made = await admin.call(
        "POST", "/broadcasts", {"story": "count", "channel": "telegram", "where": '@user.Plan == "pro"'}
    )
    assert status == 202, made
    victim = await running_in(workers, made["id"])

    async def under_way() -> bool:
        _, progress = await admin.call("GET", f"/broadcasts/{made['id']}")
        return progress["started"] >= 80

    await eventually(under_way)
    victim.signal(signal.SIGKILL)
    assert await victim.wait(10) == -signal.SIGKILL
    status, halfway = await admin.call("GET", f"/broadcasts/{made['id']}")
    assert halfway["status"] == "running" and halfway["started"] < len(pro)

    done = await admin.until_done(made["id"], timeout=90)
    assert (done["walked"], done["matched"], done["started"], done["failed"]) == (
        USERS,
        len(pro),
        len(pro),
        0,
    )
    survivor = next(worker for worker in workers if worker is not victim)
    assert f"broadcast {made['id']}: running" in survivor.output(), "the other worker took it over"
    await telegram.wait_for_calls(len(pro), method="sendMessage", ok=True, timeout=60)
    # Anything still in flight would come on top: a user's own message, after the broadcast, settles it.
    last = sorted(pro)[-1]
    assert await TelegramUser(http, admin.address, int(last), 10).say("n9") == 200
    await telegram.wait_for_calls(len(pro) + 1, method="sendMessage", ok=True, timeout=30)
    got = [str(call.params["chat_id"]) for call in telegram.calls_to("sendMessage", ok=True)]
    texts = sent_texts(telegram)
    assert sorted(got[: len(pro)]) == sorted(pro) and len(set(got[: len(pro)])) == len(pro), "each once"
    assert texts[: len(pro)] == ["got "] * len(pro) and texts[len(pro)] == "got n9"


async def test_retention_erases_a_user_idle_past_it(
    start_role: Start, telegram: FakeTelegram, http: aiohttp.ClientSession, redis_url: str, redis_prefix: str
) -> None:
    serve = await start_role("serve", GATEWAY_ADMIN_TOKEN=ADMIN_TOKENS)
    worker = await start_role("worker", GATEWAY_USER_RETENTION="3s")
    assert "user retention: 3 s after the last message" in worker.output()
    admin = Admin(http, await address_of(serve))
    user = TelegramUser(http, admin.address, 6161, 10)
    await meet(user, telegram, "Ada")
    last_message = time.time()
    _, shown = await admin.call("GET", "/users/telegram/6161")
    assert shown["attributes"] == {"Name": "Ada"}

    erased = await worker.wait_for(r"audit: retention erased telegram/6161: (.*)", timeout=30)
    # Telegram dates a message to the second, so last seen may be up to 1 s before ``last_message``.
    assert time.time() - last_message >= 3.0 - 1.0, "not before the retention ran out"
    assert '"attributes": 1' in erased.group(1)
    _, shown = await admin.call("GET", "/users/telegram/6161")
    assert (shown["attributes"], shown["known"], shown["conversations"]) == ({}, None, [])
    assert await keys_naming(redis_url, redis_prefix, "6161") == []

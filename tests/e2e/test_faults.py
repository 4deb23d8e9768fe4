"""Faults injected into a running deployment of separate processes: the broker and Redis going away and
coming back, unreachable services at start, a message that does not parse, a worker stopped mid-stream."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from gateway.core.bus.base import Envelope, Topic
from gateway.core.bus.rabbit import RabbitBus
from tests.support.clusters import PrivateRabbit
from tests.support.deployment import TelegramUser, address_of, sent_texts
from tests.support.fakes import FakeTelegram, telegram_text_update
from tests.support.faults import PrivateRedis, TcpProxy, free_port
from tests.support.processes import GatewayProcess, Start
from tests.support.smtp_sink import SmtpSink


async def post_until_accepted(
    user: TelegramUser, update: dict[str, object], timeout: float = 30.0
) -> list[int]:
    """Post one update again and again, as Telegram does after a 5xx, until it is accepted."""
    statuses: list[int] = []
    async with asyncio.timeout(timeout):
        while True:
            statuses.append(await user.post(update))
            if statuses[-1] == 200:
                return statuses
            assert statuses[-1] == 503, statuses
            await asyncio.sleep(0.3)  # Telegram's own retry interval is longer; any pause will do


@pytest.mark.parametrize("service", ["broker", "store"])
async def test_unreachable_service_at_start_is_retried_then_one_line(
    role_env: dict[str, str], service: str
) -> None:
    closed = free_port()
    env = {**role_env, "GATEWAY_CONNECT_TIMEOUT": "2s"}
    if service == "broker":
        env["GATEWAY_AMQP_URL"] = f"amqp://guest:guest@127.0.0.1:{closed}/"
    else:
        env["GATEWAY_REDIS_URL"] = f"redis://127.0.0.1:{closed}/0"
    worker = await GatewayProcess("worker", env=env).start()
    assert await worker.wait(30) == 1
    lines = worker.output().splitlines()
    variable = "GATEWAY_AMQP_URL" if service == "broker" else "GATEWAY_REDIS_URL"
    assert any(f"({variable}) not reachable yet" in line and "retrying in" in line for line in lines)
    assert lines[-1].startswith(f"error: {service} ({variable}) unreachable: ")
    assert "Traceback" not in worker.output()


async def test_a_role_with_another_partition_count_than_the_queues_stops_with_one_line(
    start_role: Start, role_env: dict[str, str]
) -> None:
    """Every role must agree on GATEWAY_PARTITIONS; one that does not is refused at once, not retried."""
    await start_role("worker")  # declares the test's queues with GATEWAY_PARTITIONS=4
    stray = await GatewayProcess("serve", env={**role_env, "GATEWAY_PARTITIONS": "8"}).start()
    assert await stray.wait(30) == 1
    last = stray.output().splitlines()[-1]
    assert last.startswith("error: broker (GATEWAY_AMQP_URL): GATEWAY_PARTITIONS is 8 but"), last
    assert "have 4 partitions" in last and "not reachable yet" not in stray.output()
    assert "Traceback" not in stray.output()


@pytest.fixture
async def amqp_proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_broker_outage_answers_503_then_carries_on(
    start_role: Start, telegram: FakeTelegram, amqp_proxy: TcpProxy, amqp_url: str
) -> None:
    proxied = amqp_url.replace(":5672/", f":{amqp_proxy.port}/")
    serve = await start_role("serve", GATEWAY_AMQP_URL=proxied)
    worker = await start_role("worker", GATEWAY_AMQP_URL=proxied)
    address = await address_of(serve)
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, address, chat_id=31, first_update=100)
        assert await user.say("hi") == 200
        await telegram.wait_for_calls(1, method="sendMessage", ok=True)

        await amqp_proxy.cut()
        update = telegram_text_update(102, 31, "Ada")
        assert await user.post(update) == 503, "never 200 for a message that could not be published"
        async with http.get(f"{address}/readyz") as response:
            assert response.status == 503 and (await response.json())["bus"] is False
        await amqp_proxy.restore()
        statuses = await post_until_accepted(user, update)
        await telegram.wait_for_calls(2, method="sendMessage", ok=True)
        assert await user.post(update) == 200  # Telegram delivering it once more: dropped, no second reply
        user.next_update = 102
        assert await user.say("n1") == 200
        await telegram.wait_for_calls(3, method="sendMessage", ok=True)

    assert statuses[0] == 503 and statuses[-1] == 200
    assert sent_texts(telegram, 31) == ["What's your name?", "Nice to meet you, Ada.", "got n1"]
    assert serve.process is not None and serve.process.returncode is None
    assert worker.process is not None and worker.process.returncode is None


@pytest.fixture
def private_rabbit(tmp_path: Path) -> Iterator[PrivateRabbit]:
    """A RabbitMQ node of this test's own, so that killing it leaves the machine's broker alone."""
    with PrivateRabbit(tmp_path / "rabbit") as rabbit:
        yield rabbit


async def test_real_broker_killed_and_restarted_loses_nothing(
    start_role: Start, telegram: FakeTelegram, private_rabbit: PrivateRabbit
) -> None:
    """Messages accepted before RabbitMQ is killed (kill -9) are on disk; every role reconnects by itself."""
    broker = {"GATEWAY_AMQP_URL": private_rabbit.amqp_url}
    serve = await start_role("serve", **broker)
    worker = await start_role("worker", **broker)
    address = await address_of(serve)
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, address, chat_id=32, first_update=200)
        assert await user.say("n0") == 200
        await telegram.wait_for_calls(1, method="sendMessage", ok=True)
        worker.signal(signal.SIGTERM)
        assert await worker.wait(12) == 0
        for n in range(1, 6):  # accepted while no worker runs: they wait in RabbitMQ
            assert await user.say(f"n{n}") == 200

        await asyncio.to_thread(private_rabbit.kill_node, 0)
        try:
            update = telegram_text_update(user.next_update + 1, 32, "n6")
            assert await user.post(update) == 503
        finally:
            await asyncio.to_thread(private_rabbit.restart_node, 0)
        await post_until_accepted(user, update)
        await start_role("worker", **broker)
        await telegram.wait_for_calls(7, method="sendMessage", ok=True, timeout=30)
    assert sent_texts(telegram, 32) == [f"got n{n}" for n in range(7)]


async def test_redis_outage_while_running(
    start_role: Start, telegram: FakeTelegram, smtp: SmtpSink, tmp_path: Path
) -> None:
    """Redis stops for a while and comes back (with its AOF): no role exits, nothing is lost, and the
    user's attributes written before the restart are still there."""
    redis = PrivateRedis(tmp_path)
    await redis.start()
    try:
        serve = await start_role("serve", GATEWAY_REDIS_URL=redis.url)
        worker = await start_role("worker", GATEWAY_REDIS_URL=redis.url)
        mailer = await start_role("mailer", GATEWAY_REDIS_URL=redis.url)
        address = await address_of(serve)
        async with aiohttp.ClientSession() as http:
            user = TelegramUser(http, address, chat_id=33, first_update=300)
            assert await user.say("hi") == 200
            assert await user.say("Ada") == 200
            await telegram.wait_for_calls(2, method="sendMessage", ok=True)

            await redis.stop()
            assert await user.say("help") == 200, "accepted into the broker even while Redis is away"
            async with http.get(f"{address}/readyz") as response:
                assert response.status == 503 and (await response.json())["store"] is False
            await worker.wait_for("retrying|Unavailable|unavailable", timeout=20)
            await redis.start()

            await telegram.wait_for_calls(3, method="sendMessage", ok=True, timeout=30)
            assert await user.say("the printer") == 200
            (email,) = await smtp.wait_for(1)
            await telegram.wait_for_calls(4, method="sendMessage", ok=True)
        assert sent_texts(telegram, 33) == [
            "What's your name?",
            "Nice to meet you, Ada.",
            "What is the problem?",
            "Ticket sent.",
        ]
        assert email["Subject"] == "Ticket from Ada", "the attribute outlived the Redis restart"
        for process in (serve, worker, mailer):
            assert process.process is not None and process.process.returncode is None
    finally:
        await redis.stop()


async def test_unparseable_message_is_dead_lettered_and_the_worker_goes_on(
    start_role: Start, telegram: FakeTelegram, amqp_url: str, queue_prefix: str
) -> None:
    serve = await start_role("serve")
    worker = await start_role("worker")
    address = await address_of(serve)
    bus = RabbitBus(amqp_url, prefix=queue_prefix, partitions=4)
    await bus.start()
    try:
        await bus.publish(
            Topic.INBOUND,
            [
                Envelope(b"{not json", "garbage-1", key="x"),
                Envelope(b'{"v": 2, "type": "inbound"}', "garbage-2", key="y"),
            ],
        )
        async with aiohttp.ClientSession() as http:
            user = TelegramUser(http, address, chat_id=34, first_update=400)
            assert await user.say("n1") == 200
            await telegram.wait_for_calls(1, method="sendMessage", ok=True)
        async with asyncio.timeout(20):
            while len(letters := await bus.dead_letters(Topic.INBOUND)) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.2)  # the dead-letter queue offers no event to wait on
    finally:
        await bus.close()
    reasons = sorted(letter.reason for letter in letters)
    assert all(reason.startswith("Inbound: ") for reason in reasons), reasons
    assert all(letter.attempts == 1 for letter in letters), "a message that cannot parse is never retried"
    assert worker.process is not None and worker.process.returncode is None


async def test_sigterm_drains_and_another_worker_takes_over(
    start_role: Start, telegram: FakeTelegram
) -> None:
    serve = await start_role("serve")
    first = await start_role("worker")
    address = await address_of(serve)
    chats, per_chat = 6, 6
    async with aiohttp.ClientSession() as http:
        users = [
            TelegramUser(http, address, chat_id=500 + c, first_update=1000 * (c + 1)) for c in range(chats)
        ]
        for n in range(per_chat):
            for user in users:
                assert await user.say(f"n{n}") == 200
            if n == 2:
                first.signal(signal.SIGTERM)
                second = await start_role("worker")
        assert await first.wait(10) == 0
        await telegram.wait_for_calls(chats * per_chat, method="sendMessage", ok=True, timeout=40)
    for user in users:
        assert sent_texts(telegram, user.chat_id) == [f"got n{n}" for n in range(per_chat)]
    assert second.process is not None and second.process.returncode is None


async def test_refused_email_is_dead_lettered_listed_and_replayed(
    start_role: Start, telegram: FakeTelegram, smtp: SmtpSink, role_env: dict[str, str]
) -> None:
    serve = await start_role("serve")
    await start_role("worker")
    mailer = await start_role("mailer")
    address = await address_of(serve)
    smtp.refuse = "550 5.1.1 <support@example.com>: Recipient address rejected"
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, address, chat_id=35, first_update=600)
        assert await user.say("help") == 200
        assert await user.say("nobody will read this") == 200
        await telegram.wait_for_calls(2, method="sendMessage", ok=True)
    await mailer.wait_for(r"dead|Rejected|refused", timeout=20)

    listing = await GatewayProcess("mailer", "dead", env=role_env).start()
    assert await listing.wait(30) == 0, listing.output()
    assert "telegram:update:602/e0" in listing.output() and "550 5.1.1" in listing.output()

    smtp.refuse = None
    replay = await GatewayProcess("mailer", "replay", env=role_env).start()
    assert await replay.wait(30) == 0, replay.output()
    (email,) = await smtp.wait_for(1)
    assert "nobody will read this" in email.get_content()

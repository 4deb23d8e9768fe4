"""Timers across separate processes on the real RabbitMQ and Redis: a worker SIGKILLed with timers due,
the broker connection cut and restored, Redis restarted from its AOF. Each timer fires exactly once and
never early (its reply reaches the fake Telegram no sooner than the due time committed in Redis)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.core.store.redis import RedisStore
from tests.support.deployment import TelegramUser, address_of, sent_texts, wait_until_drained
from tests.support.fakes import FakeTelegram
from tests.support.faults import PrivateRedis, TcpProxy
from tests.support.processes import Start
from tests.support.timers import assert_nudged_once_never_early, chat_key, nudge_stories, pending_due_times
from worker.timers.pending import firing_id, timer_id

AFTER = 3.0


@pytest.fixture
def timer_env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "timer-stories"
    folder.mkdir()
    (folder / "main.yml").write_text(nudge_stories(AFTER))
    return {"GATEWAY_STORIES": str(folder)}


async def due_times(redis_url: str, prefix: str, chats: list[int]) -> dict[int, float]:
    store = RedisStore(redis_url, prefix=prefix)
    try:
        return await pending_due_times(store, chats)
    finally:
        await store.close()


async def ask(address: str, chats: list[int], first_update: int) -> None:
    async with aiohttp.ClientSession() as http:
        for n, chat in enumerate(chats):
            assert await TelegramUser(http, address, chat, first_update + 10 * n).say("ask") == 200


async def test_a_worker_killed_with_timers_due_leaves_each_to_fire_once(
    start_role: Start,
    timer_env: dict[str, str],
    telegram: FakeTelegram,
    redis_url: str,
    redis_prefix: str,
    rabbit_vhost: str,
    queue_prefix: str,
) -> None:
    """The first worker publishes the firings and is SIGKILLed after committing one of them, before it
    publishes that turn's reply; the second takes the partitions over (the broker hands it the firings
    the first held, the leases of the idle partitions run out) and every timer fires once."""
    chats = [4101, 4102, 4103, 4104]
    first = 9000
    frozen = firing_id(chat_key(chats[0]), timer_id(f"telegram:update:{first + 1}", 0))
    serve = await start_role("serve", **timer_env)
    doomed = await start_role("worker", GATEWAY_TEST_FREEZE_AT=f"after_commit@{frozen}", **timer_env)
    await ask(await address_of(serve), chats, first)
    await telegram.wait_for_calls(len(chats), method="sendMessage", ok=True)
    due = await due_times(redis_url, redis_prefix, chats)

    assert (await doomed.wait_for(r"FROZEN after_commit (\S+)", timeout=AFTER + 20)).group(1) == frozen
    doomed.signal(signal.SIGKILL)
    assert await doomed.wait(10) == -signal.SIGKILL
    survivor = await start_role("worker", **timer_env)
    await telegram.wait_for_calls(2 * len(chats), method="sendMessage", ok=True, timeout=30)
    await wait_until_drained(rabbit_vhost, queue_prefix)

    assert_nudged_once_never_early(telegram, due)
    assert f"message {frozen} was committed before; re-publishing its 1 outputs" in survivor.output()
    assert len(sent_texts(telegram)) == 2 * len(chats)


@pytest.fixture
async def amqp_proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_timers_due_while_the_broker_is_away_fire_once_when_it_is_back(
    start_role: Start,
    timer_env: dict[str, str],
    telegram: FakeTelegram,
    amqp_proxy: TcpProxy,
    amqp_url: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    """Every role reaches RabbitMQ through a proxy that is cut, as a broker restart looks to them: the
    firings that fall due meanwhile cannot be published; they stay in the schedule until it is back."""
    proxied = {**timer_env, "GATEWAY_AMQP_URL": amqp_url.replace(":5672/", f":{amqp_proxy.port}/")}
    serve = await start_role("serve", **proxied)
    worker = await start_role("worker", **proxied)
    chats = [4201, 4202, 4203]
    await ask(await address_of(serve), chats, 9100)
    await telegram.wait_for_calls(len(chats), method="sendMessage", ok=True)
    due = await due_times(redis_url, redis_prefix, chats)

    await amqp_proxy.cut()
    await worker.wait_for(r"timer poller: .*retrying in", timeout=AFTER + 20)  # a firing could not go
    await amqp_proxy.restore()
    await telegram.wait_for_calls(2 * len(chats), method="sendMessage", ok=True, timeout=40)

    assert_nudged_once_never_early(telegram, due)
    assert len(sent_texts(telegram)) == 2 * len(chats)


async def test_timers_pending_across_a_redis_restart_fire_once(
    start_role: Start, timer_env: dict[str, str], telegram: FakeTelegram, tmp_path: Path
) -> None:
    """Redis stops (SIGTERM: its AOF flushed) with timers pending and comes back while they fall due."""
    redis = PrivateRedis(tmp_path)
    await redis.start()
    try:
        env = {**timer_env, "GATEWAY_REDIS_URL": redis.url, "GATEWAY_REDIS_PREFIX": "gw"}
        serve = await start_role("serve", **env)
        worker = await start_role("worker", **env)
        chats = [4301, 4302, 4303]
        await ask(await address_of(serve), chats, 9200)
        await telegram.wait_for_calls(len(chats), method="sendMessage", ok=True)
        due = await due_times(redis.url, "gw", chats)

        await redis.stop()
        await worker.wait_for(r"timer poller: .*StoreUnavailable", timeout=AFTER + 20)
        await asyncio.sleep(max(0.0, max(due.values()) + 0.5 - time.time()))  # the clock, not an event
        await redis.start()
        await telegram.wait_for_calls(2 * len(chats), method="sendMessage", ok=True, timeout=40)

        assert_nudged_once_never_early(telegram, due)
        assert len(sent_texts(telegram)) == 2 * len(chats)
        assert worker.process is not None and worker.process.returncode is None
    finally:
        await redis.stop()

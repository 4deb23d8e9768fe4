"""Timers on the clusters: `serve` and two `worker`s on a 3-node RabbitMQ cluster (quorum queues) and a
6-node Redis Cluster. Conversations wait on a question with a timeout while the RabbitMQ node every role
is connected to is killed with kill -9, then the Redis master holding a partition's timer schedule: each
timer fires exactly once, never before the due time committed in Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from redis.crc import key_slot

from gateway.core.store.keys import KeyBuilder
from gateway.core.store.redis import RedisStore
from tests.support.clusters import RabbitCluster, RedisCluster
from tests.support.deployment import SECRET, TelegramUser, address_of
from tests.support.fakes import FakeTelegram
from tests.support.processes import GatewayProcess
from tests.support.timers import ASKED, assert_nudged_once_never_early, nudge_stories, pending_due_times

pytestmark = pytest.mark.cluster

CHATS = list(range(5100, 5130))


async def ask(user: TelegramUser) -> None:
    while (status := await user.say("ask")) != 200:
        assert status == 503, status
        user.next_update -= 1  # the same update again, as Telegram retries it
        await asyncio.sleep(0.2)


async def test_timers_fire_once_through_a_rabbitmq_node_and_a_redis_master_killed(
    rabbit_cluster: RabbitCluster,
    redis_cluster: RedisCluster,
    telegram: FakeTelegram,
    tmp_path: Path,
    queue_prefix: str,
    redis_prefix: str,
) -> None:
    folder = tmp_path / "stories"
    folder.mkdir()
    (folder / "main.yml").write_text(nudge_stories(8.0))
    env = {
        "GATEWAY_AMQP_URL": rabbit_cluster.amqp_url,
        "GATEWAY_QUEUE_TYPE": "quorum",
        "GATEWAY_REDIS_URL": redis_cluster.url,
        "GATEWAY_REDIS_CLUSTER": "true",
        "GATEWAY_QUEUE_PREFIX": queue_prefix,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_PARTITIONS": "4",
        "GATEWAY_STORIES": str(folder),
        "GATEWAY_PORT": "0",
        "GATEWAY_CONNECT_TIMEOUT": "20s",
        "GATEWAY_RATE_LIMITS": "false",
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    roles = [GatewayProcess(role, env=env) for role in ("serve", "worker", "worker")]
    killed_rabbit: int | None = None
    killed_redis: int | None = None
    try:
        for role in roles:
            await role.start()
        for role in roles:
            await role.wait_for(r"INFO .*: ready$", timeout=60)
        address = await address_of(roles[0])
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(
                *(ask(TelegramUser(http, address, chat, 100 * n)) for n, chat in enumerate(CHATS))
            )
        await telegram.wait_for_calls(len(CHATS), method="sendMessage", ok=True, timeout=60)
        store = RedisStore(redis_cluster.url, prefix=redis_prefix, cluster=True)
        try:
            due = await pending_due_times(store, CHATS)
        finally:
            await store.close()

        killed_rabbit = 0  # every role connected to the first node that answered: the first
        await asyncio.to_thread(rabbit_cluster.kill_node, killed_rabbit)
        schedule = KeyBuilder(redis_prefix).schedule(0)
        killed_redis = redis_cluster.master_of_slot(key_slot(schedule.encode()))
        await asyncio.to_thread(redis_cluster.kill_node, killed_redis)

        await telegram.wait_for_calls(2 * len(CHATS), method="sendMessage", ok=True, timeout=180)
        assert_nudged_once_never_early(telegram, due)
        assert len(telegram.calls_to("sendMessage", ok=True)) == len(ASKED) * len(CHATS)
        for role in roles:
            assert role.process is not None and role.process.returncode is None, role.output()[-3000:]
    finally:
        for role in roles:
            await role.stop()
        if killed_rabbit is not None:
            await asyncio.to_thread(rabbit_cluster.restart_node, killed_rabbit)
        if killed_redis is not None:
            await asyncio.to_thread(redis_cluster.restart_node, killed_redis)
            await asyncio.to_thread(redis_cluster.wait_healthy)

"""Shared fixtures: every test gets its own RabbitMQ queues and Redis keys on the real local services.

The whole run gets one RabbitMQ vhost (created with ``rabbitmqctl``, deleted at the end); each test gets
its own queue prefix inside it and its own Redis key prefix, removed after the test.

Fixtures only: helpers live in :mod:`tests.support`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import redis.asyncio as aioredis
from hypothesis import settings

from tests.support.clusters import RabbitCluster, RedisCluster
from tests.support.fakes import FakeTelegram
from tests.support.services import RABBIT_HOST, RABBIT_PORT, REDIS_BASE_URL, rabbitmqctl
from tests.support.smtp_sink import SmtpSink

# Property tests draw the same examples on every run (CI stays repeatable); `HYPOTHESIS_PROFILE=explore`
# draws new ones each time, to look for more.
settings.register_profile("repeatable", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def rabbit_vhost() -> Iterator[str]:
    vhost = f"gwtest-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def amqp_url(rabbit_vhost: str) -> str:
    return f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/{rabbit_vhost}"


@pytest.fixture
def queue_prefix() -> str:
    """A queue-name prefix of this test's own inside the run's vhost."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_url() -> str:
    return REDIS_BASE_URL


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted after the test."""
    prefix = f"gwtest{uuid.uuid4().hex[:10]}"
    yield prefix
    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    """A fake Telegram Bot API of this test's own (the whole-gateway tests: e2e and on the clusters)."""
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    """An SMTP server of this test's own that keeps what it receives."""
    sink = await SmtpSink().start()
    yield sink
    await sink.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client of this test's own, closed after it."""
    async with aiohttp.ClientSession() as session:
        yield session


# Real clusters of this test run's own, started once when a test asks for them (tests/support/clusters.py).
@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def rabbit_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    with RabbitCluster(tmp_path_factory.mktemp("rabbit-cluster")) as cluster:
        yield cluster

"""RedisStore beyond the shared contract: round trips, TTLs on every key, a Redis restart, the pool.

Tests that watch every command (MONITOR) or stop the server run a private ``redis-server`` of their own,
with AOF on, on a free port in a temporary folder; the others use the shared Redis and a test prefix.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import Connection
from redis.exceptions import MaxConnectionsError

from gateway.keys import KeyBuilder
from gateway.schema import Button, ConversationKey
from gateway.store.base import Commit, Session, Snapshot, StoreUnavailable
from gateway.store.redis import RedisStore
from tests.faults import PrivateRedis

KEY = ConversationKey("telegram", "chat-1", "user-1")
SESSION = Session("onboarding", "ask_email", {"name": "Ann"}, (Button(title="Skip", payload="skip"),))


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def cached_scripts(url: str) -> int:
    async with aioredis.from_url(url) as admin:
        info = await admin.info("memory")
        return int(info["number_of_cached_scripts"])


async def test_load_and_commit_cost_one_round_trip_each(private_redis: PrivateRedis) -> None:
    writes = 0  # commands written to the socket, each followed by reading the answer: round trips

    class CountingConnection(Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            nonlocal writes
            writes += 1
            await super().send_packed_command(command, check_health)

    store = RedisStore(private_redis.url, max_connections=1, connection_class=CountingConnection)
    try:
        await store.load(KEY, "m0")  # connect, and load both scripts (NOSCRIPT) before counting
        await store.commit(KEY, Commit("m0", None))

        async with aioredis.from_url(private_redis.url) as admin, admin.monitor() as monitor:
            (store_connection,) = [c for c in await admin.client_list() if c["name"] == "gateway-store"]
            store_port = store_connection["addr"].rsplit(":", 1)[1]
            round_trips = []
            for call in (
                lambda: store.load(KEY, "m1"),
                lambda: store.commit(KEY, Commit("m1", SESSION, {"email": "a@x.org", "old": None}, [b"r1"])),
                lambda: store.commit(KEY, Commit("m1", None)),  # already committed
                lambda: store.load(KEY, "m1"),
            ):
                before = writes
                await call()
                round_trips.append(writes - before)
            await admin.echo("end of test")
            commands = []  # what Redis received from the store's connection, in order
            while not (seen := await monitor.next_command())["command"].startswith("ECHO"):
                if seen["client_port"] == store_port:
                    commands.append(seen["command"].split()[0])
    finally:
        await store.close()
    assert round_trips == [1, 1, 1, 1]
    assert commands == ["EVALSHA"] * 4


async def test_every_key_expires_but_the_users_attributes(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    keys = KeyBuilder(redis_prefix)
    try:
        assert await store.commit(KEY, Commit("m1", SESSION, {"email": "a@x.org"}, [b"hello"])) is True
        assert await store.commit(KEY, Commit("m2", SESSION, {"lang": "en"}, [])) is True
        assert await store.commit(KEY, Commit("m3", None, {"lang": None}, [b"bye"])) is True  # the end
        assert await store.mark_seen("inbound", "telegram:update:7", 600.0) is True
        ttls: dict[str, int] = {}
        async for name in store.client.scan_iter(match=f"{redis_prefix}:*"):
            ttls[name.decode()] = await store.client.pttl(name)
    finally:
        await store.close()
    assert set(ttls) == {
        keys.user(KEY.channel, KEY.user),
        keys.processed(KEY, "m1"),
        keys.processed(KEY, "m2"),
        keys.processed(KEY, "m3"),
        keys.seen("inbound", "telegram:update:7"),
    }
    assert ttls.pop(keys.user(KEY.channel, KEY.user)) == -1  # no expiry
    assert all(0 < ttl <= 86400_000 for ttl in ttls.values()), ttls


async def test_session_and_records_carry_their_ttls(redis_url: str, redis_prefix: str) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix, processed_ttl=3600.0)
    keys = KeyBuilder(redis_prefix)
    try:
        short = Session("s", "w", ttl=60.0)
        assert await store.commit(KEY, Commit("m1", short)) is True
        assert 59_000 < await store.client.pttl(keys.session(KEY)) <= 60_000
        assert 3599_000 < await store.client.pttl(keys.processed(KEY, "m1")) <= 3600_000
        assert await store.commit(KEY, Commit("m2", Session("s", "w", ttl=900.0))) is True  # renewed
        assert 899_000 < await store.client.pttl(keys.session(KEY)) <= 900_000
    finally:
        await store.close()


@pytest.mark.parametrize(
    "stored",
    [b"not json", b'{"story": "s"}', b"[1, 2]", b'{"story":1,"step":null,"values":{},"buttons":[1],"ttl":5}'],
)
async def test_an_unreadable_session_restarts_the_conversation(
    redis_url: str, redis_prefix: str, stored: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore(redis_url, prefix=redis_prefix)
    try:
        await store.client.set(store.keys.session(KEY), stored, px=60_000)
        assert await store.load(KEY, "m1") == Snapshot(None, {}, None)
        assert "unreadable session" in caplog.text
        assert await store.commit(KEY, Commit("m1", SESSION)) is True
        assert (await store.load(KEY, "m2")).session == SESSION
    finally:
        await store.close()


async def expect_unavailable_quickly(call: Callable[[], Awaitable[object]], within: float) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(call(), timeout=within + 5.0)  # fail the test rather than hang it
    assert time.monotonic() - started < within


async def test_store_rides_out_a_redis_restart(private_redis: PrivateRedis) -> None:
    store = RedisStore(private_redis.url, max_connections=2, socket_timeout=1.0, connect_timeout=1.0)
    try:
        assert await store.commit(KEY, Commit("m1", SESSION, {"email": "a@x.org"}, [b"r1\n"])) is True
        assert await store.mark_seen("inbound", "u1", 3600.0) is True
        assert await cached_scripts(private_redis.url) == 1  # only the commit script has run yet

        await private_redis.stop()
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.load(KEY, "m2"),
            lambda: store.commit(KEY, Commit("m2", None)),
            lambda: store.user_attributes(KEY.channel, KEY.user),
            lambda: store.mark_seen("inbound", "u2", 60.0),
            lambda: store.is_seen("inbound", "u1"),
        ]
        for _ in range(3):  # more failed calls than the pool has connections: none may leak
            for call in calls:
                await expect_unavailable_quickly(call, within=0.5)
        assert await store.ping() is False

        await private_redis.start()  # same port, same folder: the AOF brings the data back
        assert await cached_scripts(private_redis.url) == 0  # so the next script call meets NOSCRIPT
        assert await store.ping() is True
        assert await store.load(KEY, "m1") == Snapshot(SESSION, {"email": "a@x.org"}, (b"r1\n",))
        assert await store.is_seen("inbound", "u1") is True
        assert await store.commit(KEY, Commit("m1", None)) is False  # the record survived too
        assert await store.commit(KEY, Commit("m2", None, {"email": None}, [b"r2"])) is True
        assert await cached_scripts(private_redis.url) == 2  # both scripts re-loaded by the client
        assert await store.load(KEY, "m2") == Snapshot(None, {}, (b"r2",))
    finally:
        await store.close()


async def test_a_hung_redis_times_out_instead_of_hanging(private_redis: PrivateRedis) -> None:
    store = RedisStore(private_redis.url, max_connections=2, socket_timeout=0.5, connect_timeout=0.5)
    try:
        assert await store.load(KEY, "m1") == Snapshot(None, {}, None)
        private_redis.pause()  # accepts nothing, answers nothing
        try:
            await expect_unavailable_quickly(lambda: store.load(KEY, "m1"), within=2.0)
            await expect_unavailable_quickly(lambda: store.is_seen("inbound", "x"), within=2.0)
        finally:
            private_redis.resume()
        assert await store.load(KEY, "m1") == Snapshot(None, {}, None)
    finally:
        await store.close()


async def test_pool_waits_for_a_connection_under_500_concurrent_loads(
    redis_url: str, redis_prefix: str
) -> None:
    name = f"gwtest-pool-{uuid.uuid4().hex[:8]}"
    store = RedisStore(redis_url, prefix=redis_prefix, max_connections=8, client_name=name)
    keys = [ConversationKey("web", f"chat-{n}", f"user-{n}") for n in range(500)]
    try:
        snapshots = await asyncio.gather(*(store.load(key, "m1") for key in keys))
        async with aioredis.from_url(redis_url) as admin:
            connections = [c for c in await admin.client_list() if c["name"] == name]
    finally:
        await store.close()
    assert snapshots == [Snapshot(None, {}, None)] * 500
    assert 1 <= len(connections) <= 8


async def test_the_same_load_exhausts_a_plain_pool(redis_url: str, redis_prefix: str) -> None:
    """Shows the test above can fail: redis-py's plain asyncio pool raises instead of waiting."""
    client = aioredis.Redis.from_pool(ConnectionPool.from_url(redis_url, max_connections=8))
    store = RedisStore(client, prefix=redis_prefix)
    keys = [ConversationKey("web", f"chat-{n}", f"user-{n}") for n in range(500)]
    try:
        results = await asyncio.gather(*(store.load(key, "m1") for key in keys), return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        assert failures
        assert all(isinstance(failure, StoreUnavailable) for failure in failures)
        assert all(isinstance(failure.__cause__, MaxConnectionsError) for failure in failures)
    finally:
        await client.aclose()


def test_a_prefix_with_braces_is_refused(redis_url: str) -> None:
    with pytest.raises(ValueError, match="brace"):
        RedisStore(redis_url, prefix="gw{x}")


async def test_a_decoding_client_is_refused(redis_url: str) -> None:
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            RedisStore(client)
    finally:
        await client.aclose()

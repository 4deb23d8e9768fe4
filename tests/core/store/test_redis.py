"""RedisStore beyond the shared contract: round trips, pipelining, key TTLs, a Redis restart, the pool.

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
from redis.exceptions import MaxConnectionsError, ResponseError

from gateway.core.errors import StoreUnavailable
from gateway.core.redis.pipeline import pack_command
from gateway.core.schema import Button, ConversationKey
from gateway.core.store.base import Commit, Record, Session, Snapshot
from gateway.core.store.keys import KeyBuilder
from gateway.core.store.redis import RedisStore
from tests.support.faults import PrivateRedis

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
        timers = {"timers": Record(b"[]", 3600.0)}
        assert await store.commit(KEY, Commit("m4", None, records=timers)) is True
        assert await store.mark_seen("inbound", "telegram:update:7", 600.0) is True
        assert await store.lease("email-sending", "m1/e0", "mailer-a", 120.0) is True  # its holder died
        await store.set_opted_out(KEY.channel, KEY.user, True)
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
        keys.processed(KEY, "m4"),
        keys.record(KEY, "timers"),
        keys.user_keys(KEY.channel, KEY.user),
        keys.seen("inbound", "telegram:update:7"),
        keys.lease("email-sending", "m1/e0"),
        keys.opt_out(KEY.channel, KEY.user),
    }
    assert ttls.pop(keys.user(KEY.channel, KEY.user)) == -1  # no expiry
    assert ttls.pop(keys.opt_out(KEY.channel, KEY.user)) == -1  # a fact about the user, like its attributes
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


async def test_the_first_calls_after_a_restart_do_not_fail_on_connections_the_old_server_closed(
    private_redis: PrivateRedis,
) -> None:
    """Idle pooled connections to the old server are replaced when handed out, so work resumes at once
    (before, with redis-py 8's maintenance notifications on, each failed once more: one backoff step)."""
    store = RedisStore(private_redis.url, max_connections=4)
    store.max_batch = 1  # one call per batch, so concurrent calls take several pooled connections
    try:
        assert all(await asyncio.gather(*(store.mark_seen("inbound", f"w{n}", 60.0) for n in range(8))))
        await private_redis.stop()
        await private_redis.start()
        found = await asyncio.gather(*(store.is_seen("inbound", f"w{n}") for n in range(8)))
        assert all(found)
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


# Automatic pipelining: the calls of one event-loop turn share one round trip.


def recording_connection() -> tuple[type[Connection], list[bytes]]:
    """A connection class that keeps every payload it writes (handshakes included), and that list."""
    sent: list[bytes] = []

    class RecordingConnection(Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            sent.append(command if isinstance(command, bytes) else b"".join(command))
            await super().send_packed_command(command, check_health)

    return RecordingConnection, sent


def commands_in(payload: bytes, name: bytes) -> int:
    """How many ``name`` commands a RESP payload holds (each command name follows a ``$<len>`` line)."""
    return payload.count(b"\r\n$%d\r\n%s\r\n" % (len(name), name))


async def test_concurrent_calls_share_one_round_trip_and_get_their_own_answers(
    redis_url: str, redis_prefix: str
) -> None:
    connection_class, sent = recording_connection()
    store = RedisStore(redis_url, prefix=redis_prefix, connection_class=connection_class)
    keys = [ConversationKey("web", f"chat-{n}", f"user-{n}") for n in range(8)]
    try:
        for n, key in enumerate(keys[:4]):  # four conversations with a history
            assert await store.commit(key, Commit("m1", SESSION, {"n": str(n)}, [b"out-%d" % n])) is True
        assert await store.mark_seen("inbound", "old", 60.0) is True
        sent.clear()

        results = await asyncio.gather(
            *(store.load(key, "m1") for key in keys),  # 4 replays, 4 empty
            *(store.commit(key, Commit("m1", None, {}, [b"again"])) for key in keys),  # 4 False, 4 True
            store.mark_seen("inbound", "old", 60.0),
            store.mark_seen("inbound", "new", 60.0),
            store.is_seen("inbound", "old"),
            store.is_seen("inbound", "never"),
            store.user_attributes("web", "user-2"),
            store.forget_seen("inbound", "old"),
        )
        assert await store.is_seen("inbound", "old") is False  # the DEL ran, after the batch
    finally:
        await store.close()
    loads, commits, rest = results[:8], results[8:16], results[16:]
    assert (
        loads
        == [Snapshot(SESSION, {"n": str(n)}, (b"out-%d" % n,)) for n in range(4)]
        + [Snapshot(None, {}, None)] * 4
    )
    assert commits == [False] * 4 + [True] * 4
    assert rest == [False, True, True, False, {"n": "2"}, None]
    batch = sent[0]  # the first write after the history: one pipeline holding every call
    assert [commands_in(batch, name) for name in (b"EVALSHA", b"SET", b"EXISTS", b"HGETALL", b"DEL")] == [
        16,
        2,
        2,
        1,
        1,
    ]
    # Then what looks under the name markers had before they were digested, where no marker was found
    # (is_seen "never") or one was deleted (forget_seen), and the lone is_seen (no marker: both names).
    assert [sum(commands_in(payload, name) for payload in sent[1:]) for name in (b"EXISTS", b"DEL")] == [3, 1]


async def test_a_batch_holds_at_most_max_batch_calls(redis_url: str, redis_prefix: str) -> None:
    connection_class, sent = recording_connection()
    store = RedisStore(redis_url, prefix=redis_prefix, max_connections=1, connection_class=connection_class)
    store.max_batch = 4
    try:
        await store.ping()  # connect before counting
        sent.clear()
        found = await asyncio.gather(*(store.opted_out("sms", f"+1555000{n}") for n in range(10)))
    finally:
        await store.close()
    assert found == [False] * 10
    assert [commands_in(payload, b"EXISTS") for payload in sent] == [4, 4, 2]  # in turn, on one connection


async def test_one_failing_script_does_not_fail_the_others_in_its_batch(
    redis_url: str, redis_prefix: str
) -> None:
    connection_class, sent = recording_connection()
    store = RedisStore(redis_url, prefix=redis_prefix, connection_class=connection_class)
    broken = ConversationKey("web", "chat-x", "user-x")
    keys = [ConversationKey("web", f"chat-{n}", f"user-{n}") for n in range(5)]
    try:
        await store.client.set(store.keys.user(broken.channel, broken.user), b"not a hash")
        assert await store.commit(keys[0], Commit("m1", SESSION, {"a": "1"}, [b"r"])) is True
        sent.clear()
        results = await asyncio.gather(
            store.load(keys[0], "m1"),
            store.load(broken, "m1"),  # HGETALL on a string: WRONGTYPE inside the script
            *(store.commit(key, Commit("m2", None, {"b": "2"})) for key in keys),
            store.mark_seen("inbound", "x", 60.0),
            return_exceptions=True,
        )
        after = await store.load(keys[3], "m2")
    finally:
        await store.close()
    assert len(sent) == 1 + 1  # one batch, then the load after it
    assert results[0] == Snapshot(SESSION, {"a": "1"}, (b"r",))
    failure = results[1]
    assert isinstance(failure, ResponseError) and not isinstance(failure, StoreUnavailable)
    assert "WRONGTYPE" in str(failure)
    assert results[2:] == [True] * 5 + [True]
    assert after == Snapshot(None, {"b": "2"}, ())


class KillableRedis(PrivateRedis):
    async def kill(self) -> None:
        """Die at once (SIGKILL): whatever the server had not read yet is lost, nothing is answered."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()
        if self._output is not None:
            await self._output
        self.process = None


async def test_a_redis_restart_mid_batch_fails_the_batch_then_the_store_recovers(tmp_path: Path) -> None:
    server = KillableRedis(tmp_path)
    await server.start()
    batch_sent = asyncio.Event()

    class SignallingConnection(Connection):
        async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            await super().send_packed_command(command, check_health)
            batch_sent.set()

    store = RedisStore(
        server.url,
        max_connections=1,
        socket_timeout=5.0,
        connect_timeout=1.0,
        connection_class=SignallingConnection,
    )
    keys = [ConversationKey("web", f"chat-{n}", f"user-{n}") for n in range(6)]

    def calls() -> list[Awaitable[object]]:
        return [
            *(store.load(key, "m1") for key in keys),
            *(store.commit(key, Commit("m1", SESSION, {"k": key.user}, [key.chat.encode()])) for key in keys),
            store.mark_seen("inbound", "u1", 60.0),
        ]

    try:
        assert await store.commit(keys[0], Commit("m0", None)) is True  # connected, scripts loaded
        server.pause()  # Redis takes the batch into its socket buffer and never reads it
        batch_sent.clear()
        failing = asyncio.ensure_future(asyncio.gather(*calls(), return_exceptions=True))
        await batch_sent.wait()
        await server.kill()
        failed = await asyncio.wait_for(failing, timeout=5.0)
        assert len(failed) == 13
        assert all(isinstance(result, StoreUnavailable) for result in failed), failed

        await server.start()  # same port and folder: m0 is back, the script cache is empty
        assert await cached_scripts(server.url) == 0
        recovered = await asyncio.gather(*calls())
        assert recovered[:6] == [Snapshot(None, {}, None)] * 6  # the lost batch had not run
        assert recovered[6:] == [True] * 7
        assert await cached_scripts(server.url) == 2
        assert await store.load(keys[2], "m1") == Snapshot(SESSION, {"k": "user-2"}, (b"chat-2",))
        assert await store.commit(keys[0], Commit("m0", None)) is False
    finally:
        await store.close()
        await server.stop()


def test_commands_are_packed_as_redis_py_packs_them() -> None:
    reference = Connection()
    commands: list[tuple[Any, ...]] = [
        ("EVALSHA", "a" * 40, 3, "gw:{web:ü}:session:c", "k2", "k3", b"", -1, 0, b"\x00\r\n\xff"),
        ("SET", "gw:seen:x", b"1", "PX", 86_400_000, "NX"),
        ("RPUSH", "k", b"x" * 200_000, "héllo ✓"),
    ]
    for command in commands:
        assert pack_command(command) == b"".join(reference.pack_command(*command))
    with pytest.raises(TypeError, match="float"):
        pack_command(("SET", "k", 1.5))


async def test_the_users_expiring_keys_are_indexed_by_the_commit(redis_url: str, redis_prefix: str) -> None:
    """Everything kept about a user is found from one sorted set, without scanning the keyspace; keys
    that expired or were deleted leave the index."""
    store = RedisStore(redis_url, prefix=redis_prefix, processed_ttl=3600.0)
    keys = KeyBuilder(redis_prefix)
    other_chat = ConversationKey(KEY.channel, "another-chat", KEY.user)
    try:
        assert await store.commit(KEY, Commit("m1", SESSION, {"a": "1"}, [b"x"])) is True
        assert await store.commit(other_chat, Commit("m2", SESSION, records={"timers": Record(b"t", 60)}))
        assert await store.commit(KEY, Commit("m3", None, records={"handoff": Record(b"h", 0.05)}))
        indexed = await store.client.zrange(keys.user_keys(KEY.channel, KEY.user), 0, -1)
        assert {name.decode() for name in indexed} == {
            keys.processed(KEY, "m1"),
            keys.processed(other_chat, "m2"),
            keys.processed(KEY, "m3"),
            keys.session(other_chat),
            keys.record(other_chat, "timers"),
            keys.record(KEY, "handoff"),
        }, "the ended session left the index"
        assert 3590_000 < await store.client.pttl(keys.user_keys(KEY.channel, KEY.user)) <= 3600_000
        while await store.client.exists(keys.record(KEY, "handoff")):  # noqa: ASYNC110 - Redis's own expiry
            await asyncio.sleep(0.01)
        assert await store.commit(KEY, Commit("m4", None, records={"handoff": None})) is True
        indexed = await store.client.zrange(keys.user_keys(KEY.channel, KEY.user), 0, -1)
        assert keys.record(KEY, "handoff").encode() not in indexed
    finally:
        await store.close()


async def test_a_marker_written_before_markers_were_digested_still_counts(
    redis_url: str, redis_prefix: str
) -> None:
    """Upgrading repeats nothing: a reply recorded as sent by an older release is still found as sent."""
    store = RedisStore(redis_url, prefix=redis_prefix)
    try:
        await store.client.set(store.keys.legacy_seen("sent", "webchat:u1:m1/r0"), b"1", px=60_000)
        assert await store.is_seen("sent", "webchat:u1:m1/r0") is True
        assert await store.is_seen("sent", "webchat:u1:m1/r1") is False
        await store.forget_seen("sent", "webchat:u1:m1/r0")
        assert await store.is_seen("sent", "webchat:u1:m1/r0") is False
        assert await store.mark_seen("sent", "webchat:u1:m1/r0", 60.0) is True
        assert not await store.client.exists(store.keys.legacy_seen("sent", "webchat:u1:m1/r0"))
    finally:
        await store.close()

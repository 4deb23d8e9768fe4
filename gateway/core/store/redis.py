"""The Redis store (redis-py asyncio): one Lua script per :meth:`load`, one per :meth:`commit`.

Each script touches only the keys :class:`~gateway.core.store.keys.KeyBuilder` makes for one (channel,
user), which share one hash tag, so both scripts are legal on Redis Cluster.

Automatic pipelining: the calls made during one turn of the event loop go out together, as one
non-transactional pipeline of EVALSHA/SET/EXISTS/... on one pooled connection, and each caller gets its
own answer or its own error (a failing script does not fail its neighbours; each script stays atomic on
its own). A lone call is still one round trip; many concurrent calls share one, which saves redis-py's
per-command cost (pool checkout, health check, timeouts) that dominated the worker's profile. A batch
holds at most :attr:`RedisStore.max_batch` calls; more make more batches, sent at once on more
connections. A script Redis has forgotten (NOSCRIPT, after a restart) is loaded and its calls re-sent on
the same connection, one extra round trip.

Layout: the session is one JSON string (story, step, values, buttons, ttl) with PX = its ttl; the
user's attributes are a hash with no TTL; a processed message is a list — a format marker, then the
recorded outputs as they were (Redis strings hold any bytes) — with PX = ``processed_ttl``.

Failures: redis-py's own retries are off (a retried SET NX or commit could misreport "seen"/"committed
before"), so every connection error, timeout, loading or read-only answer surfaces at once as
:class:`StoreUnavailable` and the caller retries. A broken connection fails every call of its batch that
has no answer yet; a commit among them may have been applied, and its retry then returns False, as any
commit whose answer was lost. The pool blocks when exhausted instead of raising, replaces connections the
server closed when it hands them out (maintenance notifications off: see :func:`make_client`), and pings
idle ones before reuse.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig
from redis.typing import EncodableT

from gateway.core.errors import StoreUnavailable
from gateway.core.schema import Button, ConversationKey
from gateway.core.store.base import Commit, Session, Snapshot, Store
from gateway.core.store.keys import KeyBuilder

log = logging.getLogger(__name__)

# Answers that mean "Redis is away or cannot take writes now", never "this call is wrong".
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError, pool wait timeout
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,
    OSError,
)

_PROCESSED_MARKER = b"v1"  # first item of a processed list: a commit with no outputs still exists

# KEYS: session, user, processed. Returns {session JSON or nil, HGETALL user, the processed list}.
_LOAD = """
return {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('LRANGE', KEYS[3], 0, -1)}
"""

# KEYS: session, user, processed.
# ARGV: session JSON ('' deletes it), session ttl ms, processed ttl ms, #attribute pairs to set,
#       #attributes to delete, the pairs, the deleted names, then the processed list: marker, outputs.
_COMMIT = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local function call_chunked(command, key, first, last)
  while first <= last do
    local stop = math.min(first + 999, last)
    redis.call(command, key, unpack(ARGV, first, stop))
    first = stop + 1
  end
end
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
local pairs_start = 6
local deletes_start = pairs_start + 2 * tonumber(ARGV[4])
local record_start = deletes_start + tonumber(ARGV[5])
call_chunked('HSET', KEYS[2], pairs_start, deletes_start - 1)
call_chunked('HDEL', KEYS[2], deletes_start, record_start - 1)
call_chunked('RPUSH', KEYS[3], record_start, #ARGV)
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 1
"""


# KEYS: lease. ARGV: holder, ttl ms. Takes a free lease or extends the holder's own; 0 when another holds it.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lease. ARGV: holder. Deletes the lease only while it is still the holder's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _unavailable(exc: BaseException) -> StoreUnavailable:
    error = StoreUnavailable(f"redis: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


# One encoder for every session: json.dumps with options builds a new one per call.
_SESSION_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode_session(session: Session) -> bytes:
    return _SESSION_ENCODER.encode(
        {
            "story": session.story,
            "step": session.step,
            "values": dict(session.values),
            "buttons": [{"title": b.title, "payload": b.payload} for b in session.buttons],
            "ttl": session.ttl,
        }
    ).encode()


def decode_session(raw: bytes) -> Session:
    data = json.loads(raw)
    return Session(
        story=data["story"],
        step=data["step"],
        values=data["values"],
        buttons=tuple(Button(title=b["title"], payload=b["payload"]) for b in data["buttons"]),
        ttl=data["ttl"],
    )


def make_client(
    url: str,
    *,
    max_connections: int = 16,
    socket_timeout: float = 5.0,
    connect_timeout: float = 2.0,
    pool_timeout: float = 10.0,
    health_check_interval: int = 30,
    **pool_options: Any,
) -> Redis:
    """A client on a blocking pool: an exhausted pool waits (up to ``pool_timeout``) instead of raising."""
    pool_options.setdefault("client_name", "gateway-store")
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        socket_keepalive=True,
        health_check_interval=health_check_interval,
        retry=Retry(NoBackoff(), 0),
        # With maintenance notifications on (redis-py 8's default, "auto"), the pool skips its check for a
        # connection the server closed, so the first call after a Redis restart failed on every pooled
        # connection, and the work it carried waited one more backoff step.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        **pool_options,
    )
    return Redis.from_pool(pool)


def pack_command(command: Sequence[EncodableT]) -> bytes:
    """A command in the Redis protocol (RESP): str as UTF-8, int as decimal, bytes as they are.

    A leaner :meth:`redis.asyncio.connection.Connection.pack_command`, which costs twice as much, for the
    few argument types this store sends.
    """
    parts = [b"*%d\r\n" % len(command)]
    append = parts.append
    for arg in command:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            arg = b"%d" % arg
        elif not isinstance(arg, bytes):
            raise TypeError(f"cannot send a {type(arg).__name__} to Redis: {arg!r}")
        append(b"$%d\r\n" % len(arg))
        append(arg)
        append(b"\r\n")
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class LuaScript:
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> LuaScript:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


@dataclass(slots=True)
class _Call:
    """One caller's command in a batch, and the future its answer goes to."""

    command: bytes  # packed
    script: LuaScript | None  # the script an EVALSHA runs, loaded again on NOSCRIPT
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def answer(self, value: Any) -> None:
        """Give the caller its reply: a value, an error reply, or StoreUnavailable for 'Redis is away'."""
        if self.future.done():  # the caller was cancelled
            return
        if isinstance(value, _UNAVAILABLE):
            self.future.set_exception(_unavailable(value))
        elif isinstance(value, BaseException):
            self.future.set_exception(value)
        else:
            self.future.set_result(value)


class AutoPipeline:
    """Sends the commands issued during one event-loop turn as one pipeline on one pooled connection.

    Nothing waits for company: the flush runs on the loop's next turn, so a lone call goes out at once.
    """

    def __init__(self, pool: ConnectionPool, *, max_batch: int) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self._pending: deque[_Call] = deque()
        self._flush_scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def execute(self, *command: EncodableT, script: LuaScript | None = None) -> Any:
        call = _Call(pack_command(command), script)  # packed here: a bad argument fails its caller only
        self._pending.append(call)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await call.future

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._pending:
            batch: list[_Call] = []
            while self._pending and len(batch) < self.max_batch:
                call = self._pending.popleft()
                if not call.future.done():  # skip callers cancelled before their batch left
                    batch.append(call)
            if batch:
                task = asyncio.get_running_loop().create_task(self._send(batch))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            connection: AbstractConnection = await self.pool.get_connection()  # type: ignore[no-untyped-call]
        except BaseException as exc:
            self._fail(batch, exc)
            return
        try:
            forgotten = await self._exchange(connection, [], batch, reload_on_noscript=True)
            if forgotten:  # Redis restarted: load the scripts, then re-send the calls that did not run
                scripts = {call.script.sha: call.script for call in forgotten if call.script is not None}
                log.info("redis forgot %d script(s); loading them again", len(scripts))
                loads = [pack_command(("SCRIPT", "LOAD", script.source)) for script in scripts.values()]
                await self._exchange(connection, loads, forgotten, reload_on_noscript=False)
        except BaseException as exc:
            self._fail(batch, exc)  # only the calls still waiting: the others have their answers
        finally:
            await self.pool.release(connection)

    @staticmethod
    def _fail(batch: list[_Call], exc: BaseException) -> None:
        """Answer every waiting call of a batch that broke; a cancelled batch still answers, then stops."""
        for call in batch:
            call.answer(exc if isinstance(exc, Exception) else _unavailable(exc))
        if not isinstance(exc, Exception):
            raise exc

    @staticmethod
    async def _exchange(
        connection: AbstractConnection,
        preamble: Sequence[bytes],
        calls: list[_Call],
        *,
        reload_on_noscript: bool,
    ) -> list[_Call]:
        """One round trip: send ``preamble`` and the calls' commands, answer each call as its reply is read.

        Returns the calls that met NOSCRIPT (when ``reload_on_noscript``). All replies share one deadline,
        the connection's socket timeout, instead of redis-py's timer per reply.
        """
        forgotten: list[_Call] = []
        async with asyncio.timeout(connection.socket_timeout):
            await connection.send_packed_command(b"".join([*preamble, *(call.command for call in calls)]))
            for _ in preamble:
                await connection.read_response(timeout=math.inf)  # math.inf: no timer of redis-py's own
            for call in calls:
                try:
                    reply = await connection.read_response(timeout=math.inf)
                except redis_errors.NoScriptError as error:
                    if reload_on_noscript:
                        forgotten.append(call)
                        continue
                    reply = error
                except redis_errors.ResponseError as error:  # this call's error; the stream is still in step
                    reply = error
                call.answer(reply)
        return forgotten

    async def aclose(self) -> None:
        """Let the batches already sent finish, so their callers get answers before the pool closes."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)


class RedisStore(Store):
    """``RedisStore(url)`` owns its client and closes it; ``RedisStore(client)`` leaves it to the caller.

    A given client must not decode responses (outputs are bytes) and should be built like
    :func:`make_client` (blocking pool, no retries); the pool options here apply only to a URL.
    """

    def __init__(
        self,
        redis: str | Redis,
        *,
        prefix: str = "gw",
        processed_ttl: float = 86400.0,
        max_connections: int = 16,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        pool_timeout: float = 10.0,
        health_check_interval: int = 30,
        **pool_options: Any,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"a Redis key prefix cannot hold a brace (it breaks the hash tag): {prefix!r}")
        if isinstance(redis, str):
            self._client = make_client(
                redis,
                max_connections=max_connections,
                socket_timeout=socket_timeout,
                connect_timeout=connect_timeout,
                pool_timeout=pool_timeout,
                health_check_interval=health_check_interval,
                **pool_options,
            )
            self._owns_client = True
        else:
            if redis.connection_pool.connection_kwargs.get("decode_responses"):
                raise ValueError("RedisStore needs a client with decode_responses=False (outputs are bytes)")
            self._client = redis
            self._owns_client = False
        self.keys = KeyBuilder(prefix)
        self.processed_ttl = processed_ttl
        self._load = LuaScript.of(_LOAD)
        self._commit = LuaScript.of(_COMMIT)
        self._lease = LuaScript.of(_LEASE)
        self._release = LuaScript.of(_RELEASE)
        self._pipeline = AutoPipeline(self._client.connection_pool, max_batch=32)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        return cls(url, **options)

    @property
    def max_batch(self) -> int:
        """Calls per pipeline (32); more concurrent calls go out as several pipelines, in parallel."""
        return self._pipeline.max_batch

    @max_batch.setter
    def max_batch(self, calls: int) -> None:
        if calls < 1:
            raise ValueError(f"a batch holds at least one call: {calls}")
        self._pipeline.max_batch = calls

    @property
    def client(self) -> Redis:
        return self._client

    async def _script(self, script: LuaScript, keys: Sequence[str], args: Sequence[EncodableT] = ()) -> Any:
        return await self._pipeline.execute("EVALSHA", script.sha, len(keys), *keys, *args, script=script)

    async def load(self, key: ConversationKey, message_id: str) -> Snapshot:
        keys = self.keys
        raw_session, raw_user, processed = await self._script(
            self._load,
            (keys.session(key), keys.user(key.channel, key.user), keys.processed(key, message_id)),
        )
        return Snapshot(
            session=self._session_or_none(key, raw_session),
            user=_decode_hash(raw_user),
            outputs=tuple(processed[1:]) if processed else None,
        )

    @staticmethod
    def _session_or_none(key: ConversationKey, raw: bytes | None) -> Session | None:
        """A session this code cannot read (corrupt, or from another version) restarts the conversation
        instead of failing every message of it until the session expires."""
        if raw is None:
            return None
        try:
            return decode_session(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable session of %s dropped: %r", key, exc)
            return None

    async def commit(self, key: ConversationKey, commit: Commit) -> bool:
        keys = self.keys
        session = commit.session
        to_set: list[str] = []
        to_delete: list[str] = []
        for name, value in commit.user_changes.items():
            if value is None:
                to_delete.append(name)
            else:
                to_set += (name, value)
        args: list[EncodableT] = [
            encode_session(session) if session is not None else b"",
            _milliseconds(session.ttl) if session is not None else 0,
            _milliseconds(self.processed_ttl),
            len(to_set) // 2,
            len(to_delete),
            *to_set,
            *to_delete,
            _PROCESSED_MARKER,
            *commit.outputs,
        ]
        written = await self._script(
            self._commit,
            (keys.session(key), keys.user(key.channel, key.user), keys.processed(key, commit.message_id)),
            args,
        )
        return bool(written)

    async def user_attributes(self, channel: str, user: str) -> dict[str, str]:
        return _decode_hash(await self._pipeline.execute("HGETALL", self.keys.user(channel, user)))

    async def set_opted_out(self, channel: str, user: str, opted_out: bool) -> None:
        key = self.keys.opt_out(channel, user)
        if opted_out:
            await self._pipeline.execute("SET", key, str(round(time.time())))
        else:
            await self._pipeline.execute("DEL", key)

    async def opted_out(self, channel: str, user: str) -> bool:
        found: int = await self._pipeline.execute("EXISTS", self.keys.opt_out(channel, user))
        return found > 0

    async def mark_seen(self, namespace: str, item: str, ttl: float) -> bool:
        seen = self.keys.seen(namespace, item)
        created = await self._pipeline.execute("SET", seen, b"1", "PX", _milliseconds(ttl), "NX")
        return created is not None

    async def is_seen(self, namespace: str, item: str) -> bool:
        found: int = await self._pipeline.execute("EXISTS", self.keys.seen(namespace, item))
        return found > 0

    async def forget_seen(self, namespace: str, item: str) -> None:
        await self._pipeline.execute("DEL", self.keys.seen(namespace, item))

    async def lease(self, namespace: str, item: str, holder: str, ttl: float) -> bool:
        taken = await self._script(
            self._lease, (self.keys.lease(namespace, item),), (holder, _milliseconds(ttl))
        )
        return bool(taken)

    async def release(self, namespace: str, item: str, holder: str) -> None:
        await self._script(self._release, (self.keys.lease(namespace, item),), (holder,))

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (redis_errors.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._pipeline.aclose()
        if self._owns_client:
            await self._client.aclose()


def _decode_hash(raw: Mapping[bytes | str, bytes | str] | Sequence[bytes]) -> dict[str, str]:
    """HGETALL's answer: a dict (RESP3) or a flat field/value list (RESP2, and from a script)."""
    if isinstance(raw, Mapping):
        return {_text(field): _text(value) for field, value in raw.items()}
    return {raw[i].decode(): raw[i + 1].decode() for i in range(0, len(raw), 2)}


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw

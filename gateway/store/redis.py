"""The Redis store (redis-py asyncio): one Lua script per :meth:`load`, one per :meth:`commit`.

Each script touches only the keys :class:`~gateway.keys.KeyBuilder` makes for one (channel, user), which
share one hash tag, so both scripts are legal on Redis Cluster. The scripts run through redis-py's
``Script`` helper (EVALSHA; on NOSCRIPT, after a Redis restart, it loads the script and retries).

Layout: the session is one JSON string (story, step, values, buttons, ttl) with PX = its ttl; the
user's attributes are a hash with no TTL; a processed message is a list — a format marker, then the
recorded outputs as they were (Redis strings hold any bytes) — with PX = ``processed_ttl``.

Failures: redis-py's own retries are off (a retried SET NX or commit could misreport "seen"/"committed
before"), so every connection error, timeout, loading or read-only answer surfaces at once as
:class:`StoreUnavailable` and the caller retries. The pool blocks when exhausted instead of raising,
replaces connections the server closed when it hands them out, and pings idle ones before reuse.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.keys import KeyBuilder
from gateway.schema import Button, ConversationKey
from gateway.store.base import Commit, Session, Snapshot, Store, StoreUnavailable

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


@contextlib.contextmanager
def _unavailable_on_failure() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def encode_session(session: Session) -> bytes:
    return json.dumps(
        {
            "story": session.story,
            "step": session.step,
            "values": dict(session.values),
            "buttons": [{"title": b.title, "payload": b.payload} for b in session.buttons],
            "ttl": session.ttl,
        },
        ensure_ascii=False,
        separators=(",", ":"),
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
        **pool_options,
    )
    return Redis.from_pool(pool)


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
        self._load = self._client.register_script(_LOAD)
        self._commit = self._client.register_script(_COMMIT)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        return cls(url, **options)

    @property
    def client(self) -> Redis:
        return self._client

    async def load(self, key: ConversationKey, message_id: str) -> Snapshot:
        keys = self.keys
        with _unavailable_on_failure():
            raw_session, raw_user, processed = await self._load(
                keys=(keys.session(key), keys.user(key.channel, key.user), keys.processed(key, message_id))
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
        args: list[str | bytes | int] = [
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
        with _unavailable_on_failure():
            written = await self._commit(
                keys=(
                    keys.session(key),
                    keys.user(key.channel, key.user),
                    keys.processed(key, commit.message_id),
                ),
                args=args,
            )
        return bool(written)

    async def user_attributes(self, channel: str, user: str) -> dict[str, str]:
        with _unavailable_on_failure():
            raw = await self._client.hgetall(self.keys.user(channel, user))
        return _decode_hash(raw)

    async def mark_seen(self, namespace: str, item: str, ttl: float) -> bool:
        with _unavailable_on_failure():
            seen = self.keys.seen(namespace, item)
            created = await self._client.set(seen, b"1", px=_milliseconds(ttl), nx=True)
        return bool(created)

    async def is_seen(self, namespace: str, item: str) -> bool:
        with _unavailable_on_failure():
            found: int = await self._client.exists(self.keys.seen(namespace, item))
        return found > 0

    async def forget_seen(self, namespace: str, item: str) -> None:
        with _unavailable_on_failure():
            await self._client.delete(self.keys.seen(namespace, item))

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (redis_errors.RedisError, OSError):
            return False

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _decode_hash(raw: Mapping[bytes | str, bytes | str] | Sequence[bytes]) -> dict[str, str]:
    """HGETALL's answer: a dict from redis-py, a flat field/value list from a script."""
    if isinstance(raw, Mapping):
        return {_text(field): _text(value) for field, value in raw.items()}
    return {raw[i].decode(): raw[i + 1].decode() for i in range(0, len(raw), 2)}


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw

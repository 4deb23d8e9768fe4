"""The Redis store: one Lua script per :meth:`~RedisStore.load`, one per :meth:`~RedisStore.commit`.

Each script touches only the keys :class:`~gateway.core.store.keys.KeyBuilder` makes for one (channel,
user), which share one hash tag, so both scripts are legal on Redis Cluster.

The client is :mod:`gateway.core.redis`: a blocking pool with redis-py's retries off, and automatic
pipelining, so the store's calls made during one turn of the event loop share one round trip (which saves
redis-py's per-command cost, that dominated the worker's profile), each with its own answer or error.

Layout: the session is one JSON string (story, step, values, buttons, ttl) with PX = its ttl; the
user's attributes are a hash with no TTL; a processed message is a list — a format marker, then the
recorded outputs as they were (Redis strings hold any bytes) — with PX = ``processed_ttl``; a record is
a string with its own PX. The user's expiring keys are indexed in a sorted set (key → expiry in ms, by
Redis's clock) written by the same commit, so everything kept about a user is found without a scan.

Failures: every connection error, timeout, loading or read-only answer surfaces at once as
:class:`~gateway.core.errors.StoreUnavailable` and the caller retries (no retries inside: a retried SET NX
or commit could misreport "seen"/"committed before"). A broken connection fails every call of its batch
that has no answer yet; a commit among them may have been applied, and its retry then returns False, as
any commit whose answer was lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.typing import EncodableT

from gateway.core.redis.client import make_client
from gateway.core.redis.cluster import ClusterPipeline
from gateway.core.redis.pipeline import AutoPipeline, CommandPipeline
from gateway.core.redis.scripts import LuaScript
from gateway.core.schema import Button, ConversationKey
from gateway.core.store.base import Commit, Session, Snapshot, Store, check_record_kinds
from gateway.core.store.keys import KeyBuilder

log = logging.getLogger(__name__)

_PROCESSED_MARKER = b"v1"  # first item of a processed list: a commit with no outputs still exists

# KEYS: session, user, processed, then one key per record kind asked for.
# Returns {session JSON or nil, HGETALL user, the processed list, each record or nil}.
_LOAD = """
local found = {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2])}
found[3] = redis.call('LRANGE', KEYS[3], 0, -1)
for i = 4, #KEYS do
  found[i] = redis.call('GET', KEYS[i])
end
return found
"""

# KEYS: session, user, processed, the user's key index, then one key per record written.
# ARGV: session JSON ('' deletes it), session ttl ms, processed ttl ms, #attribute pairs to set,
#       #attributes to delete, per record its value and ttl ms (0 deletes it), the pairs, the deleted
#       names, then the processed list: marker, outputs.
# Every expiring key written is entered in the index with when it expires; entries past are dropped.
_COMMIT = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local index = KEYS[4]
local function call_chunked(command, key, first, last)
  while first <= last do
    local stop = math.min(first + 999, last)
    redis.call(command, key, unpack(ARGV, first, stop))
    first = stop + 1
  end
end
local function put(key, value, ttl)
  if value == '' or ttl == '0' then
    redis.call('DEL', key)
    redis.call('ZREM', index, key)
  else
    redis.call('SET', key, value, 'PX', ttl)
    redis.call('ZADD', index, now + tonumber(ttl), key)
  end
end
put(KEYS[1], ARGV[1], ARGV[2])
local records = #KEYS - 4
for i = 1, records do
  put(KEYS[4 + i], ARGV[4 + 2 * i], ARGV[5 + 2 * i])
end
local pairs_start = 6 + 2 * records
local deletes_start = pairs_start + 2 * tonumber(ARGV[4])
local record_start = deletes_start + tonumber(ARGV[5])
call_chunked('HSET', KEYS[2], pairs_start, deletes_start - 1)
call_chunked('HDEL', KEYS[2], deletes_start, record_start - 1)
call_chunked('RPUSH', KEYS[3], record_start, #ARGV)
redis.call('PEXPIRE', KEYS[3], ARGV[3])
redis.call('ZADD', index, now + tonumber(ARGV[3]), KEYS[3])
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIREAT', index, last[2])
end
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


class RedisStore(Store):
    """``RedisStore(url)`` owns its client and closes it; ``RedisStore(client)`` leaves it to the caller.

    A given client must not decode responses (outputs are bytes) and should be built like
    :func:`~gateway.core.redis.client.make_client` (blocking pool, no retries); the pool options here
    apply only to a URL.
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
        cluster: bool = False,
        **pool_options: Any,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"a Redis key prefix cannot hold a brace (it breaks the hash tag): {prefix!r}")
        self._pipeline: CommandPipeline
        self._client: Redis | None = None
        if isinstance(redis, str):
            pool_options.setdefault("client_name", "gateway-store")
            options: dict[str, Any] = dict(
                max_connections=max_connections,
                socket_timeout=socket_timeout,
                connect_timeout=connect_timeout,
                pool_timeout=pool_timeout,
                health_check_interval=health_check_interval,
                **pool_options,
            )
            if cluster:  # one pool and pipeline per master, calls routed by slot
                self._pipeline = ClusterPipeline(redis, max_batch=32, **options)
            else:
                self._client = make_client(redis, **options)
            self._owns_client = True
        else:
            if redis.connection_pool.connection_kwargs.get("decode_responses"):
                raise ValueError("RedisStore needs a client with decode_responses=False (outputs are bytes)")
            if cluster:
                raise ValueError("a Redis Cluster store is built from a URL, not from a client")
            self._client = redis
            self._owns_client = False
        self.keys = KeyBuilder(prefix)
        self.processed_ttl = processed_ttl
        self._load = LuaScript.of(_LOAD)
        self._commit = LuaScript.of(_COMMIT)
        self._lease = LuaScript.of(_LEASE)
        self._release = LuaScript.of(_RELEASE)
        if self._client is not None:
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
        """The redis-py client of a single-node store (tests and tools look at keys with it)."""
        if self._client is None:
            raise RuntimeError("a Redis Cluster store has a client per node, not one")
        return self._client

    @property
    def pipeline(self) -> CommandPipeline:
        """The store's pipeline (one node's, or routed by slot on a cluster), shared by the user data, the
        user index and the broadcasts on Redis."""
        return self._pipeline

    async def load(self, key: ConversationKey, message_id: str, records: Sequence[str] = ()) -> Snapshot:
        keys = self.keys
        check_record_kinds(records)
        raw_session, raw_user, processed, *raw_records = await self._pipeline.run(
            self._load,
            (
                keys.session(key),
                keys.user(key.channel, key.user),
                keys.processed(key, message_id),
                *(keys.record(key, kind) for kind in records),
            ),
        )
        return Snapshot(
            session=self._session_or_none(key, raw_session),
            user=_decode_hash(raw_user),
            outputs=tuple(processed[1:]) if processed else None,
            records={kind: value for kind, value in zip(records, raw_records, strict=False) if value},
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
        check_record_kinds(commit.records)
        kinds = list(commit.records)
        record_args: list[EncodableT] = []
        for kind in kinds:
            record = commit.records[kind]
            record_args += (record.value, _milliseconds(record.ttl)) if record is not None else (b"", 0)
        args: list[EncodableT] = [
            encode_session(session) if session is not None else b"",
            _milliseconds(session.ttl) if session is not None else 0,
            _milliseconds(self.processed_ttl),
            len(to_set) // 2,
            len(to_delete),
            *record_args,
            *to_set,
            *to_delete,
            _PROCESSED_MARKER,
            *commit.outputs,
        ]
        written = await self._pipeline.run(
            self._commit,
            (
                keys.session(key),
                keys.user(key.channel, key.user),
                keys.processed(key, commit.message_id),
                keys.user_keys(key.channel, key.user),
                *(keys.record(key, kind) for kind in kinds),
            ),
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
        """The marker, or one written under its name before markers were digested (looked for only when
        there is no marker: a second round trip on the uncommon path; each key in its own slot)."""
        if await self._pipeline.execute("EXISTS", self.keys.seen(namespace, item)):
            return True
        legacy: int = await self._pipeline.execute("EXISTS", self.keys.legacy_seen(namespace, item))
        return legacy > 0

    async def forget_seen(self, namespace: str, item: str) -> None:
        await self._pipeline.execute("DEL", self.keys.seen(namespace, item))
        await self._pipeline.execute("DEL", self.keys.legacy_seen(namespace, item))

    async def lease(self, namespace: str, item: str, holder: str, ttl: float) -> bool:
        taken = await self._pipeline.run(
            self._lease, (self.keys.lease(namespace, item),), (holder, _milliseconds(ttl))
        )
        return bool(taken)

    async def release(self, namespace: str, item: str, holder: str) -> None:
        await self._pipeline.run(self._release, (self.keys.lease(namespace, item),), (holder,))

    async def put_link(self, namespace: str, item: str, value: str, ttl: float) -> None:
        await self._pipeline.execute(
            "SET", self.keys.link(namespace, item), value.encode(), "PX", _milliseconds(ttl)
        )

    async def get_link(self, namespace: str, item: str) -> str | None:
        found = await self._pipeline.execute("GET", self.keys.link(namespace, item))
        return None if found is None else _text(found)

    async def add_live_member(self, group: str, member: str, until: float) -> None:
        await self._pipeline.execute("ZADD", self.keys.live_group(group), round(until * 1000), member)

    async def remove_live_member(self, group: str, member: str) -> None:
        await self._pipeline.execute("ZREM", self.keys.live_group(group), member)

    async def count_live_members(self, group: str, now: float) -> int:
        key = self.keys.live_group(group)
        await self._pipeline.execute("ZREMRANGEBYSCORE", key, "-inf", round(now * 1000))
        count: int = await self._pipeline.execute("ZCARD", key)
        return count

    async def ping(self) -> bool:
        if isinstance(self._pipeline, ClusterPipeline):
            return await self._pipeline.ping()
        try:
            return bool(await self.client.ping())
        except (redis_errors.RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._pipeline.aclose()
        if self._owns_client and self._client is not None:
            await self._client.aclose()


def _decode_hash(raw: Mapping[bytes | str, bytes | str] | Sequence[bytes]) -> dict[str, str]:
    """HGETALL's answer: a dict (RESP3) or a flat field/value list (RESP2, and from a script)."""
    if isinstance(raw, Mapping):
        return {_text(field): _text(value) for field, value in raw.items()}
    return {raw[i].decode(): raw[i + 1].decode() for i in range(0, len(raw), 2)}


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw

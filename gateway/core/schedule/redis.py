"""The schedule on Redis: each partition's entries in small sorted sets behind an index (member:
conversation and timer id, score: due time in ms; layout and scripts in
:mod:`~gateway.core.schedule.buckets`), and one hash of poller leases; one Lua script per call.

Every key of one partition carries the hash tag ``{timers:P}`` and the leases ``{timers}``, so each script
stays in one Redis Cluster slot. Members are short (``channel:chat:user:timer``, parts percent-escaped
as in the store's keys, the chat left empty when it is the user), since a pending timer's cost is mostly
its member (``bench/timer_bench.py`` measures it).

Lease times come from Redis's clock (``TIME``), so processes whose clocks differ agree on when a lease
runs out. Failures surface as :class:`~gateway.core.errors.StoreUnavailable` and the caller retries.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any
from urllib.parse import unquote

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.typing import EncodableT

from gateway.core.redis.client import make_client
from gateway.core.redis.cluster import ClusterPipeline
from gateway.core.redis.pipeline import AutoPipeline, CommandPipeline
from gateway.core.redis.scripts import LuaScript
from gateway.core.schedule.base import DueTimers, Schedule, Scheduled
from gateway.core.schedule.buckets import BUCKET_SIZE, CHANGE, COUNT, DUE, GRACE_MS
from gateway.core.schema import ConversationKey
from gateway.core.store.keys import KeyBuilder, escape

# KEYS: the leases hash. ARGV: holder, partitions, ttl ms, '1' to release, then the partitions claimed.
# A lease is "<runs out at, ms> <holder>". Returns the partitions the holder holds.
_HOLD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local holder, ttl, release = ARGV[1], tonumber(ARGV[3]), ARGV[4] == '1'
local claimed = {}
for i = 5, #ARGV do
  claimed[ARGV[i]] = true
end
local held = {}
for p = 0, tonumber(ARGV[2]) - 1 do
  local field = tostring(p)
  local lease = redis.call('HGET', KEYS[1], field)
  local owner, ends = nil, 0
  if lease then
    local gap = string.find(lease, ' ', 1, true)
    ends, owner = tonumber(string.sub(lease, 1, gap - 1)), string.sub(lease, gap + 1)
  end
  if release then
    if owner == holder then
      redis.call('HDEL', KEYS[1], field)
    end
  elseif claimed[field] or ends <= now or owner == holder then
    redis.call('HSET', KEYS[1], field, (now + ttl) .. ' ' .. holder)
    held[#held + 1] = p
  end
end
if #held > 0 then
  redis.call('PEXPIRE', KEYS[1], 2 * ttl)
end
return held
"""


def encode_member(conversation: ConversationKey, timer: str) -> str:
    chat = "" if conversation.chat == conversation.user else escape(conversation.chat)
    return f"{escape(conversation.channel)}:{chat}:{escape(conversation.user)}:{timer}"


def decode_member(member: bytes | str) -> tuple[ConversationKey, str]:
    text = member.decode() if isinstance(member, bytes) else member
    channel, chat, user, timer = text.split(":")
    user = unquote(user)
    return ConversationKey(unquote(channel), unquote(chat) if chat else user, user), timer


class RedisSchedule(Schedule):
    """``RedisSchedule(url)`` owns its client and closes it; ``RedisSchedule(client)`` leaves it to the
    caller (a client built like :func:`~gateway.core.redis.client.make_client`); ``cluster=True``: the URL
    names one node of a Redis Cluster, and each call goes to the master of its partition's slot."""

    def __init__(
        self,
        redis: str | Redis,
        *,
        prefix: str = "gw",
        max_connections: int = 4,
        cluster: bool = False,
        **options: Any,
    ) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"a Redis key prefix cannot hold a brace (it breaks the hash tag): {prefix!r}")
        self._pipeline: CommandPipeline
        self._client: Redis | None = None
        if isinstance(redis, str):
            options.setdefault("client_name", "gateway-schedule")
            if cluster:
                self._pipeline = ClusterPipeline(
                    redis, max_batch=32, max_connections=max_connections, **options
                )
            else:
                self._client = make_client(redis, max_connections=max_connections, **options)
            self._owns_client = True
        else:
            if cluster:
                raise ValueError("a Redis Cluster schedule is built from a URL, not from a client")
            self._client = redis
            self._owns_client = False
        self.keys = KeyBuilder(prefix)
        self.bucket_size = BUCKET_SIZE
        self._change = LuaScript.of(CHANGE)
        self._due = LuaScript.of(DUE)
        self._count = LuaScript.of(COUNT)
        self._hold = LuaScript.of(_HOLD)
        if self._client is not None:
            self._pipeline = AutoPipeline(self._client.connection_pool, max_batch=32)

    @property
    def client(self) -> Redis:
        """The redis-py client of a single-node schedule (tests look at its keys with it)."""
        if self._client is None:
            raise RuntimeError("a Redis Cluster schedule has a client per node, not one")
        return self._client

    async def change(
        self, partition: int, add: Sequence[Scheduled] = (), remove: Sequence[Scheduled] = ()
    ) -> None:
        if not add and not remove:
            return
        prefix = self.keys.schedule_bucket(partition, "")
        args: list[EncodableT] = [prefix, self.bucket_size, GRACE_MS, len(add)]
        for entry in (*add, *remove):
            args += (entry.due_ms, encode_member(entry.conversation, entry.timer))
        await self._pipeline.run(self._change, (self.keys.schedule(partition),), args)

    async def due(self, partition: int, now_ms: int, limit: int) -> DueTimers:
        if limit < 1:
            raise ValueError(f"limit must be at least 1: {limit}")
        prefix = self.keys.schedule_bucket(partition, "")
        found, after = await self._pipeline.run(
            self._due, (self.keys.schedule(partition),), (prefix, now_ms, limit)
        )
        timers = []
        for i in range(0, len(found), 2):
            conversation, timer = decode_member(found[i])
            timers.append(Scheduled(int(float(found[i + 1])), conversation, timer))
        return DueTimers(tuple(timers), int(float(after)) if after else None)

    async def count(self, partition: int) -> int:
        prefix = self.keys.schedule_bucket(partition, "")
        counted: int = await self._pipeline.run(self._count, (self.keys.schedule(partition),), (prefix,))
        return counted

    async def hold(
        self, holder: str, partitions: int, ttl: float, *, claim: Collection[int] = (), release: bool = False
    ) -> frozenset[int]:
        args: list[EncodableT] = [holder, partitions, max(1, round(ttl * 1000)), "1" if release else "0"]
        args += [int(p) for p in claim]
        held = await self._pipeline.run(self._hold, (self.keys.timer_pollers(),), args)
        return frozenset(int(p) for p in held)

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

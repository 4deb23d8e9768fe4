"""Broadcasts on Redis: one hash per broadcast (its own slot), claimed and checkpointed by Lua scripts
that compare the holder in the same hash, so a claim and the progress it guards change together.

The pending ids are a set apart (another slot): a broadcast is written before it is listed, and taken
off the list after it is marked done, so a crash in between leaves at worst a finished id listed, which
the next claim removes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.core.redis.scripts import LuaScript
from gateway.core.store.broadcasts.base import (
    KEEP_FINISHED,
    Broadcast,
    Broadcasts,
    Progress,
    check_broadcast_ids,
)
from gateway.core.store.redis import RedisStore, _decode_hash

# KEYS: broadcast. ARGV: holder, ttl ms. Returns the hash, or nil when finished, unknown or held.
_CLAIM = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'running' then
  return {status and 'done' or 'unknown'}
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local holder = redis.call('HGET', KEYS[1], 'holder')
local held_until = tonumber(redis.call('HGET', KEYS[1], 'held_until') or '0')
if holder and holder ~= ARGV[1] and held_until > now then
  return {'held'}
end
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'held_until', now + tonumber(ARGV[2]))
return {'claimed', redis.call('HGETALL', KEYS[1])}
"""

# KEYS: broadcast. ARGV: holder, ttl ms ('' for a finish), keep ms, then field/value pairs to write.
_UPDATE = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4, #ARGV))
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'holder', 'held_until', 'cursor', 'shard')
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  local clock = redis.call('TIME')
  local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
  redis.call('HSET', KEYS[1], 'held_until', now + tonumber(ARGV[2]))
end
return 1
"""

# KEYS: broadcast. ARGV: holder.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'holder', 'held_until')
end
return 0
"""

_CLAIM_SCRIPT = LuaScript.of(_CLAIM)
_UPDATE_SCRIPT = LuaScript.of(_UPDATE)
_RELEASE_SCRIPT = LuaScript.of(_RELEASE)


class RedisBroadcasts(Broadcasts):
    def __init__(self, store: RedisStore) -> None:
        self.keys = store.keys
        self.pipeline = store.pipeline

    async def create(self, broadcast: Broadcast) -> None:
        check_broadcast_ids([broadcast.id])
        fields: dict[str, str] = {
            "id": broadcast.id,
            "story": broadcast.story,
            "channel": broadcast.channel,
            "where": broadcast.where,
            "dry_run": "1" if broadcast.dry_run else "0",
            "created_at": repr(broadcast.created_at),
            "by": broadcast.by,
            "status": broadcast.status,
            **_progress_fields(broadcast.progress),
        }
        pairs = [part for item in fields.items() for part in item]
        await self.pipeline.execute("HSET", self.keys.broadcast(broadcast.id), *pairs)
        await self.pipeline.execute("SADD", self.keys.broadcasts_pending(), broadcast.id)

    async def get(self, broadcast_id: str) -> Broadcast | None:
        check_broadcast_ids([broadcast_id])
        found = _decode_hash(await self.pipeline.execute("HGETALL", self.keys.broadcast(broadcast_id)))
        return _broadcast_of(found) if found else None

    async def pending(self) -> list[str]:
        found = await self.pipeline.execute("SMEMBERS", self.keys.broadcasts_pending())
        return sorted(raw.decode() for raw in found)

    async def claim(self, broadcast_id: str, holder: str, ttl: float) -> Broadcast | None:
        check_broadcast_ids([broadcast_id])
        answer = await self.pipeline.run(
            _CLAIM_SCRIPT, (self.keys.broadcast(broadcast_id),), (holder, _ms(ttl))
        )
        outcome = answer[0].decode()
        if outcome in ("done", "unknown"):
            await self.pipeline.execute("SREM", self.keys.broadcasts_pending(), broadcast_id)
            return None
        if outcome != "claimed":
            return None
        return _broadcast_of(_decode_hash(answer[1]))

    async def checkpoint(self, broadcast_id: str, holder: str, progress: Progress, ttl: float) -> bool:
        fields = _progress_fields(progress)
        pairs = [part for item in fields.items() for part in item]
        written = await self.pipeline.run(
            _UPDATE_SCRIPT, (self.keys.broadcast(broadcast_id),), (holder, _ms(ttl), 0, *pairs)
        )
        return bool(written)

    async def finish(self, broadcast_id: str, holder: str, progress: Progress, at: float) -> bool:
        fields = {**_progress_fields(progress), "status": "done", "finished_at": repr(at)}
        pairs = [part for item in fields.items() for part in item]
        written = await self.pipeline.run(
            _UPDATE_SCRIPT, (self.keys.broadcast(broadcast_id),), (holder, "", _ms(KEEP_FINISHED), *pairs)
        )
        if written:
            await self.pipeline.execute("SREM", self.keys.broadcasts_pending(), broadcast_id)
        return bool(written)

    async def release(self, broadcast_id: str, holder: str) -> None:
        await self.pipeline.run(_RELEASE_SCRIPT, (self.keys.broadcast(broadcast_id),), (holder,))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _progress_fields(progress: Progress) -> dict[str, str]:
    return {
        "shard": str(progress.shard),
        "cursor": progress.cursor,
        "walked": str(progress.walked),
        "matched": str(progress.matched),
        "started": str(progress.started),
        "failed": str(progress.failed),
    }


def _broadcast_of(fields: Mapping[str, Any]) -> Broadcast:
    finished = fields.get("finished_at")
    return Broadcast(
        id=fields["id"],
        story=fields["story"],
        channel=fields["channel"],
        where=fields["where"],
        dry_run=fields["dry_run"] == "1",
        created_at=float(fields["created_at"]),
        by=fields["by"],
        status=fields["status"],
        progress=Progress(
            shard=int(fields.get("shard") or 0),
            cursor=fields.get("cursor") or "",
            walked=int(fields["walked"]),
            matched=int(fields["matched"]),
            started=int(fields["started"]),
            failed=int(fields["failed"]),
        ),
        finished_at=float(finished) if finished else None,
    )

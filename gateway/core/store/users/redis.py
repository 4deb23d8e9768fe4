"""The user data and user index on Redis, on the store's client and automatic pipeline.

User data: one Lua script reads (or reads and deletes) everything under the user's hash tag: the
attributes, the opt-out, and every key the commit script entered in the user's key index (sessions,
records, processed messages), so nothing is found by scanning the keyspace. The script reads keys it
finds in the index rather than in ``KEYS``; all of them carry the user's tag, so it stays in one slot.

User index: per channel, :data:`~gateway.core.store.keys.USER_INDEX_SHARDS` shards, each three keys
under one tag ``{users:channel:shard}``: ``all`` (members scored 0, walked in order with ``BYLEX``),
``seen`` (scored by the last message, in ms) and ``route`` (a hash of JSON ``{"chat", "meta"}``).
Each call is one script on one shard, so one slot.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence

from redis.typing import EncodableT

from gateway.core.redis.scripts import LuaScript
from gateway.core.store.keys import shard_of
from gateway.core.store.redis import RedisStore, _decode_hash, decode_session
from gateway.core.store.users.base import (
    IndexEntry,
    KeptMessage,
    KeptRecord,
    KeptSession,
    UserData,
    UserIndex,
    UserRecords,
)

log = logging.getLogger(__name__)

# KEYS: attributes, opt-out, key index. ARGV: '1' to read the processed lists, '1' to delete everything.
# Returns {HGETALL attributes, EXISTS opt-out, {name, expiry ms, value or list}...}. An indexed key that
# has expired or gone is skipped (and left to the index's own clean-up).
_READ = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local kept = {}
local members = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local name = members[i]
  local kind = redis.call('TYPE', name)['ok']
  if kind == 'string' then
    kept[#kept + 1] = {name, members[i + 1], redis.call('GET', name)}
  elseif kind == 'list' and ARGV[1] == '1' then
    kept[#kept + 1] = {name, members[i + 1], redis.call('LRANGE', name, 0, -1)}
  end
  if ARGV[2] == '1' then
    redis.call('DEL', name)
  end
end
local found = {redis.call('HGETALL', KEYS[1]), redis.call('EXISTS', KEYS[2]), kept}
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
end
return found
"""

# KEYS: attributes. ARGV: #names to set, the name/value pairs, the names to delete. Returns HGETALL.
_CHANGE = """
local pairs_end = 1 + 2 * tonumber(ARGV[1])
if pairs_end > 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 2, pairs_end))
end
if #ARGV > pairs_end then
  redis.call('HDEL', KEYS[1], unpack(ARGV, pairs_end + 1, #ARGV))
end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: all, seen, route. ARGV: user, at ms, route JSON ('' keeps the route), 'add' to set seen only
# when there is none. Last seen never moves back (GT): a message handled late does not undo a later one.
_TOUCH = """
redis.call('ZADD', KEYS[1], 0, ARGV[1])
if ARGV[4] == 'add' then
  redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[1])
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
end
return 1
"""

# KEYS: all, seen, route. ARGV: the start of the range ('-' or '(' .. the last user seen), count.
_PAGE = """
local users = redis.call('ZRANGE', KEYS[1], ARGV[1], '+', 'BYLEX', 'LIMIT', 0, tonumber(ARGV[2]))
if #users == 0 then
  return {{}, {}, {}}
end
return {users, redis.call('ZMSCORE', KEYS[2], unpack(users)), redis.call('HMGET', KEYS[3], unpack(users))}
"""

# KEYS: all, seen, route. ARGV: user, idle-before ms ('' for no condition). 1 when an entry went.
_REMOVE = """
if ARGV[2] ~= '' then
  local seen = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if seen and tonumber(seen) >= tonumber(ARGV[2]) then
    return 0
  end
end
local removed = redis.call('ZREM', KEYS[1], ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
removed = removed + redis.call('HDEL', KEYS[3], ARGV[1])
if removed > 0 then
  return 1
end
return 0
"""

_READ_SCRIPT = LuaScript.of(_READ)
_CHANGE_SCRIPT = LuaScript.of(_CHANGE)
_TOUCH_SCRIPT = LuaScript.of(_TOUCH)
_PAGE_SCRIPT = LuaScript.of(_PAGE)
_REMOVE_SCRIPT = LuaScript.of(_REMOVE)
# KEYS: seen, route. ARGV: user.
_ENTRY_SCRIPT = LuaScript.of(
    "return {redis.call('ZSCORE', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[2], ARGV[1])}"
)
_ROUTE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


class RedisUserData(UserData):
    def __init__(self, store: RedisStore) -> None:
        self.keys = store.keys
        self.pipeline = store.pipeline

    async def _run(self, channel: str, user: str, *, messages: bool, erase: bool) -> UserRecords:
        keys = self.keys
        raw_attributes, opted_out, kept = await self.pipeline.run(
            _READ_SCRIPT,
            (keys.user(channel, user), keys.opt_out(channel, user), keys.user_keys(channel, user)),
            ("1" if messages else "0", "1" if erase else "0"),
        )
        sessions: list[KeptSession] = []
        records: list[KeptRecord] = []
        processed: list[KeptMessage] = []
        for raw_name, raw_expiry, value in kept:
            parts = keys.user_key_parts(channel, user, raw_name.decode())
            expires_at = int(raw_expiry) / 1000
            if parts is None:
                continue
            if parts[0] == "session" and len(parts) == 2:
                try:
                    sessions.append(KeptSession(parts[1], decode_session(value), expires_at))
                except (ValueError, KeyError, TypeError) as exc:  # the store drops such a session too
                    log.warning("unreadable session of %s/%s left out: %r", channel, user, exc)
            elif parts[0] == "rec" and len(parts) == 3:
                records.append(KeptRecord(parts[2], parts[1], bytes(value), expires_at))
            elif parts[0] == "done" and len(parts) == 2 and isinstance(value, list):
                processed.append(KeptMessage(parts[1], tuple(value[1:]), expires_at))
        return UserRecords(
            attributes=_decode_hash(raw_attributes),
            opted_out=bool(opted_out),
            sessions=tuple(sessions),
            records=tuple(records),
            messages=tuple(processed),
        )

    async def read(self, channel: str, user: str, *, messages: bool = False) -> UserRecords:
        return await self._run(channel, user, messages=messages, erase=False)

    async def change_attributes(
        self, channel: str, user: str, changes: Mapping[str, str | None]
    ) -> dict[str, str]:
        to_set: list[EncodableT] = []
        to_delete: list[EncodableT] = []
        for name, value in changes.items():
            if value is None:
                to_delete.append(name)
            else:
                to_set += (name, value)
        found = await self.pipeline.run(
            _CHANGE_SCRIPT, (self.keys.user(channel, user),), (len(to_set) // 2, *to_set, *to_delete)
        )
        return _decode_hash(found)

    async def erase(self, channel: str, user: str) -> UserRecords:
        return await self._run(channel, user, messages=True, erase=True)


class RedisUserIndex(UserIndex):
    def __init__(self, store: RedisStore) -> None:
        self.keys = store.keys
        self.pipeline = store.pipeline

    def _shard_keys(self, channel: str, shard: int) -> tuple[str, str, str]:
        keys = self.keys
        return (
            keys.user_index(channel, shard, "all"),
            keys.user_index(channel, shard, "seen"),
            keys.user_index(channel, shard, "route"),
        )

    def _user_keys(self, channel: str, user: str) -> tuple[str, str, str]:
        return self._shard_keys(channel, shard_of(user, self.shards))

    async def touch(
        self,
        channel: str,
        user: str,
        at: float,
        chat: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        route = _ROUTE.encode({"chat": chat, "meta": dict(meta or {})}) if chat is not None else ""
        await self.pipeline.run(
            _TOUCH_SCRIPT, self._user_keys(channel, user), (user, _ms(at), route, "touch")
        )

    async def add(self, channel: str, user: str, at: float) -> None:
        await self.pipeline.run(_TOUCH_SCRIPT, self._user_keys(channel, user), (user, _ms(at), "", "add"))

    async def entry(self, channel: str, user: str) -> IndexEntry | None:
        _, seen, route = self._user_keys(channel, user)
        score, raw = await self.pipeline.run(_ENTRY_SCRIPT, (seen, route), (user,))
        if score is None and raw is None:
            return None
        return _entry_of(user, score, raw)

    async def page(self, channel: str, shard: int, after: str, count: int) -> list[IndexEntry]:
        start = "(" + after if after else "-"
        users, scores, routes = await self.pipeline.run(
            _PAGE_SCRIPT, self._shard_keys(channel, shard), (start, count)
        )
        return [
            _entry_of(raw_user.decode("utf-8", "surrogatepass"), score, route)
            for raw_user, score, route in zip(users, scores, routes, strict=True)
        ]

    async def idle(self, channel: str, shard: int, before: float, count: int) -> list[str]:
        _, seen, _ = self._shard_keys(channel, shard)
        found: Sequence[bytes] = await self.pipeline.execute(
            "ZRANGE", seen, "-inf", f"({_ms(before)}", "BYSCORE", "LIMIT", 0, count
        )
        return [raw.decode("utf-8", "surrogatepass") for raw in found]

    async def remove(self, channel: str, user: str, *, idle_before: float | None = None) -> bool:
        condition = "" if idle_before is None else _ms(idle_before)
        removed = await self.pipeline.run(_REMOVE_SCRIPT, self._user_keys(channel, user), (user, condition))
        return bool(removed)

    async def count(self, channel: str) -> int:
        counts = await asyncio.gather(
            *(self.pipeline.execute("ZCARD", self._shard_keys(channel, s)[0]) for s in range(self.shards))
        )
        return sum(counts)


def _ms(at: float) -> int:
    return round(at * 1000)


def _entry_of(user: str, score: bytes | float | None, route: bytes | None) -> IndexEntry:
    last_seen = float(score) / 1000 if score is not None else None
    if route is None:
        return IndexEntry(user, last_seen, None)
    decoded = json.loads(route)
    return IndexEntry(user, last_seen, decoded["chat"], decoded.get("meta") or {})

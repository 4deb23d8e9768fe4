"""The user data and user index of the in-memory store (``gateway run`` without Redis, and tests).

:class:`MemoryUserData` is the memory store's companion: it reads and erases the store's own maps, as the
Redis one reads and deletes the user's keys. No method awaits, so each one is atomic under asyncio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from gateway.core.schema import ConversationKey
from gateway.core.store.keys import shard_of
from gateway.core.store.memory import MemoryStore
from gateway.core.store.users.base import (
    IndexEntry,
    KeptMessage,
    KeptRecord,
    KeptSession,
    UserData,
    UserIndex,
    UserRecords,
)


class MemoryUserData(UserData):
    def __init__(self, store: MemoryStore, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self.wall = wall  # expiry times are reported in Unix time, whatever clock the store runs on

    def _collect(self, channel: str, user: str, *, messages: bool) -> UserRecords:
        store = self.store
        now = store._purge()
        offset = self.wall() - now
        sessions = tuple(
            KeptSession(key.chat, session, deadline + offset)
            for key, (deadline, session) in store._sessions._items.items()
            if key.channel == channel and key.user == user and deadline > now
        )
        records = tuple(
            KeptRecord(key.chat, kind, value, deadline + offset)
            for (key, kind), (deadline, value) in store._records._items.items()
            if key.channel == channel and key.user == user and deadline > now
        )
        kept: tuple[KeptMessage, ...] = ()
        if messages:
            kept = tuple(
                KeptMessage(message_id, outputs, deadline + offset)
                for (c, u, message_id), (deadline, outputs) in store._processed._items.items()
                if c == channel and u == user and deadline > now
            )
        return UserRecords(
            attributes=dict(store._users.get((channel, user), {})),
            opted_out=(channel, user) in store._opted_out,
            sessions=sessions,
            records=records,
            messages=kept,
        )

    async def read(self, channel: str, user: str, *, messages: bool = False) -> UserRecords:
        return self._collect(channel, user, messages=messages)

    async def change_attributes(
        self, channel: str, user: str, changes: Mapping[str, str | None]
    ) -> dict[str, str]:
        self.store._purge()
        users = self.store._users
        attributes = users.setdefault((channel, user), {})
        for name, value in changes.items():
            if value is None:
                attributes.pop(name, None)
            else:
                attributes[name] = value
        if not attributes:
            del users[(channel, user)]
        return dict(attributes)

    async def erase(self, channel: str, user: str) -> UserRecords:
        found = self._collect(channel, user, messages=True)
        store = self.store
        for kept in found.sessions:
            store._sessions.pop(ConversationKey(channel, kept.chat, user))
        for record in found.records:
            store._records.pop((ConversationKey(channel, record.chat, user), record.kind))
        for message in found.messages:
            store._processed.pop((channel, user, message.message_id))
        store._users.pop((channel, user), None)
        store._opted_out.discard((channel, user))
        return found


class MemoryUserIndex(UserIndex):
    def __init__(self) -> None:
        # channel → user → [last seen or None, chat or None, meta]
        self._users: dict[str, dict[str, tuple[float | None, str | None, dict[str, str]]]] = {}

    async def touch(
        self,
        channel: str,
        user: str,
        at: float,
        chat: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        users = self._users.setdefault(channel, {})
        seen, kept_chat, kept_meta = users.get(user, (None, None, {}))
        if chat is not None:
            kept_chat, kept_meta = chat, dict(meta or {})
        users[user] = (at if seen is None else max(seen, at), kept_chat, kept_meta)

    async def add(self, channel: str, user: str, at: float) -> None:
        users = self._users.setdefault(channel, {})
        seen, chat, meta = users.get(user, (None, None, {}))
        users[user] = (at if seen is None else seen, chat, meta)

    async def entry(self, channel: str, user: str) -> IndexEntry | None:
        found = self._users.get(channel, {}).get(user)
        return None if found is None else IndexEntry(user, found[0], found[1], dict(found[2]))

    async def page(self, channel: str, shard: int, after: str, count: int) -> list[IndexEntry]:
        users = self._users.get(channel, {})
        chosen = sorted(
            (u for u in users if shard_of(u, self.shards) == shard and _bytes(u) > _bytes(after)), key=_bytes
        )[:count]
        return [IndexEntry(u, users[u][0], users[u][1], dict(users[u][2])) for u in chosen]

    async def idle(self, channel: str, shard: int, before: float, count: int) -> list[str]:
        users = self._users.get(channel, {})
        idle = [
            (seen, u)
            for u, (seen, _, _) in users.items()
            if seen is not None and seen < before and shard_of(u, self.shards) == shard
        ]
        return [u for _, u in sorted(idle)[:count]]

    async def remove(self, channel: str, user: str, *, idle_before: float | None = None) -> bool:
        users = self._users.get(channel, {})
        found = users.get(user)
        if found is None:
            return False
        if idle_before is not None and found[0] is not None and found[0] >= idle_before:
            return False
        del users[user]
        return True

    async def count(self, channel: str) -> int:
        return len(self._users.get(channel, {}))


def _bytes(user: str) -> bytes:
    """The order of Redis's sorted sets by member: bytewise, UTF-8."""
    return user.encode("utf-8", "surrogatepass")

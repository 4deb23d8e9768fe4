"""The in-memory store, for ``gateway run`` / ``gateway chat`` with no Redis, and for tests.

Time comes from an injected clock, so a test (or ``gateway test``) moves time instead of sleeping.
Expiring entries sit in maps that keep a heap of deadlines; each call drops what has expired, so memory
follows the live conversations instead of growing with every conversation ever seen. No method awaits,
so each one (a commit in particular) is atomic under asyncio.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

from gateway.core.schema import ConversationKey
from gateway.core.store.base import Commit, Session, Snapshot, Store, check_record_kinds

Clock = Callable[[], float]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _ExpiringMap(Generic[K, V]):
    """A dict whose entries vanish at their deadline; expired entries are dropped by :meth:`purge`."""

    def __init__(self) -> None:
        self._items: dict[K, tuple[float, V]] = {}
        self._deadlines: list[tuple[float, int, K]] = []  # a rewritten key leaves a stale entry behind
        self._order = itertools.count()

    def get(self, key: K, now: float) -> V | None:
        item = self._items.get(key)
        return item[1] if item is not None and item[0] > now else None

    def contains(self, key: K, now: float) -> bool:
        item = self._items.get(key)
        return item is not None and item[0] > now

    def put(self, key: K, value: V, deadline: float) -> None:
        self._items[key] = (deadline, value)
        heapq.heappush(self._deadlines, (deadline, next(self._order), key))
        if len(self._deadlines) > 2 * len(self._items) + 64:  # mostly stale entries: rebuild
            self._deadlines = [(d, next(self._order), k) for k, (d, _) in self._items.items()]
            heapq.heapify(self._deadlines)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def purge(self, now: float) -> None:
        deadlines, items = self._deadlines, self._items
        while deadlines and deadlines[0][0] <= now:
            key = heapq.heappop(deadlines)[2]
            item = items.get(key)
            if item is not None and item[0] <= now:
                del items[key]

    def __len__(self) -> int:
        return len(self._items)


class MemoryStore(Store):
    def __init__(self, processed_ttl: float = 86400.0, clock: Clock = time.monotonic) -> None:
        self.processed_ttl = processed_ttl
        self._clock = clock
        self._sessions: _ExpiringMap[ConversationKey, Session] = _ExpiringMap()
        self._users: dict[tuple[str, str], dict[str, str]] = {}  # (channel, user); never expires
        # (channel, user, message id): the same scope as KeyBuilder.processed
        self._processed: _ExpiringMap[tuple[str, str, str], tuple[bytes, ...]] = _ExpiringMap()
        self._opted_out: set[tuple[str, str]] = set()  # (channel, user); never expires
        self._records: _ExpiringMap[tuple[ConversationKey, str], bytes] = _ExpiringMap()  # (conv, kind)
        self._seen: _ExpiringMap[tuple[str, str], None] = _ExpiringMap()  # (namespace, item)
        self._leases: _ExpiringMap[tuple[str, str], str] = _ExpiringMap()  # (namespace, item) -> holder
        self._links: _ExpiringMap[tuple[str, str], str] = _ExpiringMap()  # (namespace, item) -> value
        self._groups: dict[str, dict[str, float]] = {}  # group -> member -> until (epoch seconds)

    async def load(self, key: ConversationKey, message_id: str, records: Sequence[str] = ()) -> Snapshot:
        now = self._purge()
        check_record_kinds(records)
        found = {kind: kept for kind in records if (kept := self._records.get((key, kind), now)) is not None}
        return Snapshot(
            session=self._sessions.get(key, now),
            user=dict(self._users.get((key.channel, key.user), {})),
            outputs=self._processed.get((key.channel, key.user, message_id), now),
            records=found,
        )

    async def commit(self, key: ConversationKey, commit: Commit) -> bool:
        now = self._purge()
        processed_id = (key.channel, key.user, commit.message_id)
        check_record_kinds(commit.records)
        if self._processed.contains(processed_id, now):
            return False
        for kind, record in commit.records.items():
            if record is None:
                self._records.pop((key, kind))
            else:
                self._records.put((key, kind), bytes(record.value), now + record.ttl)
        if commit.session is None:
            self._sessions.pop(key)
        else:
            stored = dataclasses.replace(commit.session, values=dict(commit.session.values))  # as Redis would
            self._sessions.put(key, stored, now + stored.ttl)
        if commit.user_changes:
            attributes = self._users.setdefault((key.channel, key.user), {})
            for name, value in commit.user_changes.items():
                if value is None:
                    attributes.pop(name, None)
                else:
                    attributes[name] = value
            if not attributes:
                del self._users[(key.channel, key.user)]
        outputs = tuple(bytes(output) for output in commit.outputs)
        self._processed.put(processed_id, outputs, now + self.processed_ttl)
        return True

    async def user_attributes(self, channel: str, user: str) -> dict[str, str]:
        return dict(self._users.get((channel, user), {}))

    async def set_opted_out(self, channel: str, user: str, opted_out: bool) -> None:
        if opted_out:
            self._opted_out.add((channel, user))
        else:
            self._opted_out.discard((channel, user))

    async def opted_out(self, channel: str, user: str) -> bool:
        return (channel, user) in self._opted_out

    async def mark_seen(self, namespace: str, item: str, ttl: float) -> bool:
        now = self._purge()
        if self._seen.contains((namespace, item), now):
            return False
        self._seen.put((namespace, item), None, now + ttl)
        return True

    async def is_seen(self, namespace: str, item: str) -> bool:
        now = self._purge()
        return self._seen.contains((namespace, item), now)

    async def forget_seen(self, namespace: str, item: str) -> None:
        self._purge()
        self._seen.pop((namespace, item))

    async def lease(self, namespace: str, item: str, holder: str, ttl: float) -> bool:
        now = self._purge()
        current = self._leases.get((namespace, item), now)
        if current is not None and current != holder:
            return False
        self._leases.put((namespace, item), holder, now + ttl)
        return True

    async def release(self, namespace: str, item: str, holder: str) -> None:
        now = self._purge()
        if self._leases.get((namespace, item), now) == holder:
            self._leases.pop((namespace, item))

    async def put_link(self, namespace: str, item: str, value: str, ttl: float) -> None:
        now = self._purge()
        self._links.put((namespace, item), value, now + ttl)

    async def get_link(self, namespace: str, item: str) -> str | None:
        now = self._purge()
        return self._links.get((namespace, item), now)

    async def add_live_member(self, group: str, member: str, until: float) -> None:
        self._groups.setdefault(group, {})[member] = until

    async def remove_live_member(self, group: str, member: str) -> None:
        self._groups.get(group, {}).pop(member, None)

    async def count_live_members(self, group: str, now: float) -> int:
        members = self._groups.get(group, {})
        for member in [m for m, until in members.items() if until <= now]:
            del members[member]
        return len(members)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        """Nothing to release; the data stays, as a Redis store's data outlives its client."""

    def entry_count(self) -> int:
        """Entries held (sessions, users, processed records, markers): lets tests watch memory."""
        return (
            len(self._sessions)
            + len(self._users)
            + len(self._opted_out)
            + len(self._processed)
            + len(self._seen)
            + len(self._leases)
            + len(self._records)
            + len(self._links)
            + sum(len(members) for members in self._groups.values())
        )

    def _purge(self) -> float:
        """Drop every entry whose deadline has passed; returns the current time."""
        now = self._clock()
        self._sessions.purge(now)
        self._processed.purge(now)
        self._seen.purge(now)
        self._leases.purge(now)
        self._records.purge(now)
        self._links.purge(now)
        return now

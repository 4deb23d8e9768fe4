"""The in-memory schedule, for ``gateway run`` / ``gateway chat`` / ``gateway test`` with no Redis, and
for tests. Leases run on an injected clock, so simulated time moves them too. No method awaits, so each
call is atomic under asyncio."""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Collection, Sequence

from gateway.core.schedule.base import DueTimers, Schedule, Scheduled
from gateway.core.schema import ConversationKey

Clock = Callable[[], float]


_Key = tuple[int, str, str, str, str]  # (due, channel, chat, user, timer): sorts by due time, ties apart


def _key(entry: Scheduled) -> _Key:
    c = entry.conversation
    return (entry.due_ms, c.channel, c.chat, c.user, entry.timer)


class MemorySchedule(Schedule):
    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._entries: dict[int, list[_Key]] = {}  # per partition, sorted: due first
        self._leases: dict[int, tuple[str, float]] = {}  # partition → (holder, runs out at)

    async def change(
        self, partition: int, add: Sequence[Scheduled] = (), remove: Sequence[Scheduled] = ()
    ) -> None:
        entries = self._entries.setdefault(partition, [])
        for entry in map(_key, add):
            at = bisect.bisect_left(entries, entry)
            if at == len(entries) or entries[at] != entry:
                entries.insert(at, entry)
        for entry in map(_key, remove):
            at = bisect.bisect_left(entries, entry)
            if at < len(entries) and entries[at] == entry:
                del entries[at]
        if not entries:
            del self._entries[partition]

    async def due(self, partition: int, now_ms: int, limit: int) -> DueTimers:
        entries = self._entries.get(partition, [])
        found: list[Scheduled] = []
        for due_ms, channel, chat, user, timer in entries:
            if due_ms > now_ms or len(found) >= limit:
                break
            found.append(Scheduled(due_ms, ConversationKey(channel, chat, user), timer))
        rest = entries[len(found) : len(found) + 1]
        return DueTimers(tuple(found), rest[0][0] if rest else None)

    async def count(self, partition: int) -> int:
        return len(self._entries.get(partition, ()))

    async def hold(
        self, holder: str, partitions: int, ttl: float, *, claim: Collection[int] = (), release: bool = False
    ) -> frozenset[int]:
        now = self._clock()
        held: set[int] = set()
        for partition in range(partitions):
            current = self._leases.get(partition)
            mine = current is not None and current[0] == holder
            if release:
                if mine:
                    del self._leases[partition]
                continue
            free = current is None or current[1] <= now
            if partition in claim or free or (mine and current is not None and current[1] > now):
                self._leases[partition] = (holder, now + ttl)
                held.add(partition)
        return frozenset(held)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        """Nothing to release; the entries stay, as Redis's outlive its client."""

    def holders(self) -> dict[int, str]:
        """Who holds each partition now (for tests)."""
        now = self._clock()
        return {p: holder for p, (holder, until) in self._leases.items() if until > now}

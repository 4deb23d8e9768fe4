"""Broadcasts in memory (``gateway run`` without Redis, and tests); no method awaits, so each is atomic."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from gateway.core.store.broadcasts.base import (
    KEEP_FINISHED,
    Broadcast,
    Broadcasts,
    Progress,
    check_broadcast_ids,
)


class MemoryBroadcasts(Broadcasts):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._kept: dict[str, Broadcast] = {}
        self._claims: dict[str, tuple[str, float]] = {}  # id → (holder, until)
        self._pending: set[str] = set()
        self._expires: dict[str, float] = {}  # finished ones

    def _purge(self) -> float:
        now = self.clock()
        for broadcast_id in [b for b, at in self._expires.items() if at <= now]:
            del self._expires[broadcast_id]
            self._kept.pop(broadcast_id, None)
        return now

    async def create(self, broadcast: Broadcast) -> None:
        check_broadcast_ids([broadcast.id])
        self._purge()
        self._kept[broadcast.id] = broadcast
        self._pending.add(broadcast.id)

    async def get(self, broadcast_id: str) -> Broadcast | None:
        check_broadcast_ids([broadcast_id])
        self._purge()
        return self._kept.get(broadcast_id)

    async def pending(self) -> list[str]:
        return sorted(self._pending)

    def _holds(self, broadcast_id: str, holder: str) -> bool:
        claim = self._claims.get(broadcast_id)
        return claim is not None and claim[0] == holder

    async def claim(self, broadcast_id: str, holder: str, ttl: float) -> Broadcast | None:
        check_broadcast_ids([broadcast_id])
        now = self._purge()
        broadcast = self._kept.get(broadcast_id)
        if broadcast is None or broadcast.status != "running":
            self._pending.discard(broadcast_id)
            return None
        claim = self._claims.get(broadcast_id)
        if claim is not None and claim[0] != holder and claim[1] > now:
            return None
        self._claims[broadcast_id] = (holder, now + ttl)
        return broadcast

    async def checkpoint(self, broadcast_id: str, holder: str, progress: Progress, ttl: float) -> bool:
        now = self._purge()
        broadcast = self._kept.get(broadcast_id)
        if broadcast is None or not self._holds(broadcast_id, holder):
            return False
        self._kept[broadcast_id] = dataclasses.replace(broadcast, progress=progress)
        self._claims[broadcast_id] = (holder, now + ttl)
        return True

    async def finish(self, broadcast_id: str, holder: str, progress: Progress, at: float) -> bool:
        now = self._purge()
        broadcast = self._kept.get(broadcast_id)
        if broadcast is None or not self._holds(broadcast_id, holder):
            return False
        done = dataclasses.replace(progress, shard=0, cursor="")
        self._kept[broadcast_id] = dataclasses.replace(
            broadcast, status="done", progress=done, finished_at=at
        )
        del self._claims[broadcast_id]
        self._pending.discard(broadcast_id)
        self._expires[broadcast_id] = now + KEEP_FINISHED
        return True

    async def release(self, broadcast_id: str, holder: str) -> None:
        claim = self._claims.get(broadcast_id)
        if claim is not None and claim[0] == holder:
            del self._claims[broadcast_id]

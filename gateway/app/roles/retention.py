"""``GATEWAY_USER_RETENTION``: erase the users who have not written for that long, in the worker processes.

Every sweep interval (a tenth of the retention, between 1 s and 1 h) one process of the deployment — the
one holding the store's lease for it — walks each channel's index shards for users last seen before the
cut-off and erases them as ``gateway users erase`` would, each only if their index entry still says they
are idle (a user who writes meanwhile is kept). Cluster-safe: each call is on one shard or one user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable

from channels.registry import CHANNEL_USER_IDS
from gateway.app.roles.base import Role, Services
from gateway.app.userdata.service import UserDataService
from gateway.core.errors import Unavailable

log = logging.getLogger("gateway.retention")

LEASE_NAMESPACE = "user-retention"
PAGE = 200


def sweep_interval(retention: float) -> float:
    return min(max(retention / 10, 1.0), 3600.0)


class RetentionRole(Role):
    def __init__(
        self, services: Services, retention: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        settings = services.settings
        self.store = services.store
        self.index = services.users.index
        self.retention = retention
        self.interval = sweep_interval(retention)
        self.clock = clock
        self.holder = f"{settings.instance_id}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self.service = UserDataService(
            services.store,
            services.users,
            bus=services.bus,
            dedup_ttl=settings.dedup_ttl,
            clock=clock,
            schedule=services.schedule,
            partitions=settings.partitions,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            try:
                if await self.store.lease(LEASE_NAMESPACE, "sweep", self.holder, self.interval):
                    await self.sweep()
            except Unavailable as exc:
                log.warning("retention: sweep put off: %s", exc)
            except Exception:
                log.exception("retention: sweep failed")
            await asyncio.sleep(self.interval)

    async def sweep(self) -> int:
        """Erase every user idle past the retention; how many."""
        cutoff = self.clock() - self.retention
        erased = 0
        for channel in CHANNEL_USER_IDS:
            for shard in range(self.index.shards):
                while idle := await self.index.idle(channel, shard, cutoff, PAGE):
                    done = await self.service.erase_idle("retention", channel, idle, cutoff)
                    erased += len(done)
                    if not done:
                        break
        if erased:
            log.info("retention: erased %d user(s) last seen before %.0f", erased, cutoff)
        return erased

    async def stop_intake(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def describe(self) -> list[str]:
        return [
            f"user retention: {self.retention:g} s after the last message (sweep every {self.interval:g} s)"
        ]

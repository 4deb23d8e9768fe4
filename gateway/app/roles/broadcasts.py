"""Broadcasts run in the worker processes: each looks at the pending ones every second (or at once when
this process made one) and runs those it can claim, one runner per broadcast across the deployment.

A worker that stops gives its claims back, so another worker resumes at once; one that dies (kill -9)
leaves its claim to run out (``GATEWAY_BROADCAST_LEASE``), then another resumes from the last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Callable

from channels.ratelimit import BROADCAST_PACE
from gateway.app.roles.base import Role, Services
from gateway.core.errors import Unavailable
from gateway.core.settings import Settings
from worker.broadcast import BroadcastRunner

log = logging.getLogger("gateway.broadcast")

POLL_SECONDS = 1.0


def pace_of(settings: Settings) -> Callable[[str], float | None]:
    """Starts a second for a channel: ``GATEWAY_BROADCAST_RATE``, else the channel's own pace (none at
    all when ``GATEWAY_RATE_LIMITS`` is off)."""
    rate = settings.broadcast_rate
    if rate is not None:
        return lambda channel: rate
    if not settings.rate_limits:
        return lambda channel: None
    return lambda channel: BROADCAST_PACE.get(channel)


def runner_for(services: Services) -> BroadcastRunner:
    settings = services.settings
    return BroadcastRunner(
        services.bus,
        services.store,
        services.users.index,
        services.users.broadcasts,
        holder=f"{settings.instance_id}/{os.getpid()}/{uuid.uuid4().hex[:8]}",
        pace=pace_of(settings),
        claim_ttl=settings.broadcast_lease,
    )


class BroadcastRole(Role):
    def __init__(self, services: Services, *, poll: float = POLL_SECONDS) -> None:
        self.broadcasts = services.users.broadcasts
        self.runner = runner_for(services)
        self.poll = min(poll, services.settings.broadcast_lease / 3)
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Look at the pending broadcasts now (one was just made in this process)."""
        self._wake.set()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            try:
                pending = await self.broadcasts.pending()
            except Unavailable as exc:
                log.warning("broadcasts: cannot look at the pending ones: %s", exc)
                pending = []
            for broadcast_id in pending:
                if broadcast_id not in self._running:
                    task = asyncio.get_running_loop().create_task(self._run(broadcast_id))
                    self._running[broadcast_id] = task
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll):
                    await self._wake.wait()
            self._wake.clear()

    async def _run(self, broadcast_id: str) -> None:
        try:
            await self.runner.run(broadcast_id)
        except Unavailable as exc:  # the claim stays this runner's: the next look resumes it here
            log.warning("broadcast %s: paused, %s", broadcast_id, exc)
        except Exception:
            log.exception("broadcast %s: failed; trying again at the next look", broadcast_id)
        finally:
            self._running.pop(broadcast_id, None)

    async def stop_intake(self) -> None:
        """Stop looking and running; give the claims back so that another worker resumes at once."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        running = dict(self._running)
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        for broadcast_id in running:
            with contextlib.suppress(Exception):
                await self.runner.release(broadcast_id)
                log.info("broadcast %s: handed back; another worker resumes it", broadcast_id)

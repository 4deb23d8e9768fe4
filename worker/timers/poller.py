"""The timer poller of one worker process: it watches the schedule of the partitions it leases and
publishes a firing for each timer that falls due, on that timer's conversation partition.

Who polls a partition: the process that consumes it. The worker claims a partition's lease when it
handles a message of that partition (:meth:`TimerPoller.claim`), so the timers a turn schedules there are
scheduled by the process that polls them, and the poller hears of each new one at once
(:meth:`TimerPoller.scheduled`), so it may sleep until the next due time. A lease not renewed (its process
died) runs out and is taken by the next poller that renews (every :attr:`renew_every` seconds): a partition
with no traffic still gets a poller. A timer scheduled by another process (a message handled again on
another worker while its partition moved) is seen at the next renewal, which reads every held partition's
next due time again.

A timer is published when the clock has reached its due time, never before, then removed from the
schedule; a poller that dies in between leaves it there, and the next one publishes it again under the
same message id, which the worker's commit record absorbs. Between two due times the poller only renews:
one round trip every :attr:`renew_every` seconds (the leases, and per partition held its next due time
and its count, for the pending gauge).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from gateway.core.bus.base import Bus, Envelope, Topic
from gateway.core.errors import Unavailable
from gateway.core.metrics import Metrics
from gateway.core.schedule.base import Schedule
from worker.timers.pending import firing

log = logging.getLogger("gateway.timers")

_UNKNOWN = -1  # a partition whose next due time has not been read yet


class TimerPoller:
    def __init__(
        self,
        schedule: Schedule,
        bus: Bus,
        *,
        holder: str,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
        lease_ttl: float = 6.0,
        renew_every: float = 2.0,
        batch: int = 500,
        retry_max: float = 5.0,
    ) -> None:
        self.schedule = schedule
        self.bus = bus
        self.holder = holder
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.lease_ttl = lease_ttl
        self.renew_every = renew_every
        self.batch = batch
        self.retry_max = retry_max
        self.partitions = bus.partitions
        self.held: frozenset[int] = frozenset()
        self._next: dict[int, int | None] = {}  # held partition → its earliest due ms (None: empty)
        self._claims: set[int] = set()
        self._renew_at = 0.0  # time.monotonic() of the next renewal
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what the worker tells it ------------------------------------------------------------------

    def claim(self, partition: int) -> None:
        if partition not in self.held and partition not in self._claims:
            self._claims.add(partition)
            self._wake.set()

    def scheduled(self, partition: int, due_ms: int) -> None:
        known = self._next.get(partition, _UNKNOWN)
        if partition in self.held and known != _UNKNOWN and (known is None or due_ms < known):
            self._next[partition] = due_ms
            self._wake.set()

    def wake(self) -> None:
        """Look at the clock again now (simulated time moved)."""
        self._wake.set()

    # -- the steps, also driven one by one under simulated time ------------------------------------

    async def renew(self) -> None:
        """Renew the leases, take the free ones and the claimed ones; refresh the pending gauge. The next
        due time of every partition held is read again (a timer scheduled by another process, such as a
        message handled again elsewhere while a partition moved, is seen within one renewal)."""
        claims = set(self._claims)
        held = await self.schedule.hold(self.holder, self.partitions, self.lease_ttl, claim=claims)
        self._claims -= claims
        self._next.clear()
        gained = held - self.held
        if gained:
            log.info("timer poller now polls partitions %s", ", ".join(map(str, sorted(gained))))
        lost = self.held - held
        if lost:
            log.info("timer poller no longer polls partitions %s", ", ".join(map(str, sorted(lost))))
        self.held = held
        self._renew_at = time.monotonic() + self.renew_every
        counts = await asyncio.gather(*(self.schedule.count(p) for p in sorted(held)))
        self.metrics.timers_pending.set(sum(counts))

    async def next_due_ms(self) -> int | None:
        """The earliest due time over the held partitions (reading those not known yet)."""
        unknown = sorted(p for p in self.held if self._next.get(p, _UNKNOWN) == _UNKNOWN)
        heads = await asyncio.gather(*(self.schedule.due(p, -1, 1) for p in unknown))
        for partition, head in zip(unknown, heads, strict=True):
            self._next[partition] = head.next_due_ms
        known = [due for due in self._next.values() if due is not None]
        return min(known) if known else None

    async def fire_due(self, now_ms: int | None = None) -> int:
        """Publish every timer due by ``now_ms`` (default: the clock) in the held partitions; how many."""
        if now_ms is None:
            now_ms = math.floor(self.clock() * 1000)
        due = [
            partition
            for partition in sorted(self.held)
            if (known := self._next.get(partition, _UNKNOWN)) == _UNKNOWN
            or (known is not None and known <= now_ms)
        ]
        # the partitions side by side: their Redis calls share round trips, their publishes one batch
        return sum(await asyncio.gather(*(self._fire(partition, now_ms) for partition in due)))

    async def _fire(self, partition: int, now_ms: int) -> int:
        fired = 0
        while True:
            due = await self.schedule.due(partition, now_ms, self.batch)
            if due.timers:
                messages = [firing(t.conversation, t.timer, t.due_ms) for t in due.timers]
                await self.bus.publish(
                    Topic.INBOUND, [Envelope(m.to_json(), m.id, str(m.conversation)) for m in messages]
                )
                await self.schedule.change(partition, remove=due.timers)
                fired += len(due.timers)
            self._next[partition] = due.next_due_ms
            if len(due.timers) < self.batch:
                return fired

    # -- running on its own --------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="timer-poller")

    async def stop(self) -> None:
        """Stop polling and give the leases back, so that another process takes them at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self.schedule.hold(self.holder, self.partitions, self.lease_ttl, release=True)
        self.held = frozenset()
        self._next.clear()

    async def run(self) -> None:
        delay = 0.05
        while True:
            self._wake.clear()
            try:
                if self._claims or time.monotonic() >= self._renew_at:
                    await self.renew()
                await self.fire_due()
                sleep = await self._until_next()
                delay = 0.05
            except Unavailable as exc:
                log.info("timer poller: %r; retrying in %.2f s", exc, delay)
                sleep, delay = delay, min(delay * 2, self.retry_max)
            except Exception:
                log.exception("timer poller failed; retrying in %.2f s", delay)
                sleep, delay = delay, min(delay * 2, self.retry_max)
            if sleep > 0 and not self._wake.is_set():
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
                # that arrives as the event is set, and the loop would outlive stop()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(sleep):
                        await self._wake.wait()

    async def _until_next(self) -> float:
        """Seconds until the next due time or the next renewal, whichever comes first."""
        sleep = self._renew_at - time.monotonic()
        due = await self.next_due_ms()
        if due is not None:
            sleep = min(sleep, due / 1000 - self.clock())
        return max(sleep, 0.0)

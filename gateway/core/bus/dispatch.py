"""The consume semantics of :mod:`gateway.core.bus.base`, written once for every bus implementation.

An implementation turns what its broker hands over into :class:`RawDelivery` objects and
:meth:`Dispatcher.submit` s them in arrival order; the dispatcher decides when each handler call starts,
what its outcome means (ack, retry in place, dead-letter) and what to give back when the subscription
stops or yields one source (partition) during a rebalance.

Ordering: deliveries are grouped in *lanes*. On an ordered topic a lane is one key of one source, so the
calls for one key run one after another in arrival order while different keys run side by side (at most
``concurrency`` handler calls at once). On an unordered topic every delivery is its own lane. A lane
exists only while it has deliveries pending, so the lane map never outgrows the work in hand.

``Delivery.attempt`` is 1 plus the handler calls of this delivery that failed; calls that raised
:class:`~gateway.core.bus.base.Unavailable` do not count, so ``attempt == max_attempts`` is the last try.
A delivery given back and delivered again starts from 1.

A delivery waiting because a service was away (``Unavailable``) retries on its own backoff (at most
:attr:`Backoff.maximum`), and is woken at once when any other call of this dispatcher succeeds: the service
is back, so the work held up by the outage resumes together instead of one backoff step later.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from gateway.core import timeline
from gateway.core.bus.base import Delivery, Envelope, Handler, RunHandler, RunStopped, Topic
from gateway.core.errors import Rejected, Unavailable

log = logging.getLogger(__name__)

MAX_RUN = 32  # deliveries of one key handed to a RunHandler in one call


def _never() -> bool:
    return False


@dataclass(slots=True, eq=False)
class RawDelivery:
    """A message as a bus implementation received it, before any handler saw it."""

    envelope: Envelope
    source: int  # the partition it came from (0 for an unordered topic)
    redelivered: bool
    ack: Callable[[], Awaitable[None]]  # must not raise when the channel it came on is gone
    stale: Callable[[], bool] = _never  # True once the broker will deliver it again anyway
    token: object = None  # the implementation's own handle on the message


def require_key(topic: Topic, envelope: Envelope) -> None:
    """Refuse an envelope an ordered topic could not place (every implementation checks before sending)."""
    if topic.ordered and not envelope.key:
        raise ValueError(f"an envelope on the ordered topic {topic} needs a key ({envelope.message_id!r})")


DeadLetterSink = Callable[[RawDelivery, str, int], Awaitable[None]]
"""Records ``(delivery, reason, attempts)`` as a dead letter, then acknowledges the original."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential delays between in-place retries."""

    initial: float = 0.05
    maximum: float = 1.0

    def delay(self, retry: int) -> float:
        """Delay before retry number ``retry`` (1-based)."""
        return min(self.initial * 2.0 ** min(retry - 1, 30), self.maximum)


@dataclass(slots=True, eq=False)
class _Entry:
    raw: RawDelivery
    seq: int
    failures: int = 0  # handler calls that raised something other than Unavailable
    pauses: int = 0  # consecutive waits on Unavailable (or on a failing dead-letter sink)
    dead: tuple[str, int] | None = None  # decided to dead-letter: (reason, attempts)


@dataclass(slots=True, eq=False)
class _Lane:
    key: tuple[int, str]
    entries: deque[_Entry] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def source(self) -> int:
        return self.key[0]


class Dispatcher:
    """Runs one subscription's handler over the deliveries submitted to it."""

    def __init__(
        self,
        topic: Topic,
        handler: Handler,
        *,
        concurrency: int,
        max_attempts: int,
        dead_letter: DeadLetterSink,
        backoff: Backoff | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.topic = topic
        self._handler = handler
        self._run_handler = handler.run if isinstance(handler, RunHandler) and topic.ordered else None
        self._concurrency = concurrency
        self._max_attempts = max(1, max_attempts)
        self._dead_letter = dead_letter
        self._backoff = backoff or Backoff()
        self._lanes: dict[tuple[int, str], _Lane] = {}
        self._seq = itertools.count()
        self._running = 0
        self._slot_waiters: deque[asyncio.Future[bool]] = deque()
        self._resuming: deque[asyncio.Future[bool]] = deque()  # handlers back from aside: served first
        self._held: set[int] = set()
        self._waiting_for_service: set[_Lane] = set()  # paused on Unavailable: woken by any success
        self._stopping = False
        self._stopped = False
        # Stage names for gateway.core.timeline (benchmarks): made once, not per delivery.
        self._arrived, self._started, self._acked = (f"{topic}.{s}" for s in ("arrived", "started", "acked"))

    # -- intake -------------------------------------------------------------------------------

    def submit(self, raw: RawDelivery) -> None:
        """Accept one delivery; call in arrival order. Never blocks."""
        if self._stopped:
            log.debug("delivery %s arrived after stop; the broker keeps it", raw.envelope.message_id)
            return
        timeline.mark(self._arrived, raw.envelope.message_id)
        seq = next(self._seq)
        key = (raw.source, raw.envelope.key if self.topic.ordered else f"#{seq}")
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key)
        lane.entries.append(_Entry(raw, seq))
        self._start(lane)

    @property
    def pending(self) -> int:
        """Deliveries accepted and not finished yet."""
        return sum(len(lane.entries) for lane in self._lanes.values())

    @property
    def lane_count(self) -> int:
        return len(self._lanes)

    # -- giving work back -----------------------------------------------------------------------

    async def stop(self, timeout: float) -> list[RawDelivery]:
        """Start nothing new, wait up to ``timeout`` for running calls, cancel the rest.

        Returns every delivery not finished (never started, waiting to retry, or cancelled), in
        arrival order, for the implementation to give back to its broker.
        """
        self._stopping = True
        lanes = list(self._lanes.values())
        self._interrupt(lanes)
        await self._wait_lanes(lanes, timeout, cancel=True)
        self._stopped = True
        leftovers = self._take(list(self._lanes.values()))  # including lanes that arrived while draining
        self._lanes.clear()
        return leftovers

    async def release(self, source: int, timeout: float) -> list[RawDelivery] | None:
        """Yield one source: stop starting its calls and wait for its running ones.

        Returns its unfinished deliveries in arrival order; the source stays held (its later submissions
        are kept, never run) until :meth:`resume`. Returns ``None`` and resumes the source if its
        running calls did not finish within ``timeout``.
        """
        self._held.add(source)
        lanes = [lane for lane in self._lanes.values() if lane.source == source]
        self._interrupt(lanes)
        if not await self._wait_lanes(lanes, timeout, cancel=False):
            self.resume(source)
            return None
        lanes = [lane for lane in self._lanes.values() if lane.source == source]
        for lane in lanes:
            del self._lanes[lane.key]
        return self._take(lanes)

    def resume(self, source: int) -> None:
        """Run the deliveries of ``source`` again (after :meth:`release`)."""
        self._held.discard(source)
        for lane in list(self._lanes.values()):
            if lane.source == source:
                self._start(lane)

    # -- lanes -----------------------------------------------------------------------------------

    def _is_held(self, source: int) -> bool:
        return self._stopping or source in self._held

    def _start(self, lane: _Lane) -> None:
        if lane.task is None and lane.entries and not self._is_held(lane.source):
            lane.task = asyncio.create_task(self._drain(lane), name=f"bus-lane-{self.topic}-{lane.key}")

    def _interrupt(self, lanes: list[_Lane]) -> None:
        for lane in lanes:
            lane.wake.set()
        waiters, self._slot_waiters = self._slot_waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(False)  # look again: the lane may be held now

    async def _wait_lanes(self, lanes: list[_Lane], timeout: float, *, cancel: bool) -> bool:
        tasks = [lane.task for lane in lanes if lane.task is not None]
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=max(timeout, 0.0))
        if not pending:
            return True
        if cancel:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        return False

    @staticmethod
    def _take(lanes: list[_Lane]) -> list[RawDelivery]:
        entries = sorted((e for lane in lanes for e in lane.entries), key=lambda e: e.seq)
        for lane in lanes:
            lane.entries.clear()
        return [entry.raw for entry in entries]

    async def _drain(self, lane: _Lane) -> None:
        try:
            while lane.entries:
                entry = lane.entries[0]
                if entry.raw.stale():
                    lane.entries.popleft()  # the broker hands it out again; running it now would repeat it
                    continue
                if not await self._acquire_slot(lane):
                    return
                try:
                    finished, delay = await self._step(lane)
                finally:
                    self._release_slot()
                for _ in range(finished):
                    lane.entries.popleft()
                if delay is None or not lane.entries:
                    continue
                if not await self._pause(lane, delay, wake_on_success=lane.entries[0].pauses > 0):
                    return
        finally:
            lane.task = None
            if not lane.entries and self._lanes.get(lane.key) is lane:
                del self._lanes[lane.key]

    async def _acquire_slot(self, lane: _Lane) -> bool:
        """Wait for one of the ``concurrency`` slots, first come first served; False if held meanwhile."""
        while True:
            if self._is_held(lane.source):
                return False
            if self._running < self._concurrency:
                self._running += 1
                return True
            waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                granted = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.result():
                    self._release_slot()
                raise
            if granted:
                if not self._is_held(lane.source):
                    return True
                self._release_slot()

    def _release_slot(self) -> None:
        """Hand the slot straight to the longest waiter (handlers back from aside first), or free it."""
        while self._resuming:
            waiter = self._resuming.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self._running -= 1

    @contextlib.asynccontextmanager
    async def _aside(self) -> AsyncIterator[None]:
        """``Delivery.aside``: the running handler's slot goes to the next waiter while it waits outside."""
        self._release_slot()
        try:
            yield
        except BaseException:
            self._running += 1  # the slot _drain releases when the call ends (one over the limit, briefly)
            raise
        await self._reclaim_slot()

    async def _reclaim_slot(self) -> None:
        """A slot for a handler already running, before any delivery not started yet (work in hand finishes
        first), whatever is held or stopping."""
        while self._running >= self._concurrency:
            waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self._resuming.append(waiter)
            try:
                granted = await waiter
            except asyncio.CancelledError:
                if not (waiter.done() and not waiter.cancelled() and waiter.result()):
                    self._running += 1  # as above: _drain releases one when the cancelled call ends
                raise
            if granted:
                return
        self._running += 1

    async def _pause(self, lane: _Lane, delay: float, *, wake_on_success: bool) -> bool:
        """Sleep before a retry (woken early by a success elsewhere when ``wake_on_success``); False if the
        lane's source got held meanwhile."""
        lane.wake.clear()
        if not self._is_held(lane.source):
            if wake_on_success:
                self._waiting_for_service.add(lane)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.wake.wait(), timeout=delay)
            finally:
                self._waiting_for_service.discard(lane)
        return not self._is_held(lane.source)

    def _service_answered(self) -> None:
        """A call succeeded: whatever waited for a service to come back may go now."""
        waiting, self._waiting_for_service = self._waiting_for_service, set()
        for lane in waiting:
            lane.wake.set()

    # -- one handler call and its outcome ----------------------------------------------------------

    async def _step(self, lane: _Lane) -> tuple[int, float | None]:
        """Run the head of ``lane`` (with the deliveries waiting behind it, for a run handler): how many
        entries are finished, and the delay before the head is tried again (None: no wait)."""
        run = self._run_of(lane)
        if len(run) > 1:
            return await self._attempt_run(run)
        delay = await self._attempt(run[0])
        return (1 if delay is None else 0), delay

    def _run_of(self, lane: _Lane) -> list[_Entry]:
        """The head, and for a run handler the entries right behind it that can go with it."""
        head = lane.entries[0]
        if self._run_handler is None or head.dead is not None:
            return [head]
        run: list[_Entry] = []
        for entry in lane.entries:
            if len(run) == MAX_RUN or entry.dead is not None or entry.raw.stale():
                break
            run.append(entry)
        return run

    async def _attempt(self, entry: _Entry) -> float | None:
        """Run the next step of ``entry``; None when it is finished, else the delay before the next."""
        if entry.dead is None:
            delay = await self._call(entry)
            if entry.dead is None:
                return delay
        return await self._bury(entry)

    async def _attempt_run(self, run: list[_Entry]) -> tuple[int, float | None]:
        """One call of the run handler; the entries it finished are acknowledged, and the one it stopped
        at (if any) gets the outcome a handler call on it alone would have had."""
        assert self._run_handler is not None
        error: Exception | None
        try:
            await self._run_handler([self._delivery(entry) for entry in run])
        except RunStopped as stop:
            finished, error = min(max(stop.finished, 0), len(run)), stop.error
        except Exception as exc:  # a run handler should say where it stopped; if not, blame the first
            finished, error = 0, exc
        else:
            finished, error = len(run), None
        for entry in run[:finished]:
            await self._finished(entry)
        if error is None or finished == len(run):
            return finished, None
        stopped = run[finished]
        delay = self._outcome(stopped, error)
        if stopped.dead is not None:
            delay = await self._bury(stopped)
            finished += delay is None
        return finished, delay

    def _delivery(self, entry: _Entry) -> Delivery:
        raw = entry.raw
        timeline.mark(self._started, raw.envelope.message_id)
        return Delivery(raw.envelope, self.topic, entry.failures + 1, raw.redelivered, self._aside)

    async def _call(self, entry: _Entry) -> float | None:
        delivery = self._delivery(entry)
        try:
            await self._handler(delivery)
        except Exception as exc:
            return self._outcome(entry, exc)
        await self._finished(entry)
        return None

    def _outcome(self, entry: _Entry, exc: Exception) -> float | None:
        """What a handler's exception means for ``entry``: the delay before it is tried again, or None
        with ``entry.dead`` set."""
        message_id = entry.raw.envelope.message_id
        if isinstance(exc, Rejected):
            entry.dead = (str(exc) or "Rejected", entry.failures + 1)
            return None
        if isinstance(exc, Unavailable):
            entry.pauses += 1
            level = logging.INFO if entry.pauses == 1 else logging.DEBUG
            log.log(level, "handler for %s: %r; retrying until it is back", message_id, exc)
            return self._backoff.delay(entry.pauses)
        entry.failures += 1
        entry.pauses = 0
        if entry.failures >= self._max_attempts:
            entry.dead = (repr(exc), entry.failures)
            return None
        log.warning(
            "handler for %s failed (attempt %d of %d): %r",
            message_id,
            entry.failures,
            self._max_attempts,
            exc,
        )
        return self._backoff.delay(entry.failures)

    async def _finished(self, entry: _Entry) -> None:
        """The handler is done with ``entry``: acknowledge it."""
        if self._waiting_for_service:
            self._service_answered()
        raw = entry.raw
        try:
            await raw.ack()
        except Exception:  # the broker delivers it again; idempotency above us absorbs the repeat
            log.warning("ack of %s failed", raw.envelope.message_id, exc_info=True)
        timeline.mark(self._acked, raw.envelope.message_id)

    async def _bury(self, entry: _Entry) -> float | None:
        assert entry.dead is not None
        reason, attempts = entry.dead
        if entry.raw.stale():
            return None  # it comes back on its own; dead-lettering it now would record it twice
        try:
            await self._dead_letter(entry.raw, reason, attempts)
        except Exception as exc:
            entry.pauses += 1
            log.warning("dead-lettering %s failed: %r; retrying", entry.raw.envelope.message_id, exc)
            return self._backoff.delay(entry.pauses)
        log.error("dead-lettered %s on %s: %s", entry.raw.envelope.message_id, self.topic, reason)
        return None

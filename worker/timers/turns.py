"""The story worker's side of timers: run a message or a timer's firing, commit the pending timers with
the turn, and apply the turn's schedule changes after the commit.

A firing runs only when the conversation's committed pending timers still hold its timer: a user message
handled before it (it is one more message of the conversation, in order) has cancelled it in the same
commit that handled the message, so a timer cancelled while its firing was already on its way never fires.

The schedule lives in another Redis Cluster slot than the conversation, so the turn cannot change it in
its commit script. The change is recorded with the turn's outputs instead (tag ``S``) and applied after
the commit, like publishing the replies; a message handled again after a crash finds its commit and
applies the recorded change again, which changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.core.bus.base import partition_of
from gateway.core.metrics import Metrics
from gateway.core.schedule.base import Schedule, Scheduled
from gateway.core.schema import ConversationKey, Inbound
from gateway.core.store.base import Record, Snapshot
from worker.engine import Engine, Turn
from worker.engine.calls import HttpAnswer
from worker.timers.pending import KIND, PendingTimer, PendingTimers
from worker.timers.plan import TimerPlan, plan_turn, record_ttl

log = logging.getLogger("gateway.timers")

SCHEDULE_TAG = b"S"  # a recorded output that is a schedule change, not a message to publish
MAX_EARLY_WAIT = 5.0  # seconds a firing may wait for this worker's clock to reach its due time


class PollerHooks(Protocol):
    """What the worker tells the poller of its process (:class:`~worker.timers.poller.TimerPoller`)."""

    def claim(self, partition: int) -> None:
        """This process consumes ``partition`` now: poll its schedule."""

    def scheduled(self, partition: int, due_ms: int) -> None:
        """A timer was added to ``partition``'s schedule: wake up earlier if it is due sooner."""


@dataclass(frozen=True, slots=True)
class TimerState:
    """What a turn starts from: the conversation's pending timers, and the one firing (None: a message)."""

    before: PendingTimers
    fired: PendingTimer | None


@dataclass(frozen=True, slots=True)
class TimedTurn:
    turn: Turn
    records: dict[str, Record | None]  # for the commit: the timers record written, deleted, or untouched
    outputs: list[bytes]  # the schedule change, recorded beside the turn's replies and emails
    plan: TimerPlan
    fired: PendingTimer | None


class TimerTurns:
    records = (KIND,)

    def __init__(
        self,
        schedule: Schedule,
        partitions: int,
        *,
        metrics: Metrics | None = None,
        poller: PollerHooks | None = None,
    ) -> None:
        self.schedule = schedule
        self.partitions = partitions
        self.metrics = metrics or Metrics()
        self.poller = poller

    def partition(self, key: ConversationKey) -> int:
        return partition_of(str(key), self.partitions)

    def consumed(self, key: ConversationKey) -> None:
        """A message of ``key`` reached this process: its partition is consumed here."""
        if self.poller is not None:
            self.poller.claim(self.partition(key))

    async def wait_until_due(self, message: Inbound, clock: Callable[[], float]) -> None:
        """A firing is published when the poller's clock reaches its due time; if this worker's clock is
        behind, wait for it (a little at most), so that the turn is never early by this clock either."""
        if message.timer is not None:
            early = message.sent_at - clock()
            if early > 0:
                await asyncio.sleep(min(early, MAX_EARLY_WAIT))

    def start(self, snapshot: Snapshot, message: Inbound) -> TimerState | None:
        """What the turn of ``message`` starts from; None for a firing whose timer is no longer pending
        (cancelled, fired already, or its conversation's record gone): it is dropped, nothing to commit."""
        before = PendingTimers.decode(snapshot.records.get(KIND), message.conversation)
        if message.timer is None:
            return TimerState(before, None)
        fired = before.find(message.timer)
        return TimerState(before, fired) if fired is not None else None

    def state_of(self, snapshot: Snapshot, message: Inbound) -> TimerState:
        """What a turn that is not a firing of a story timer starts from (a desk's message)."""
        return TimerState(PendingTimers.decode(snapshot.records.get(KIND), message.conversation), None)

    def runner(
        self, engine: Engine, snapshot: Snapshot, message: Inbound, state: TimerState, now: float
    ) -> Callable[[Sequence[HttpAnswer]], Turn | None]:
        """The engine call of the turn, given the answers of its http calls so far: the message handled,
        or the fired timer's target entered (None when that target is gone)."""
        fired = state.fired
        if fired is None:
            return lambda answers: engine.handle(snapshot.session, snapshot.user, message, now, answers)
        routed = message.model_copy(update={"meta": dict(state.before.meta)})  # where the replies go
        target = fired.target
        return lambda answers: engine.fire(snapshot.session, snapshot.user, routed, target, now, answers)

    def finish(
        self,
        engine: Engine,
        snapshot: Snapshot,
        message: Inbound,
        state: TimerState,
        turn: Turn | None,
        now: float,
    ) -> TimedTurn:
        """The finished turn with what it does to the timers: the record to commit, the schedule change."""
        fired = state.fired
        plan = plan_turn(state.before, message, turn, engine.stories, now, fired)
        if turn is None:
            assert fired is not None
            gone = f"{fired.target.story}.{fired.target.step or '(entry)'}"
            log.warning(
                "timer %s of %s dropped: its target %s no longer exists", fired.id, message.conversation, gone
            )
            turn = Turn(snapshot.session, {}, [], [], "timer", (f"timer target {gone} is gone",))
        records: dict[str, Record | None] = {}
        if plan.changed:
            pending = plan.pending
            records[KIND] = Record(pending.encode(), record_ttl(pending, now)) if pending.timers else None
        removed = [timer for timer, _ in plan.cancelled if timer != fired]
        outputs = [encode_change(plan.added, removed)] if plan.added or removed else []
        return TimedTurn(turn, records, outputs, plan, fired)

    def committed(self, timed: TimedTurn, message: Inbound, now: float) -> None:
        """Count what a committed turn did to the timers (once: never for a replay)."""
        if timed.fired is not None and not any(t == timed.fired for t, _ in timed.plan.cancelled):
            self.metrics.timers_fired.labels(timed.fired.kind).inc()
            self.metrics.timer_lateness.observe(max(0.0, now - message.sent_at))
        for _, reason in timed.plan.cancelled:
            self.metrics.timers_cancelled.labels(reason).inc()

    async def apply(self, message: Inbound, recorded: Sequence[bytes]) -> None:
        """Apply the schedule change recorded with a committed turn (again, on a replay)."""
        key = message.conversation
        for item in recorded:
            if item[:1] != SCHEDULE_TAG:
                continue
            add, remove = decode_change(item, key)
            partition = self.partition(key)
            await self.schedule.change(partition, add, remove)
            if add and self.poller is not None:
                self.poller.scheduled(partition, min(entry.due_ms for entry in add))


def encode_change(add: Sequence[PendingTimer], remove: Sequence[PendingTimer]) -> bytes:
    """``S[[[due ms, id], ...], [[due ms, id], ...]]``: what to add to and remove from the schedule."""
    body = [[[t.due_ms, t.id] for t in add], [[t.due_ms, t.id] for t in remove]]
    return SCHEDULE_TAG + json.dumps(body, separators=(",", ":")).encode()


def decode_change(item: bytes, key: ConversationKey) -> tuple[list[Scheduled], list[Scheduled]]:
    add, remove = json.loads(item[1:])
    return (
        [Scheduled(due, key, timer) for due, timer in add],
        [Scheduled(due, key, timer) for due, timer in remove],
    )

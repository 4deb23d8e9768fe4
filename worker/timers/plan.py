"""What one turn does to a conversation's pending timers (STORIES.md, "Time: step timeouts and
follow-ups"), as a pure function the worker commits.

- A message from the user cancels the pending timeout and every follow-up not kept on reply; a story
  started by a trigger, the fallback or a broadcast cancels every timer of the session it replaces.
- After a turn that ran (a message, or a timer whose target still exists), the step waiting now gets its
  timeout, counted from now; it replaces any older one (that step no longer waits, or waits afresh).
- Each follow-up the turn ran is set ``after`` from now; beyond :data:`MAX_FOLLOW_UPS` pending, the oldest
  follow-up goes. So a conversation has at most ten follow-ups and one timeout pending.
- The record lives until the last timer is due, plus :data:`GRACE`: a timer that fires late (every worker
  down for a while) still finds it; one later than that is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.core.schema import Inbound
from worker.engine import Stories, Turn
from worker.engine.model import TimerTarget
from worker.timers.pending import PendingTimer, PendingTimers, timer_id

MAX_FOLLOW_UPS = 10
GRACE = 86400.0

# Why a timer left the pending ones without firing: the gateway_timers_cancelled reasons.
REPLY, NEW_STORY, REPLACED, TARGET_GONE = "reply", "new_story", "replaced", "target_gone"


@dataclass(frozen=True, slots=True)
class TimerPlan:
    pending: PendingTimers  # after the turn
    added: tuple[PendingTimer, ...]
    cancelled: tuple[tuple[PendingTimer, str], ...]  # with the reason
    changed: bool  # the record must be written (or deleted)


def plan_turn(
    before: PendingTimers,
    message: Inbound,
    turn: Turn | None,
    stories: Stories,
    now: float,
    fired: PendingTimer | None = None,
) -> TimerPlan:
    """The pending timers after ``turn`` handled ``message`` (a firing of ``fired``, when it is one);
    ``turn`` None: the fired timer's target no longer exists, so nothing ran."""
    quiet = not before.timers and turn is not None and not turn.follow_ups
    if quiet and turn is not None and _waiting_timeout(turn, stories) is None:
        return TimerPlan(before, (), (), False)  # most messages: no timer before, none after
    timers = [timer for timer in before.timers if timer != fired]
    cancelled: list[tuple[PendingTimer, str]] = []
    if fired is not None and turn is None:
        cancelled.append((fired, TARGET_GONE))

    def cancel(reason: str, which: list[PendingTimer]) -> None:
        for timer in which:
            timers.remove(timer)
            cancelled.append((timer, reason))

    if turn is not None and turn.route in ("trigger", "fallback", "broadcast"):  # a new session
        cancel(NEW_STORY, list(timers))
    elif turn is not None and message.timer is None and message.kind == "message":  # the user wrote
        cancel(REPLY, [t for t in timers if t.kind == "timeout" or not t.keep_on_reply])
    added: list[PendingTimer] = []
    if turn is not None:
        cancel(REPLACED, [t for t in timers if t.kind == "timeout"])
        for follow_up in turn.follow_ups:
            timer = PendingTimer(
                timer_id(message.id, len(added)),
                due_ms(now, follow_up.after.seconds),
                "follow_up",
                follow_up.target,
                follow_up.keep_on_reply,
            )
            added.append(timer)
            timers.append(timer)
        timeout = _waiting_timeout(turn, stories)
        if timeout is not None:
            after, target = timeout
            timer = PendingTimer(timer_id(message.id, len(added)), due_ms(now, after), "timeout", target)
            added.append(timer)
            timers.append(timer)
        follow_ups = [t for t in timers if t.kind == "follow_up"]
        cancel(REPLACED, follow_ups[: max(0, len(follow_ups) - MAX_FOLLOW_UPS)])
    meta = before.meta if message.timer is not None else message.meta
    pending = PendingTimers(tuple(timers), meta if timers else {})
    changed = pending.timers != before.timers or (bool(timers) and dict(meta) != dict(before.meta))
    added = [timer for timer in added if timer in timers]  # an eleventh follow-up may replace its own
    return TimerPlan(pending, tuple(added), tuple(cancelled), changed)


def _waiting_timeout(turn: Turn, stories: Stories) -> tuple[float, TimerTarget] | None:
    session = turn.session
    if session is None or session.story is None or session.step is None:
        return None
    story = stories.stories.get(session.story)
    step = story.steps.get(session.step) if story is not None else None
    if step is None or step.timeout is None:
        return None
    return step.timeout.after.seconds, step.timeout.target


def due_ms(now: float, after: float) -> int:
    """Rounded up to the millisecond: a timer is never early."""
    return math.ceil(round((now + after) * 1000, 3))


def record_ttl(pending: PendingTimers, now: float) -> float:
    """Until the last pending timer is due, plus :data:`GRACE`."""
    last = max(timer.due_ms for timer in pending.timers) / 1000
    return max(last - now, 0.0) + GRACE

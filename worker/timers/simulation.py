"""Simulated time for ``gateway test`` and ``gateway chat``: time jumps ahead, and every timer due on the way
fires at its own due time, in order, each turn finished before the clock moves on (so a timer set by a
timer that fired during the jump fires too, if it falls due before the end)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from worker.timers.poller import TimerPoller


class SettableClock(Protocol):
    def __call__(self) -> float: ...

    def set_to(self, now: float) -> None:
        """Move the clock to ``now`` (never backwards)."""


async def pass_time(
    poller: TimerPoller, clock: SettableClock, until: float, settle: Callable[[], Awaitable[None]]
) -> int:
    """Move ``clock`` to ``until``, firing what falls due on the way; ``settle`` waits until the fired
    timers' turns are handled (the embedded bus's ``join``). Returns how many timers fired."""
    fired = 0
    while True:
        await poller.renew()  # leases run on the same clock: a jump can outlast them
        due_ms = await poller.next_due_ms()
        if due_ms is None or due_ms / 1000 > until:
            break
        clock.set_to(max(clock(), due_ms / 1000))
        fired += await poller.fire_due(max(due_ms, int(clock() * 1000)))
        await settle()
    clock.set_to(max(clock(), until))
    return fired

"""The timer schedule: which timers fall due when, per partition, and which process polls which partition.

A conversation's pending timers are committed with its turn (a conversation record, see
:mod:`worker.timers`); the schedule is the index a poller reads to learn *when* to fire them. It is kept
per bus partition, under a key of its own (a hash tag per partition), so on a Redis Cluster it lives in
another slot than the conversation: a turn's changes to it are applied after the commit, as one of the
turn's outputs, and applying them again (a message handled again after a crash) changes nothing.

The schedule is not the authority on what is pending: an entry whose timer was cancelled, or whose
conversation record is gone, is dropped by the worker when it falls due. Every entry leaves the schedule
once the poller has published its firing (:meth:`Schedule.due` then :meth:`Schedule.change`), so nothing
stays past its due time.

Who polls: each partition is leased to one process at a time (:meth:`Schedule.hold`). A process claims a
partition when it handles that partition's messages (it is the partition's consumer, so the timers it
schedules there wake its own poller), keeps what it holds by renewing, and takes any lease that ran out
(a partition whose process died). While a lease moves, two processes may publish one timer's firing; it
has a deterministic id, so the worker's commit record absorbs the second copy.

Two implementations sit beside this module: :mod:`~gateway.core.schedule.redis` and
:mod:`~gateway.core.schedule.memory`; one contract suite (``tests/core/schedule/test_contract.py``) runs
against both. Times are integer milliseconds since the epoch: a timer is stored rounded up and fires when
the clock has reached it, so it is never early.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from gateway.core.schema import ConversationKey


@dataclass(frozen=True, slots=True)
class Scheduled:
    """One timer of one conversation, due at ``due_ms`` (milliseconds since the epoch)."""

    due_ms: int
    conversation: ConversationKey
    timer: str  # the timer's id within its conversation: letters, digits, '_' and '-'


@dataclass(frozen=True, slots=True)
class DueTimers:
    """What :meth:`Schedule.due` found: the timers due, earliest first, and when the next one is due."""

    timers: tuple[Scheduled, ...]
    next_due_ms: int | None  # the earliest due time of the entries not returned; None when there are none


class Schedule(ABC):
    @abstractmethod
    async def change(
        self, partition: int, add: Sequence[Scheduled] = (), remove: Sequence[Scheduled] = ()
    ) -> None:
        """Add and remove entries of one partition in one round trip; doing it again changes nothing."""

    @abstractmethod
    async def due(self, partition: int, now_ms: int, limit: int) -> DueTimers:
        """At most ``limit`` entries due at ``now_ms``, earliest first, left in place (the caller removes
        them with :meth:`change` once their firings are published)."""

    @abstractmethod
    async def count(self, partition: int) -> int:
        """Entries of the partition now (for the ``gateway_timers_pending`` gauge)."""

    @abstractmethod
    async def hold(
        self, holder: str, partitions: int, ttl: float, *, claim: Collection[int] = (), release: bool = False
    ) -> frozenset[int]:
        """Renew ``holder``'s partition leases for ``ttl`` seconds and take the free ones (never held, or
        run out); take the ``claim`` ones from whoever holds them. Returns the partitions ``holder`` holds.

        ``release=True`` gives back every lease of ``holder`` instead (a clean stop) and returns nothing.
        Leases are timed by the schedule's own clock (Redis's, for Redis), so holders on machines whose
        clocks differ agree on when one runs out.
        """

    @abstractmethod
    async def ping(self) -> bool: ...

    @abstractmethod
    async def close(self) -> None: ...

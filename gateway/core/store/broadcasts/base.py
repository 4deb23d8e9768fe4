"""A broadcast as the store keeps it: what to start for whom, how far it got, and who runs it now.

A broadcast is run by one runner at a time: :meth:`Broadcasts.claim` gives it to a runner for ``ttl``
seconds (taking it over from a runner whose claim ran out, which died), and each
:meth:`Broadcasts.checkpoint` records the progress and extends the claim, atomically, and only while
the claim is still the runner's: a runner that lost its claim (it stalled past ``ttl`` and another took
over) learns it at its next checkpoint and stops. Progress is recorded after the starts it counts were
published, so a runner that resumes publishes again at most what came after the last checkpoint — which
the worker's commit record drops (the start's id is deterministic).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field

BROADCAST_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
KEEP_FINISHED = 30 * 86400.0  # seconds a finished broadcast's progress stays readable


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a broadcast got: the shard of the user index it walks and the last user done in it."""

    shard: int = 0
    cursor: str = ""  # the last user done in ``shard`` ("" for none yet)
    walked: int = 0  # users looked at, matching or not
    matched: int = 0  # users whose attributes matched the condition
    started: int = 0  # of them, those the story was started for (published)
    failed: int = 0  # of them, those it could not be started for (no direct chat, opted out)


@dataclass(frozen=True, slots=True)
class Broadcast:
    id: str
    story: str
    channel: str
    where: str  # the condition over @user.*; "" for every user
    dry_run: bool = False  # count the matching users, start nothing
    created_at: float = 0.0
    by: str = ""  # who asked: an admin token's name, or the command line's user
    status: str = "running"  # "running" or "done"
    progress: Progress = field(default_factory=Progress)
    finished_at: float | None = None

    def as_json(self) -> dict[str, object]:
        """The broadcast as the admin API and the command line show it."""
        progress = self.progress
        return {
            "id": self.id,
            "story": self.story,
            "channel": self.channel,
            "where": self.where,
            "dry_run": self.dry_run,
            "status": self.status,
            "walked": progress.walked,
            "matched": progress.matched,
            "started": progress.started,
            "failed": progress.failed,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "by": self.by,
        }


def check_broadcast_ids(ids: Iterable[str]) -> None:
    for broadcast_id in ids:
        if not BROADCAST_ID.fullmatch(broadcast_id):
            raise ValueError(f"a broadcast id is 1 to 64 letters, digits, '_' or '-': {broadcast_id!r}")


class Broadcasts(ABC):
    @abstractmethod
    async def create(self, broadcast: Broadcast) -> None:
        """Keep a new broadcast and list it among the pending ones."""

    @abstractmethod
    async def get(self, broadcast_id: str) -> Broadcast | None: ...

    @abstractmethod
    async def pending(self) -> list[str]:
        """The ids of broadcasts not finished yet (some may be finished already: claim says so)."""

    @abstractmethod
    async def claim(self, broadcast_id: str, holder: str, ttl: float) -> Broadcast | None:
        """Run it as ``holder`` for ``ttl`` seconds; None when it is finished, unknown, or another runner's
        claim still runs (an unknown or finished id also leaves the pending list)."""

    @abstractmethod
    async def checkpoint(self, broadcast_id: str, holder: str, progress: Progress, ttl: float) -> bool:
        """Record ``progress`` and extend the claim; False (nothing written) if ``holder`` lost the claim."""

    @abstractmethod
    async def finish(self, broadcast_id: str, holder: str, progress: Progress, at: float) -> bool:
        """Record the final progress, mark it done (kept :data:`KEEP_FINISHED`) and no longer pending;
        False (nothing written) if ``holder`` lost the claim."""

    @abstractmethod
    async def release(self, broadcast_id: str, holder: str) -> None:
        """Give up the claim now (a runner stopping), so that another runner may take it at once."""

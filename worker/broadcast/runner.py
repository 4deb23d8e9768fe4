"""Run one broadcast: walk the channel's user index, start the story for each matched user, once.

A start is an inbound message of kind ``broadcast`` with the id ``broadcast:<broadcast id>:<user>``,
published on the user's conversation partition: the worker handles it in order with the user's own
messages and commits it like any message, so its commit record drops a second copy. The runner walks the
index shard by shard in user-id order and checkpoints the last user done (with the counts) after the
starts before it were published (confirmed by the broker); a runner that dies is replaced, once its
claim runs out, by one that goes on from the checkpoint and publishes again at most what came after it —
which the workers drop. The starts are paced (``pace`` a second, the channel's limit), so a broadcast
does not crowd out the replies to users who are writing.

Who is started: a user whose attributes match the condition (every user without one), who has a direct
chat with the bot (where the start goes: see :func:`~gateway.core.store.users.base.direct_chat`) and has
not opted out. A matched user who has no direct chat or opted out counts as failed. A dry run walks the
same way and counts the same, but publishes nothing (its ``started`` stays 0).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from gateway.core.bus.base import Bus, Envelope, Topic
from gateway.core.schema import Inbound
from gateway.core.store.base import Store
from gateway.core.store.broadcasts.base import Broadcast, Broadcasts, Progress
from gateway.core.store.users.base import IndexEntry, UserIndex
from worker.broadcast.audience import AudienceError, compile_audience
from worker.engine.conditions import Condition

log = logging.getLogger("gateway.broadcast")

Listener = Callable[[Broadcast], None]


def start_message(broadcast: Broadcast, entry: IndexEntry, at: float) -> Inbound:
    """The inbound that starts ``broadcast``'s story for one user (its id is the same every time)."""
    assert entry.chat is not None
    return Inbound(
        id=f"broadcast:{broadcast.id}:{entry.user}",
        channel=broadcast.channel,
        chat=entry.chat,
        user=entry.user,
        kind="broadcast",
        story=broadcast.story,
        meta=dict(entry.meta),
        sent_at=at,
    )


class Pacer:
    """At most ``per_second`` starts a second on average (None: no limit); never sleeps ahead of need."""

    def __init__(
        self,
        per_second: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.per_second = per_second
        self.clock = clock
        self.sleep = sleep
        self._next = clock()

    @property
    def chunk(self) -> int:
        """How many starts to publish together: about a quarter of a second's worth, at least one."""
        return 500 if self.per_second is None else max(1, min(500, int(self.per_second / 4)))

    async def wait(self, count: int) -> None:
        if self.per_second is None or count == 0:
            return
        now = self.clock()
        if self._next > now:
            await self.sleep(self._next - now)
        self._next = max(self._next, now) + count / self.per_second


@dataclass(frozen=True, slots=True)
class _Verdict:
    entry: IndexEntry
    matched: bool
    started: bool


class BroadcastRunner:
    """Runs broadcasts as ``holder`` (one runner at a time per broadcast, by the store's claim)."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        index: UserIndex,
        broadcasts: Broadcasts,
        *,
        holder: str,
        pace: Callable[[str], float | None] = lambda channel: None,
        claim_ttl: float = 30.0,
        page_size: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.store = store
        self.index = index
        self.broadcasts = broadcasts
        self.holder = holder
        self.pace = pace
        self.claim_ttl = claim_ttl
        self.page_size = page_size
        self.clock = clock

    async def run(self, broadcast_id: str, listener: Listener | None = None) -> Broadcast | None:
        """Claim the broadcast and run it to its end; the finished broadcast, or None when another runner
        has it (or it is finished, or this runner lost its claim on the way)."""
        broadcast = await self.broadcasts.claim(broadcast_id, self.holder, self.claim_ttl)
        if broadcast is None:
            return None
        try:
            condition = compile_audience(broadcast.where)
        except AudienceError as exc:  # checked when it was made: only a changed compiler gets here
            log.error("broadcast %s: its condition no longer compiles (%s); finished", broadcast.id, exc)
            condition = None
            broadcast = replace(broadcast, progress=replace(broadcast.progress, shard=self.index.shards))
        log.info(
            "broadcast %s: running (story %s, channel %s, from shard %d)",
            broadcast.id, broadcast.story, broadcast.channel, broadcast.progress.shard,
        )  # fmt: skip
        progress = await self._walk(broadcast, condition, listener)
        if progress is None:
            log.warning("broadcast %s: another runner took it over; stopping here", broadcast.id)
            return None
        if not await self.broadcasts.finish(broadcast.id, self.holder, progress, self.clock()):
            return None
        done = await self.broadcasts.get(broadcast.id)
        if done is not None:
            log.info(
                "broadcast %s: done: %d users looked at, %d matched, %d started, %d failed",
                done.id, progress.walked, progress.matched, progress.started, progress.failed,
            )  # fmt: skip
            if listener is not None:
                listener(done)
        return done

    async def release(self, broadcast_id: str) -> None:
        await self.broadcasts.release(broadcast_id, self.holder)

    async def _walk(
        self, broadcast: Broadcast, condition: Condition | None, listener: Listener | None
    ) -> Progress | None:
        """Every shard from the checkpoint on; None when the claim was lost."""
        progress = broadcast.progress
        pacer = Pacer(None if broadcast.dry_run else self.pace(broadcast.channel))
        while progress.shard < self.index.shards:
            page = await self.index.page(broadcast.channel, progress.shard, progress.cursor, self.page_size)
            if not page:
                progress = replace(progress, shard=progress.shard + 1, cursor="")
            else:
                verdicts = await self._judge(broadcast, condition, page)
                for first in range(0, len(verdicts), pacer.chunk):
                    chunk = verdicts[first : first + pacer.chunk]
                    starts = [start_message(broadcast, v.entry, self.clock()) for v in chunk if v.started]
                    if starts and not broadcast.dry_run:
                        await pacer.wait(len(starts))
                        await self.bus.publish(Topic.INBOUND, [_envelope(m) for m in starts])
                    progress = _advanced(progress, chunk, broadcast.dry_run)
                    if not await self._checkpoint(broadcast, progress, listener):
                        return None
                continue
            if not await self._checkpoint(broadcast, progress, listener):
                return None
        return progress

    async def _checkpoint(self, broadcast: Broadcast, progress: Progress, listener: Listener | None) -> bool:
        if not await self.broadcasts.checkpoint(broadcast.id, self.holder, progress, self.claim_ttl):
            return False
        if listener is not None:
            listener(replace(broadcast, progress=progress))
        return True

    async def _judge(
        self, broadcast: Broadcast, condition: Condition | None, page: Sequence[IndexEntry]
    ) -> list[_Verdict]:
        """Whether each user matches and can be started; their attributes are read together."""
        channel = broadcast.channel
        if condition is None:
            matched = [True] * len(page)
        else:
            attributes = await asyncio.gather(*(self.store.user_attributes(channel, e.user) for e in page))
            matched = [condition.holds({}, found, "") for found in attributes]
        reachable = [m and e.chat is not None for m, e in zip(matched, page, strict=True)]
        opted_out = await asyncio.gather(
            *(self.store.opted_out(channel, e.user) for e, r in zip(page, reachable, strict=True) if r)
        )
        refusals = iter(opted_out)
        return [
            _Verdict(entry, m, r and not next(refusals))
            for entry, m, r in zip(page, matched, reachable, strict=True)
        ]


def _advanced(progress: Progress, chunk: Sequence[_Verdict], dry_run: bool) -> Progress:
    """The progress after ``chunk``; a dry run starts nobody, its failed are the matched it could not."""
    matched = sum(v.matched for v in chunk)
    startable = sum(v.started for v in chunk)
    return replace(
        progress,
        cursor=chunk[-1].entry.user,
        walked=progress.walked + len(chunk),
        matched=progress.matched + matched,
        started=progress.started + (0 if dry_run else startable),
        failed=progress.failed + matched - startable,
    )


def _envelope(message: Inbound) -> Envelope:
    return Envelope(body=message.to_json(), message_id=message.id, key=str(message.conversation))

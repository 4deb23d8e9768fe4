"""Erasing a user's data erases their timers: the conversation's ``timers`` record goes with the rest of
the user's keys, and this removes its entries from the schedule, which lives apart from them (another
hash tag) and names the conversation — so that nothing naming the user stays behind until it falls due."""

from __future__ import annotations

from gateway.core.bus.base import partition_of
from gateway.core.schedule.base import Schedule, Scheduled
from gateway.core.schema import ConversationKey
from worker.timers.pending import KIND, PendingTimers

__all__ = ["KIND", "unschedule"]


async def unschedule(
    schedule: Schedule, partitions: int, conversation: ConversationKey, record: bytes
) -> int:
    """Remove from the schedule the timers an erased ``timers`` record of ``conversation`` held; how many."""
    pending = PendingTimers.decode(record, conversation)
    entries = [Scheduled(timer.due_ms, conversation, timer.id) for timer in pending.timers]
    if entries:
        await schedule.change(partition_of(str(conversation), partitions), remove=entries)
    return len(entries)

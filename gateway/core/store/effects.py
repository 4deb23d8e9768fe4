"""Records of effects that went out (a reply, one API call of a reply, an email), so none goes out twice.

An effect is recorded in the store *after* it went out. While the store is away that record cannot be
written, and the bus retries the handler in place; were the handler to look only at the store, it would
act again. So an id whose record failed is kept here, in this process, until the store takes it: a retry
finds it here and writes the record instead of acting again — the record is retried, never the effect.
Only a process that dies between an effect and its record can repeat it (after a redelivery elsewhere).
"""

from __future__ import annotations

from gateway.core.store.base import Store


class SentRecords:
    """The "sent" records of one kind of effect (``namespace``), kept ``ttl`` seconds in the store."""

    def __init__(self, store: Store, namespace: str, ttl: float) -> None:
        self.store = store
        self.namespace = namespace
        self.ttl = ttl
        self._unrecorded: set[str] = set()  # went out; the store has not taken the record yet

    async def was_sent(self, item: str, *, ask_store: bool = True) -> bool:
        """True if ``item`` went out before: recorded in the store, or sent here and not yet recorded (its
        record is written first; :class:`~gateway.core.store.base.StoreUnavailable` while the store is away).

        ``ask_store=False`` skips the store round trip when the caller knows no other try can have sent it.
        """
        if item in self._unrecorded:
            await self.record(item)
            return True
        return ask_store and await self.store.is_seen(self.namespace, item)

    async def record(self, item: str) -> None:
        """Record that ``item`` went out; if the store is away, remember it here and raise."""
        self._unrecorded.add(item)
        await self.store.mark_seen(self.namespace, item, self.ttl)
        self._unrecorded.discard(item)

    def unrecorded(self, item: str) -> bool:
        """Whether ``item`` went out from here and its record is still to be written."""
        return item in self._unrecorded

    def __len__(self) -> int:
        return len(self._unrecorded)

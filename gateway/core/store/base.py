"""The store interface: conversation sessions, user attributes, processed messages, duplicate markers.

Two implementations sit beside this module: :mod:`gateway.core.store.redis` (redis-py asyncio) and
:mod:`gateway.core.store.memory`. One contract test suite (``tests/core/store/test_contract.py``) runs against
both.

Record kinds are names of letters, digits, ``_`` and ``-`` (:data:`RECORD_KIND`).

A worker handles one inbound message with exactly two calls, each one round trip on Redis:
:meth:`Store.load` (session + user attributes + "was this message already committed?") and
:meth:`Store.commit` (new session, attribute changes and the outputs, atomically, keyed by the message
id). A message redelivered after a crash finds its commit in ``load`` and re-publishes the recorded
outputs instead of running the story again.

Everything but user attributes and opt-outs expires: sessions after their idle TTL, processed-message
records after ``processed_ttl``, duplicate markers and leases after the TTL they were set with.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.core.schema import Button, ConversationKey

RECORD_KIND = re.compile(r"[A-Za-z0-9_-]{1,32}")


def check_record_kinds(kinds: Iterable[str]) -> None:
    """Refuse a kind that could break a key name (every implementation checks before writing)."""
    for kind in kinds:
        if not RECORD_KIND.fullmatch(kind):
            raise ValueError(f"a record kind is 1 to 32 letters, digits, '_' or '-': {kind!r}")


@dataclass(frozen=True, slots=True)
class Session:
    """A conversation's session: the running story, the step waiting for the next message, values."""

    story: str | None = None
    step: str | None = None  # the waiting step; None when nothing waits
    values: Mapping[str, str] = field(default_factory=dict)
    buttons: tuple[Button, ...] = ()  # the buttons last offered, matched against the next message
    ttl: float = 1800.0  # idle seconds after which the store forgets the session


@dataclass(frozen=True, slots=True)
class Record:
    """A conversation record beside the session, opaque to the store, kept ``ttl`` seconds.

    For state with a life of its own: pending timers outlive the session that set them, a handoff lasts
    until a person hands back, the transcript keeps the last messages. Each kind (``timers``,
    ``handoff``, ...) is owned and encoded by the code that uses it; the store only keeps the bytes with
    the conversation's other keys, so they are written in the same atomic commit and erased with the user.
    """

    value: bytes
    ttl: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What :meth:`Store.load` returns."""

    session: Session | None
    user: Mapping[str, str]
    outputs: tuple[bytes, ...] | None  # recorded outputs when the message was already committed
    records: Mapping[str, bytes] = field(default_factory=dict)  # the kinds asked for that exist


@dataclass(frozen=True, slots=True)
class Commit:
    """The effects of handling one inbound message, written atomically."""

    message_id: str
    session: Session | None  # None ends the session
    user_changes: Mapping[str, str | None] = field(default_factory=dict)  # None deletes the attribute
    outputs: Sequence[bytes] = ()  # serialized replies and email jobs, published after the commit
    records: Mapping[str, Record | None] = field(default_factory=dict)  # by kind; None deletes it


class Store(ABC):
    @abstractmethod
    async def load(self, key: ConversationKey, message_id: str, records: Sequence[str] = ()) -> Snapshot:
        """One round trip: session, the user's attributes, the commit of ``message_id`` if any, and the
        conversation records of the kinds named in ``records`` that exist."""

    @abstractmethod
    async def commit(self, key: ConversationKey, commit: Commit) -> bool:
        """One atomic round trip. False (and nothing written) when ``message_id`` was committed before."""

    @abstractmethod
    async def user_attributes(self, channel: str, user: str) -> dict[str, str]: ...

    @abstractmethod
    async def set_opted_out(self, channel: str, user: str, opted_out: bool) -> None:
        """Record (True) or lift (False) the user's refusal of every message, such as an SMS STOP.

        A fact about the user, kept like their attributes (no time limit) and erased with them.
        """

    @abstractmethod
    async def opted_out(self, channel: str, user: str) -> bool: ...

    @abstractmethod
    async def mark_seen(self, namespace: str, item: str, ttl: float) -> bool:
        """Record ``item`` for ``ttl`` seconds; True if it was not recorded already."""

    @abstractmethod
    async def is_seen(self, namespace: str, item: str) -> bool: ...

    @abstractmethod
    async def forget_seen(self, namespace: str, item: str) -> None:
        """Remove a marker (an SMS opt-out after START); nothing happens when there is none."""

    @abstractmethod
    async def lease(self, namespace: str, item: str, holder: str, ttl: float) -> bool:
        """Take the lease on ``item`` for ``holder``, or extend it when ``holder`` has it, for ``ttl``
        seconds; False (and nothing changed) while another holder's lease runs.

        For work that competing processes may each hold a copy of (an email job re-published after a
        crash): only the holder goes ahead, and a holder that died frees the item when its lease ends.
        """

    @abstractmethod
    async def release(self, namespace: str, item: str, holder: str) -> None:
        """End ``holder``'s lease on ``item``; a lease someone else has taken meanwhile stays theirs."""

    @abstractmethod
    async def put_link(self, namespace: str, item: str, value: str, ttl: float) -> None:
        """Remember ``value`` for ``item`` for ``ttl`` seconds (replacing an earlier one): a lookup from
        an outside id to ours, such as a Slack desk thread's ``ts`` to the conversation it carries."""

    @abstractmethod
    async def get_link(self, namespace: str, item: str) -> str | None: ...

    @abstractmethod
    async def add_live_member(self, group: str, member: str, until: float) -> None:
        """Put ``member`` in ``group`` until the time ``until`` (seconds since the epoch), or move its end
        there. Members past their end no longer count, so a member nobody removes (its user erased) lapses."""

    @abstractmethod
    async def remove_live_member(self, group: str, member: str) -> None: ...

    @abstractmethod
    async def count_live_members(self, group: str, now: float) -> int:
        """The members of ``group`` whose end is after ``now`` (those before it are dropped on the way)."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the store answers now (for ``/readyz``)."""

    @abstractmethod
    async def close(self) -> None: ...

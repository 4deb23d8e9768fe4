"""What the store keeps about one user, and the index of a channel's users: the interfaces.

:class:`UserData` reads, changes and erases everything kept under one user's hash tag (attributes, the
opt-out, the sessions and records of their conversations, the processed-message records with their
outputs). :class:`UserIndex` knows a channel's users: when each last wrote (for retention) and where a
broadcast reaches them. Memory and Redis implementations sit beside this module; one contract suite
(``tests/core/store/test_users_contract.py``) runs on both.

A user's data and their index entry live in different Redis Cluster slots (the index is sharded by
user), so erasing a user is two atomic steps; :class:`UserIndex.remove` comes first, so that a user
half-erased by a crash is no longer reached by broadcasts, and a retried erase finishes the rest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.core.store.base import Session
from gateway.core.store.keys import USER_INDEX_SHARDS


def direct_chat(channel: str, chat: str, user: str) -> bool:
    """Whether ``chat`` is the user's one-to-one chat with the bot, where a broadcast may reach them.

    A chat whose id is the user's own is one (a Telegram private chat, an SMS number, a web chat); on Slack
    a direct message channel's id starts with ``D``. A group or a Slack channel is not.
    """
    return chat == user or (channel == "slack" and chat.startswith("D"))


@dataclass(frozen=True, slots=True)
class KeptSession:
    chat: str
    session: Session
    expires_at: float  # Unix time


@dataclass(frozen=True, slots=True)
class KeptRecord:
    """A conversation record (pending timers, a handoff, ...): bytes owned by the code that wrote them."""

    chat: str
    kind: str
    value: bytes
    expires_at: float


@dataclass(frozen=True, slots=True)
class KeptMessage:
    """The record of a processed message: its id and the outputs it produced (they hold the user's words)."""

    message_id: str
    outputs: tuple[bytes, ...]
    expires_at: float


@dataclass(frozen=True, slots=True)
class UserRecords:
    """Everything kept under one user's tag (``messages`` only when asked for, or erased)."""

    attributes: Mapping[str, str] = field(default_factory=dict)
    opted_out: bool = False
    sessions: tuple[KeptSession, ...] = ()
    records: tuple[KeptRecord, ...] = ()
    messages: tuple[KeptMessage, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.attributes or self.opted_out or self.sessions or self.records or self.messages)


class UserData(ABC):
    @abstractmethod
    async def read(self, channel: str, user: str, *, messages: bool = False) -> UserRecords:
        """One atomic read of the user's data; the processed-message records only with ``messages``."""

    @abstractmethod
    async def change_attributes(
        self, channel: str, user: str, changes: Mapping[str, str | None]
    ) -> dict[str, str]:
        """Set (a text) and delete (None) attributes atomically; the attributes afterwards."""

    @abstractmethod
    async def erase(self, channel: str, user: str) -> UserRecords:
        """Delete everything kept under the user's tag, atomically; what was there (messages included)."""


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """A known user of a channel: when they last wrote, and the direct chat a broadcast goes to."""

    user: str
    last_seen: float | None  # Unix time; None for a user known without a message (set by an operator)
    chat: str | None  # None: they never wrote in a direct chat (see :func:`direct_chat`)
    meta: Mapping[str, str] = field(default_factory=dict)  # routing a reply needs (a web chat instance)


class UserIndex(ABC):
    """A channel's users in :data:`~gateway.core.store.keys.USER_INDEX_SHARDS` shards (by
    :func:`~gateway.core.store.keys.shard_of`), each walked in user-id order."""

    shards: int = USER_INDEX_SHARDS

    @abstractmethod
    async def touch(
        self,
        channel: str,
        user: str,
        at: float,
        chat: str | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        """The user wrote at ``at``: last seen moves forward (never back); a direct ``chat`` (with the
        ``meta`` its replies need) becomes where broadcasts reach them."""

    @abstractmethod
    async def add(self, channel: str, user: str, at: float) -> None:
        """Know the user without a message of theirs (an operator set their attributes): last seen is set
        to ``at`` only when they have none, so retention counts from then."""

    @abstractmethod
    async def entry(self, channel: str, user: str) -> IndexEntry | None: ...

    @abstractmethod
    async def page(self, channel: str, shard: int, after: str, count: int) -> list[IndexEntry]:
        """Up to ``count`` users of one shard whose ids sort after ``after`` ("" for the first), in order."""

    @abstractmethod
    async def idle(self, channel: str, shard: int, before: float, count: int) -> list[str]:
        """Up to ``count`` users of one shard who last wrote before ``before``, longest idle first."""

    @abstractmethod
    async def remove(self, channel: str, user: str, *, idle_before: float | None = None) -> bool:
        """Forget the user; with ``idle_before``, only if they have not written since (atomically). True
        when an entry was removed."""

    @abstractmethod
    async def count(self, channel: str) -> int:
        """How many users the channel's index holds."""

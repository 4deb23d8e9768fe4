"""The bus interface: what every role needs from a message broker, and nothing more.

Two implementations sit beside this module: :mod:`gateway.core.bus.rabbit` (RabbitMQ through aio-pika) and
:mod:`gateway.core.bus.memory` (in-process, for ``gateway run`` / ``chat`` with no services). One contract
test suite (``tests/core/bus/test_contract.py``) runs against both.

Topics and their guarantees
---------------------------
``INBOUND`` and ``OUTBOUND`` are *ordered*: each envelope carries a ``key`` (the conversation) and is
routed to one of ``partitions`` queues by a stable hash of the key. For one key, handler calls never
overlap and follow publish order, across any number of subscribers: each partition has one active
consumer at a time (RabbitMQ's single-active-consumer), and a subscriber that dies hands its partitions
to a standby at once, its unacknowledged messages first. ``EMAIL`` is unordered: subscribers compete.

Acknowledgement (the same for every topic)
------------------------------------------
* the handler returns → the message is acknowledged;
* the handler raises :class:`Rejected` → dead-lettered at once with the reason;
* the handler raises :class:`Unavailable` (the broker or the store is away) → retried in place with
  backoff for as long as it takes; it does not count as a failure and order is kept;
* the handler raises anything else → retried in place up to ``max_attempts`` handler calls, then
  dead-lettered with the last exception as the reason.
A message whose handler never finished (the process died) is delivered again, first in its partition.
So is, with ``redelivered`` set, a message whose handler *did* finish when the implementation carried it
together with others that did not (:class:`~gateway.core.bus.rabbit.RabbitBus` packs the envelopes published
in one batch to one queue into one broker message, see :mod:`gateway.core.bus.packing`, and the broker takes
back a message whole): after a crash, a stop or a rebalance. Handlers are therefore idempotent by
``message_id`` — the roles are (the worker's commit record, the sent ids of the deliverer and the mailer).

Direct destinations: one process's own queue
--------------------------------------------
Some messages must reach one process rather than any subscriber: a web chat reply can only be delivered
by the ``serve`` instance that holds that browser's socket. :meth:`Bus.publish_direct` puts envelopes on
the queue of one ``instance`` of a topic (the topic's key, order and acknowledgement rules apply there
too), and only :meth:`Bus.subscribe_direct` with that instance consumes it. The queue comes into being
when its instance subscribes and outlives a short absence of it (a reconnect, a restart under the same
instance id); an envelope for an instance that has no queue is dropped, which ``publish_direct`` reports
by returning False — it is never an error, because the process that could deliver it is gone.
"""

from __future__ import annotations

import contextlib
import enum
import zlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field


class Topic(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    EMAIL = "email"

    @property
    def ordered(self) -> bool:
        return self is not Topic.EMAIL


# On outputs re-published for a message committed before (``x-gateway-*`` names are the bus's own).
REPLAY_HEADER = "gateway-replay"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One message on the bus: an opaque body plus what routing and de-duplication need."""

    body: bytes
    message_id: str
    key: str = ""  # ordering key; required on ordered topics
    headers: Mapping[str, str] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def _in_place() -> AsyncIterator[None]:
    yield


@dataclass(frozen=True, slots=True)
class Delivery:
    """An envelope as handed to a handler.

    ``aside()``: a handler about to wait on something slow outside (an API a story calls) waits inside
    ``async with delivery.aside():``, which gives its concurrency slot to other deliveries meanwhile and
    takes one back before the block ends. Its key's order is kept: the key's next delivery still waits for
    this handler to finish.
    """

    envelope: Envelope
    topic: Topic
    attempt: int  # 1 on the first handler call for this delivery; grows with in-place retries
    redelivered: bool  # the broker delivered it before (a consumer died holding it)
    aside: Callable[[], AbstractAsyncContextManager[None]] = field(
        default=_in_place, compare=False, repr=False
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    envelope: Envelope
    topic: Topic
    reason: str
    attempts: int
    failed_at: float


Handler = Callable[[Delivery], Awaitable[None]]


class RunHandler(ABC):
    """A handler that can also take a *run*: deliveries of one key, in order, that wait together.

    Pass one where a :data:`Handler` goes. On an ordered topic the bus then hands over in one call the
    deliveries of a key that are already waiting (a turn's replies, which arrive together), so that the
    handler can overlap what one delivery waits for with the next one's work (the deliverer writes a reply's
    "sent" record while it sends the next reply) instead of paying each wait in turn. The rules do not
    change: :meth:`run` must come to what calling the handler on each delivery in order would, and a
    delivery is acknowledged only once it is finished (its effects recorded).
    """

    @abstractmethod
    async def __call__(self, delivery: Delivery) -> None:
        """Handle one delivery, as a :data:`Handler`."""

    @abstractmethod
    async def run(self, deliveries: Sequence[Delivery]) -> None:
        """Handle ``deliveries`` (two or more, one key) in order; return when every one is finished.

        At the first that cannot be finished, raise :class:`RunStopped` with how many before it are, and the
        error as it would have come out of the handler for that delivery (:class:`Rejected`,
        :class:`Unavailable`, anything else); those after it are not acknowledged and come again in the
        next call, so each must be safe to handle again (sent already: dropped, never repeated).
        """


class RunStopped(Exception):
    """Raised by :meth:`RunHandler.run`: the first ``finished`` deliveries are done, the next one failed."""

    def __init__(self, finished: int, error: Exception) -> None:
        super().__init__(f"{finished} finished, then {error!r}")
        self.finished = finished
        self.error = error


def partition_of(key: str, partitions: int) -> int:
    """Stable across processes and Python versions (``hash()`` is salted per process)."""
    return zlib.crc32(key.encode()) % partitions


class Subscription(ABC):
    @abstractmethod
    async def stop(self, timeout: float = 10.0) -> None:
        """Start no new handler calls, let running ones finish (up to ``timeout``), give the rest back."""


class Bus(ABC):
    partitions: int
    max_attempts: int

    @abstractmethod
    async def start(self) -> None:
        """Connect and declare the topology (idempotent)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def publish(self, topic: Topic, envelopes: Sequence[Envelope]) -> None:
        """Return once the broker has confirmed every envelope; raise :class:`BusUnavailable` if not."""

    @abstractmethod
    async def subscribe(self, topic: Topic, handler: Handler, *, concurrency: int = 64) -> Subscription:
        """Call ``handler`` for each message of ``topic`` under the acknowledgement rules above."""

    @abstractmethod
    async def publish_direct(self, topic: Topic, instance: str, envelopes: Sequence[Envelope]) -> bool:
        """Publish to the queue of one process (see the module notes), with confirm like :meth:`publish`.

        Returns False when that queue does not exist (its instance is gone): those envelopes are dropped.
        """

    @abstractmethod
    async def subscribe_direct(
        self, topic: Topic, instance: str, handler: Handler, *, concurrency: int = 64
    ) -> Subscription:
        """Consume the queue of ``instance`` (creating it), under the acknowledgement rules above."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the broker answers now (for ``/readyz``)."""

    @abstractmethod
    async def dead_letters(self, topic: Topic, limit: int = 100) -> list[DeadLetter]:
        """Look at (without removing) the oldest dead letters of ``topic``."""

    @abstractmethod
    async def replay_dead_letters(self, topic: Topic, limit: int | None = None) -> int:
        """Move dead letters back onto their topic, oldest first; return how many."""

    @abstractmethod
    async def remove_dead_letters(
        self, topic: Topic, matches: Callable[[Envelope], bool]
    ) -> list[DeadLetter]:
        """Delete the dead letters of ``topic`` whose envelope ``matches`` (the others stay, in order);
        return those deleted. For erasing what concerns one user: a dead letter holds their words.

        A broker message the broker itself dead-lettered while packed goes only when every envelope in it
        matches (it cannot be split); the bus's own dead letters hold one envelope each.
        """

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

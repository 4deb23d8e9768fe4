"""Dead letters on RabbitMQ: what a dead letter carries in its headers (why, when, after how many tries), and
looking at and replaying the dead-letter queues, which hold both the bus's own dead letters and those the
broker dead-lettered itself (a quorum queue's delivery limit), packed or not.

A dead queue is read by taking its oldest messages on a borrowed channel without acknowledging them, so
that closing the channel hands them back; replaying publishes their envelopes to the topic again and
acknowledges what was published.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from gateway.core.bus.base import DeadLetter, Envelope, Topic
from gateway.core.bus.rabbit.channels import borrowed_channel, restored
from gateway.core.bus.rabbit.connection import BrokerConnection
from gateway.core.bus.rabbit.messages import KEY_HEADER, header_text, readable_envelopes, to_envelope
from gateway.core.bus.rabbit.naming import Topology
from gateway.core.errors import BusUnavailable

REASON_HEADER = "x-gateway-reason"
ATTEMPTS_HEADER = "x-gateway-attempts"
TOPIC_HEADER = "x-gateway-topic"
FAILED_AT_HEADER = "x-gateway-failed-at"

MAX_TAKE = 65535  # the largest prefetch window AMQP allows

Publish = Callable[[Topic, Sequence[Envelope]], Awaitable[None]]


def buried(topic: Topic, envelope: Envelope, reason: str, attempts: int) -> Envelope:
    """The dead letter of ``envelope``: itself, with why and when in its headers."""
    headers: dict[str, str] = {
        **envelope.headers,
        REASON_HEADER: reason[:4000],
        ATTEMPTS_HEADER: str(attempts),
        TOPIC_HEADER: str(topic),
        KEY_HEADER: envelope.key,
        FAILED_AT_HEADER: repr(time.time()),
    }
    return Envelope(envelope.body, envelope.message_id, envelope.key, headers)


def records(message: AbstractIncomingMessage, topic: Topic) -> list[DeadLetter]:
    """What one message on a dead queue records: ours carry one envelope, the broker's may be packed."""
    headers: Mapping[str, Any] = message.headers or {}
    reason = header_text(headers.get(REASON_HEADER))
    if reason is not None:
        return [
            DeadLetter(
                to_envelope(message),
                topic,
                reason,
                int(header_text(headers.get(ATTEMPTS_HEADER)) or 0),
                float(header_text(headers.get(FAILED_AT_HEADER)) or 0.0),
            )
        ]
    # dead-lettered by the broker itself (e.g. a quorum queue's delivery limit)
    deaths = headers.get("x-death")
    death: Mapping[str, Any] = deaths[0] if isinstance(deaths, list) and deaths else {}
    when = death.get("time")
    count = headers.get("x-delivery-count", death.get("count", 0))
    return [
        DeadLetter(
            envelope,
            topic,
            f"broker: {header_text(death.get('reason')) or 'dead-lettered'}",
            int(count) if isinstance(count, int) else 0,
            when.timestamp() if isinstance(when, datetime) else 0.0,
        )
        for envelope in readable_envelopes(message)
    ]


async def peek_dead(
    broker: BrokerConnection, topology: Topology, topic: Topic, limit: int, *, timeout: float
) -> list[DeadLetter]:
    """The oldest dead letters of ``topic``, left where they are."""
    try:
        async with oldest_dead(broker, topology, topic, limit, timeout=timeout) as taken:
            letters = [letter for message in taken.messages for letter in records(message, topic)]
            return letters[:limit]
    except BusUnavailable:
        raise
    except Exception as exc:
        raise BusUnavailable(f"cannot read dead letters: {exc!r}") from exc


async def replay_dead(
    broker: BrokerConnection,
    topology: Topology,
    topic: Topic,
    limit: int | None,
    *,
    timeout: float,
    publish: Publish,
) -> int:
    """Move dead letters back onto ``topic`` with ``publish``, oldest first; how many envelopes moved.

    ``limit`` counts stored messages: one the broker dead-lettered while packed moves whole.
    """
    moved = replayed = 0
    try:
        while limit is None or moved < limit:
            wanted = MAX_TAKE if limit is None else limit - moved
            async with oldest_dead(broker, topology, topic, wanted, timeout=timeout) as taken:
                chosen = taken.messages[:wanted]
                for start in range(0, len(chosen), 500):
                    chunk = chosen[start : start + 500]
                    envelopes = [e for message in chunk for e in readable_envelopes(message)]
                    await publish(topic, envelopes)
                    await taken.ack_through(start + len(chunk))
                    moved += len(chunk)
                    replayed += len(envelopes)
            if len(chosen) < wanted:
                break
    except (BusUnavailable, ValueError):
        raise
    except Exception as exc:
        raise BusUnavailable(f"cannot replay dead letters: {exc!r}") from exc
    return replayed


async def remove_dead(
    broker: BrokerConnection,
    topology: Topology,
    topic: Topic,
    matches: Callable[[Envelope], bool],
    *,
    timeout: float,
) -> list[DeadLetter]:
    """Acknowledge (delete) the dead letters whose envelopes all match; hand the others back in place.

    Takes every dead letter (up to ``MAX_TAKE`` at once, then again while some were removed), so that
    the ones handed back keep their order on a quorum queue too.
    """
    removed: list[DeadLetter] = []
    try:
        if await dead_count(broker, topology, topic, timeout=timeout) == 0:
            return removed  # the usual case, on the admin channel: one round trip
        while True:
            async with oldest_dead(broker, topology, topic, MAX_TAKE, timeout=timeout) as taken:
                found = 0
                for message in taken.messages:
                    letters = records(message, topic)
                    if letters and all(matches(letter.envelope) for letter in letters):
                        await message.ack()
                        taken.acked += 1
                        found += 1
                        removed += letters
                complete = len(taken.messages) < MAX_TAKE
            if complete or not found:
                return removed
    except BusUnavailable:
        raise
    except Exception as exc:
        raise BusUnavailable(f"cannot remove dead letters: {exc!r}") from exc


async def dead_count(broker: BrokerConnection, topology: Topology, topic: Topic, *, timeout: float) -> int:
    """How many messages the topic's dead-letter queue holds now."""
    broker.require()
    assert broker.admin_channel is not None
    async with asyncio.timeout(timeout):
        channel = await restored(broker.admin_channel)
        declared = await channel.queue_declare(topology.dead_queue(topic), passive=True)
    return int(declared.message_count or 0)


class Taken:
    """Messages held on a borrowed channel, and how many were acknowledged (the first ones by a replay)."""

    def __init__(self) -> None:
        self.messages: list[AbstractIncomingMessage] = []
        self.acked = 0

    async def ack_through(self, count: int) -> None:
        """Acknowledge the first ``count`` messages (one frame: ``multiple``)."""
        await self.messages[count - 1].ack(multiple=True)
        self.acked = count


@contextlib.asynccontextmanager
async def oldest_dead(
    broker: BrokerConnection, topology: Topology, topic: Topic, count: int, *, timeout: float
) -> AsyncIterator[Taken]:
    """The oldest dead letters (at least ``count`` if there are), unacknowledged until the block ends.

    On a quorum queue this takes them all (up to ``MAX_TAKE``): it puts messages handed back behind
    those handed back before them, so handing back only the first few would reorder the queue.
    Leaving the block hands back what was not acknowledged, and waits until the queue shows it again
    (a quorum queue applies that a moment later), so that a next look sees everything.
    """
    connection = broker.require()
    name = topology.dead_queue(topic)
    async with borrowed_channel(connection) as channel:
        taken = Taken()
        async with asyncio.timeout(timeout):
            queue = await channel.declare_queue(name, passive=True, robust=False)
            available = queue.declaration_result.message_count or 0
            quorum = topology.queue_type == "quorum"
            wanted = min(available if quorum else count, available, MAX_TAKE)
            if wanted > 0:
                complete = asyncio.Event()

                async def take(message: AbstractIncomingMessage) -> None:
                    taken.messages.append(message)
                    if len(taken.messages) >= wanted:
                        complete.set()

                await channel.set_qos(prefetch_count=wanted)
                await queue.consume(take, robust=False)
                await complete.wait()
        del taken.messages[wanted:]
        yield taken
    if taken.messages:
        await until_ready(broker, name, available - taken.acked, timeout=timeout)


async def until_ready(broker: BrokerConnection, queue: str, count: int, *, timeout: float) -> None:
    """Poll (no event exists) until ``queue`` has ``count`` messages ready, for a moment at most."""
    assert broker.admin_channel is not None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            channel = await restored(broker.admin_channel)
            while True:
                declared = await channel.queue_declare(queue, passive=True)
                if (declared.message_count or 0) >= count:
                    return
                await asyncio.sleep(0.01)

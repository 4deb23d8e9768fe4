"""The bus on RabbitMQ (aio-pika): partitioned single-active-consumer queues, confirms, dead-letter queues.

Topology (declared idempotently by :meth:`RabbitBus.start`): for each ordered topic, ``partitions``
durable queues ``{prefix}.{topic}.{p}`` with ``x-single-active-consumer``; ``{prefix}.email`` for
competing consumers; ``{prefix}.dead.{topic}`` dead-letter queues bound to the direct exchange
``{prefix}.dead`` (routing key = topic), which every topic queue names as its ``x-dead-letter-exchange``
so the broker's own dead letters (quorum ``x-delivery-limit``) land there too.

Every subscriber consumes every partition on a channel of its own: the broker makes one consumer per
partition active and keeps the others standing by, so a dead subscriber's partitions (its unacked
messages first) move on at once. To share the load, each subscriber looks every ``rebalance_interval``
at how many subscribers there are and yields the partitions it holds beyond its share: it finishes the
running handlers of that partition, closes that channel (the broker requeues the rest at the head and
activates the next consumer) and re-subscribes as a standby.

Direct destinations: ``{prefix}.{topic}.to.{instance}``, declared by the instance's ``subscribe_direct``
and published to through the default exchange with ``mandatory``, so that the broker hands back (and
``publish_direct`` reports) what no queue takes. The queue is a durable classic queue with ``x-expires``
rather than an exclusive one: an exclusive queue dies with its connection, so replies published during a
connection blip would be lost and a process restarted under the same instance id could not pick up what
waited for it; ``x-expires`` still deletes the queue of an instance that is gone for good (after
``direct_expiry`` unused, 5 minutes by default), so dead instances leave nothing behind. Classic because it
has one consumer and a short life, so replicating it would buy little; ``x-single-active-consumer`` keeps
per-key order even if two processes were by mistake given one instance id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Literal, cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from gateway.core.bus.base import Bus, DeadLetter, Envelope, Handler, Subscription, Topic, partition_of
from gateway.core.bus.dispatch import Backoff, Dispatcher, RawDelivery, require_key
from gateway.core.bus.packing import PACKED_HEADER, MalformedPack, chunks, pack, unpack
from gateway.core.errors import BusUnavailable

__all__ = ["RabbitBus", "RabbitSubscription", "Topology", "TopologyConflict"]

log = logging.getLogger(__name__)

KEY_HEADER = "x-gateway-key"
REASON_HEADER = "x-gateway-reason"
ATTEMPTS_HEADER = "x-gateway-attempts"
TOPIC_HEADER = "x-gateway-topic"
FAILED_AT_HEADER = "x-gateway-failed-at"
_BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")

_MAX_TAKE = 65535  # the largest prefetch window AMQP allows
_CHANNEL_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, OSError, RuntimeError, TimeoutError)


class TopologyConflict(RuntimeError):
    """The queues exist with other arguments (e.g. another queue type): RabbitMQ refuses to redeclare them."""


@dataclass(frozen=True, slots=True)
class Topology:
    """Names and arguments of every queue and exchange the bus uses."""

    prefix: str = "gw"
    partitions: int = 16
    queue_type: str = "classic"
    delivery_limit: int = 20
    direct_expiry: float = 300.0  # seconds a direct queue outlives its last consumer

    def queue(self, topic: Topic, partition: int = 0) -> str:
        return f"{self.prefix}.{topic}.{partition}" if topic.ordered else f"{self.prefix}.{topic}"

    def queues(self, topic: Topic) -> list[str]:
        return [self.queue(topic, p) for p in range(self.partitions if topic.ordered else 1)]

    def route(self, topic: Topic, envelope: Envelope) -> str:
        return self.queue(topic, partition_of(envelope.key, self.partitions) if topic.ordered else 0)

    def direct_queue(self, topic: Topic, instance: str) -> str:
        return f"{self.prefix}.{topic}.to.{instance}"

    def direct_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "classic",
            "x-expires": max(1, round(self.direct_expiry * 1000)),
            "x-single-active-consumer": True,
        }

    def dead_queue(self, topic: Topic) -> str:
        return f"{self.prefix}.dead.{topic}"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    def members_queue(self, topic: Topic) -> str:
        """An always-empty classic queue each subscriber of ``topic`` consumes, to be counted."""
        return f"{self.prefix}.members.{topic}"

    def all_queues(self) -> list[str]:
        names = [name for topic in Topic for name in (*self.queues(topic), self.dead_queue(topic))]
        return names + [self.members_queue(topic) for topic in Topic if topic.ordered]

    def arguments(self, topic: Topic) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-queue-type": self.queue_type,
            "x-dead-letter-exchange": self.dead_exchange,
            "x-dead-letter-routing-key": str(topic),
        }
        if topic.ordered:
            arguments["x-single-active-consumer"] = True
        if self.queue_type == "quorum":
            arguments["x-delivery-limit"] = self.delivery_limit
        return arguments

    def dead_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": self.queue_type}

    @staticmethod
    def members_arguments() -> dict[str, Any]:
        return {"x-queue-type": "classic"}


class RabbitBus(Bus):
    """The bus on RabbitMQ; one robust connection, a confirming publish channel, a channel per partition."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "gw",
        partitions: int = 16,
        queue_type: str = "classic",
        max_attempts: int = 5,
        prefetch: int = 80,
        delivery_limit: int = 20,
        publish_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        reconnect_interval: float = 1.0,
        rebalance_interval: float = 2.0,
        yield_timeout: float = 10.0,
        direct_expiry: float = 300.0,
        backoff: Backoff | None = None,
        publish_window: int = 1,
    ) -> None:
        if queue_type not in ("classic", "quorum"):
            raise ValueError(f"queue_type must be classic or quorum, got {queue_type!r}")
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.url = url
        self.partitions = partitions
        self.max_attempts = max_attempts
        self.topology = Topology(prefix, partitions, queue_type, delivery_limit, direct_expiry)
        self.prefetch = prefetch
        self.publish_timeout = publish_timeout
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self.rebalance_interval = rebalance_interval
        self.yield_timeout = yield_timeout
        self.backoff = backoff or Backoff()
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._admin: AbstractRobustChannel | None = None
        self._subscriptions: set[RabbitSubscription] = set()
        self._pending: list[_PendingPublish] = []  # publishes waiting for the next batch
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task[None]] = set()  # batches sent and waiting for their confirms
        self.publish_window = publish_window

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._connection is not None:
            return
        try:
            connection = await asyncio.wait_for(
                aio_pika.connect_robust(
                    self.url,
                    reconnect_interval=self.reconnect_interval,
                    client_properties={"connection_name": f"gateway-bus/{self.topology.prefix}"},
                ),
                self.connect_timeout,
            )
        except (*_CHANNEL_ERRORS, aio_pika.exceptions.AMQPException) as exc:
            raise BusUnavailable(f"cannot connect to RabbitMQ: {exc!r}") from exc
        try:
            await self._declare(connection)
            self._publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._admin = await connection.channel(publisher_confirms=False)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            await connection.close()
            raise TopologyConflict(
                f"RabbitMQ queues {self.topology.prefix}.* exist with other arguments than "
                f"queue_type={self.topology.queue_type!r} asks for; delete them or use another prefix ({exc})"
            ) from exc
        except BaseException:
            await connection.close()
            raise
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._connection = connection

    async def _declare(self, connection: AbstractRobustConnection) -> None:
        topology = self.topology
        async with connection.channel(publisher_confirms=False) as channel:
            exchange = await channel.declare_exchange(
                topology.dead_exchange, aio_pika.ExchangeType.DIRECT, durable=True, robust=False
            )
            for topic in Topic:
                dead = await channel.declare_queue(
                    topology.dead_queue(topic),
                    durable=True,
                    arguments=topology.dead_arguments(),
                    robust=False,
                )
                await dead.bind(exchange, routing_key=str(topic), robust=False)
                for name in topology.queues(topic):
                    await channel.declare_queue(
                        name, durable=True, arguments=topology.arguments(topic), robust=False
                    )
                if topic.ordered:
                    await channel.declare_queue(
                        topology.members_queue(topic),
                        durable=True,
                        arguments=topology.members_arguments(),
                        robust=False,
                    )

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.stop()
        await asyncio.gather(*self._flushes, return_exceptions=True)  # publishes already under way
        connection, self._connection = self._connection, None
        self._publisher = self._admin = None
        if connection is not None:
            await connection.close()

    def _on_reconnect(self, *_: object) -> None:
        for subscription in self._subscriptions:
            subscription.forget_activity()

    def _require_connection(self) -> AbstractRobustConnection:
        connection = self._connection
        if connection is None:
            raise BusUnavailable("the bus is not started")
        if connection.is_closed or not connection.connected.is_set():
            raise BusUnavailable("the connection to RabbitMQ is down")
        return connection

    async def ping(self) -> bool:
        try:
            self._require_connection()
            assert self._admin is not None
            async with asyncio.timeout(2.0):
                channel = await _restored(self._admin)
                await channel.queue_declare(self.topology.queue(Topic.EMAIL), passive=True)
        except Exception:
            return False
        return True

    async def subscriber_count(self, topic: Topic) -> int:
        """Subscribers of an ordered topic now, in every process: the consumers of its members queue.

        Not the consumers of a partition queue: a quorum queue counts only its active consumer there.
        """
        self._require_connection()
        assert self._admin is not None
        async with asyncio.timeout(self.publish_timeout):
            channel = await _restored(self._admin)
            declared = await channel.queue_declare(self.topology.members_queue(topic), passive=True)
        return int(declared.consumer_count or 0)

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, topic: Topic, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            require_key(topic, envelope)
        await self._send(((self.topology.route(topic, e), e) for e in envelopes), packable=topic.ordered)

    async def publish_direct(self, topic: Topic, instance: str, envelopes: Sequence[Envelope]) -> bool:
        for envelope in envelopes:
            require_key(topic, envelope)
        queue = self.topology.direct_queue(topic, instance)
        returned = await self._send(
            ((queue, e) for e in envelopes), unroutable="drop", packable=topic.ordered
        )
        if returned:
            log.debug("%d message(s) for %s dropped: the queue does not exist", returned, queue)
        return returned == 0

    async def _send(
        self,
        batch: Iterable[tuple[str, Envelope]],
        unroutable: Literal["raise", "drop"] = "raise",
        *,
        packable: bool = False,
    ) -> int:
        """Publish every envelope, then wait for every confirm: one round trip per batch, not per message.

        Calls are coalesced into batches: those made in the same turn of the event loop, and those made
        while ``publish_window`` batches are already waiting for their confirms (under load a batch then
        grows instead of the broker getting many small ones; when idle nothing waits). A batch has one
        timeout and one wait for the confirms, and its ``packable`` envelopes bound for the same queue
        travel as one packed message (:mod:`gateway.core.bus.packing`). Only ordered topics pack: their
        queues have one consumer at a time anyway, while packing email jobs would take them away from
        competing mailers. A message no queue takes raises
        :class:`BusUnavailable`, or with ``unroutable="drop"`` is counted: returns how many were dropped so.
        """
        messages = list(batch)
        if not messages:
            return 0
        self._require_connection()
        loop = asyncio.get_running_loop()
        call = _PendingPublish(messages, unroutable, packable, loop.create_future())
        self._pending.append(call)
        self._schedule_flush()
        return await call.result

    @property
    def batches_in_flight(self) -> int:
        """Publish batches sent and waiting for their confirms (at most ``publish_window``)."""
        return len(self._flushes)

    def _schedule_flush(self) -> None:
        if self._pending and not self._flush_scheduled and len(self._flushes) < self.publish_window:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_publishes)

    def _flush_publishes(self) -> None:
        self._flush_scheduled = False
        calls, self._pending = self._pending, []
        if not calls:
            return
        task = asyncio.get_running_loop().create_task(self._publish_calls(calls))
        self._flushes.add(task)
        task.add_done_callback(self._flush_done)

    def _flush_done(self, task: asyncio.Task[None]) -> None:
        self._flushes.discard(task)
        self._schedule_flush()

    async def _publish_calls(self, calls: list[_PendingPublish]) -> None:
        try:
            outcomes = await self._publish_frames(calls)
        except BaseException as exc:
            failure = (
                exc if isinstance(exc, BusUnavailable) else BusUnavailable(f"publish interrupted: {exc!r}")
            )
            for call in calls:
                if not call.result.done():
                    call.result.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        first = 0
        for call in calls:
            own = outcomes[first : first + len(call.messages)]
            first += len(call.messages)
            if call.result.done():  # the caller gave up (cancelled)
                continue
            failures = [o for o in own if isinstance(o, BaseException)]
            returned = [f for f in failures if isinstance(f, aiormq.exceptions.PublishError)]
            refused = [f for f in failures if f not in returned] if call.unroutable == "drop" else failures
            if refused:
                error = BusUnavailable(f"RabbitMQ did not confirm the messages: {refused[0]!r}")
                error.__cause__ = refused[0]
                call.result.set_exception(error)
            else:
                call.result.set_result(len(returned))

    async def _publish_frames(self, calls: list[_PendingPublish]) -> list[Any]:
        """Queue every frame at once, then gather the confirms; each envelope's outcome (None or error)."""
        self._require_connection()
        channel = self._publisher
        assert channel is not None
        messages, carried = _wire_messages(calls)
        tasks: list[asyncio.Task[Any]] = []
        try:
            async with asyncio.timeout(self.publish_timeout):
                underlay = cast(aiormq.Channel, await _restored(channel))
                tasks = [  # wait=False: queue every frame at once instead of a socket drain per message
                    asyncio.create_task(
                        underlay.basic_publish(
                            message.body,
                            routing_key=queue,
                            properties=message.properties,
                            mandatory=True,
                            wait=False,
                        )
                    )
                    for queue, message in messages
                ]
                outcomes: list[Any] = [None] * sum(map(len, carried))
                sent = await asyncio.gather(*tasks, return_exceptions=True)
                for outcome, numbers in zip(sent, carried, strict=True):
                    for number in numbers:
                        outcomes[number] = outcome
                return outcomes
        except BusUnavailable:
            raise
        except Exception as exc:
            raise BusUnavailable(f"RabbitMQ did not confirm the messages: {exc!r}") from exc
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
                task.add_done_callback(_retrieve)

    # -- consuming -------------------------------------------------------------------------------

    async def subscribe(self, topic: Topic, handler: Handler, *, concurrency: int = 64) -> Subscription:
        connection = self._require_connection()
        subscription = RabbitSubscription(self, connection, topic, handler, concurrency)
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    async def subscribe_direct(
        self, topic: Topic, instance: str, handler: Handler, *, concurrency: int = 64
    ) -> Subscription:
        connection = self._require_connection()
        subscription = RabbitSubscription(self, connection, topic, handler, concurrency, instance=instance)
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    def forget(self, subscription: RabbitSubscription) -> None:
        self._subscriptions.discard(subscription)

    async def publish_dead_letter(self, topic: Topic, raw: RawDelivery, reason: str, attempts: int) -> None:
        """Publish a dead letter (with why and when) to the topic's dead queue, then ack the original."""
        envelope = raw.envelope
        headers: dict[str, str] = {
            **envelope.headers,
            REASON_HEADER: reason[:4000],
            ATTEMPTS_HEADER: str(attempts),
            TOPIC_HEADER: str(topic),
            KEY_HEADER: envelope.key,
            FAILED_AT_HEADER: repr(time.time()),
        }
        dead = Envelope(envelope.body, envelope.message_id, envelope.key, headers)
        await self._send([(self.topology.dead_queue(topic), dead)])
        await raw.ack()

    # -- dead letters ----------------------------------------------------------------------------

    async def dead_letters(self, topic: Topic, limit: int = 100) -> list[DeadLetter]:
        try:
            async with self._oldest_dead(topic, limit) as taken:
                letters = [letter for message in taken.messages for letter in _dead_letters(message, topic)]
                return letters[:limit]
        except BusUnavailable:
            raise
        except Exception as exc:
            raise BusUnavailable(f"cannot read dead letters: {exc!r}") from exc

    async def replay_dead_letters(self, topic: Topic, limit: int | None = None) -> int:
        """``limit`` counts stored messages: one the broker dead-lettered while packed moves whole."""
        moved = replayed = 0
        try:
            while limit is None or moved < limit:
                wanted = _MAX_TAKE if limit is None else limit - moved
                async with self._oldest_dead(topic, wanted) as taken:
                    chosen = taken.messages[:wanted]
                    for start in range(0, len(chosen), 500):
                        chunk = chosen[start : start + 500]
                        envelopes = [e for message in chunk for e in _readable_envelopes(message)]
                        await self.publish(topic, envelopes)
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

    @contextlib.asynccontextmanager
    async def _oldest_dead(self, topic: Topic, count: int) -> AsyncIterator[_Taken]:
        """The oldest dead letters (at least ``count`` if there are), unacknowledged until the block ends.

        On a quorum queue this takes them all (up to ``_MAX_TAKE``): it puts messages handed back behind
        those handed back before them, so handing back only the first few would reorder the queue.
        Leaving the block hands back what was not acknowledged, and waits until the queue shows it again
        (a quorum queue applies that a moment later), so that a next look sees everything.
        """
        connection = self._require_connection()
        name = self.topology.dead_queue(topic)
        async with _borrowed_channel(connection) as channel:
            taken = _Taken()
            async with asyncio.timeout(self.publish_timeout):
                queue = await channel.declare_queue(name, passive=True, robust=False)
                available = queue.declaration_result.message_count or 0
                quorum = self.topology.queue_type == "quorum"
                wanted = min(available if quorum else count, available, _MAX_TAKE)
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
            await self._until_ready(name, available - taken.acked)

    async def _until_ready(self, queue: str, count: int) -> None:
        """Poll (no event exists) until ``queue`` has ``count`` messages ready, for a moment at most."""
        assert self._admin is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.publish_timeout):
                channel = await _restored(self._admin)
                while True:
                    declared = await channel.queue_declare(queue, passive=True)
                    if (declared.message_count or 0) >= count:
                        return
                    await asyncio.sleep(0.01)


class _Taken:
    """Messages held on a borrowed channel, and how many of the first ones were acknowledged."""

    def __init__(self) -> None:
        self.messages: list[AbstractIncomingMessage] = []
        self.acked = 0

    async def ack_through(self, count: int) -> None:
        """Acknowledge the first ``count`` messages (one frame: ``multiple``)."""
        await self.messages[count - 1].ack(multiple=True)
        self.acked = count


class _PartitionConsumer:
    """One subscription's consumer on one queue, on a channel of its own."""

    def __init__(self, source: int, channel: AbstractChannel) -> None:
        self.source = source
        self.channel = channel
        self.active = False  # got a delivery: the broker made it the active consumer


class RabbitSubscription(Subscription):
    def __init__(
        self,
        bus: RabbitBus,
        connection: AbstractRobustConnection,
        topic: Topic,
        handler: Handler,
        concurrency: int,
        *,
        instance: str | None = None,
    ) -> None:
        self._bus = bus
        self._connection = connection
        self.topic = topic
        self.instance = instance  # set: consume that instance's direct queue instead of the partitions
        self._partitioned = topic.ordered and instance is None
        # The same window on every partition channel of every subscriber, whatever its concurrency: a
        # quorum queue puts messages handed back twice behind the rest unless the subscriber that takes
        # over can take them all at once (classic queues keep the order regardless).
        self._prefetch = bus.prefetch if topic.ordered else max(bus.prefetch, concurrency + 16)
        self._dispatcher = Dispatcher(
            topic,
            handler,
            concurrency=concurrency,
            max_attempts=bus.max_attempts,
            dead_letter=partial(bus.publish_dead_letter, topic),
            backoff=bus.backoff,
        )
        self._consumers: dict[int, _PartitionConsumer] = {}
        self._presence: AbstractChannel | None = None
        self._rebalancer: asyncio.Task[None] | None = None
        self._stopped: asyncio.Future[None] | None = None

    @property
    def active_partitions(self) -> list[int]:
        """Partitions this subscriber has received deliveries on since it (re)subscribed to them."""
        return sorted(c.source for c in self._consumers.values() if c.active)

    async def start(self) -> None:
        sources = range(self._bus.partitions if self._partitioned else 1)
        try:
            if self._partitioned:
                await self._be_counted()
            for source in sources:
                await self._consume(source)
        except BaseException:
            await self._close_channels()
            raise
        if self._partitioned and self._bus.rebalance_interval > 0:
            self._rebalancer = asyncio.create_task(self._rebalance_loop(), name=f"bus-rebalance-{self.topic}")

    async def _be_counted(self) -> None:
        """Consume the topic's members queue, so that every subscriber can count the subscribers."""
        self._presence = channel = await self._connection.channel(publisher_confirms=False)
        members = await channel.declare_queue(
            self._bus.topology.members_queue(self.topic),
            durable=True,
            arguments=self._bus.topology.members_arguments(),
        )
        await members.consume(_ignore, no_ack=True)

    async def _consume(self, source: int) -> None:
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            name, arguments = self._queue_of(source)
            queue = await channel.declare_queue(name, durable=True, arguments=arguments)
            consumer = _PartitionConsumer(source, channel)
            await queue.consume(partial(self._on_message, consumer))
        except BaseException:
            with contextlib.suppress(*_CHANNEL_ERRORS):
                await channel.close()
            raise
        self._consumers[source] = consumer

    def _queue_of(self, source: int) -> tuple[str, dict[str, Any]]:
        """The name and arguments of the queue consumed as ``source``."""
        topology = self._bus.topology
        if self.instance is None:
            return topology.queue(self.topic, source), topology.arguments(self.topic)
        return topology.direct_queue(self.topic, self.instance), topology.direct_arguments()

    async def _on_message(self, consumer: _PartitionConsumer, message: AbstractIncomingMessage) -> None:
        consumer.active = True
        redelivered, stale = bool(message.redelivered), partial(_stale, message)
        try:
            envelopes = _envelopes(message)
        except MalformedPack as exc:  # not from a gateway: keep it, whole, where an operator can see it
            raw = RawDelivery(_envelope(message), consumer.source, redelivered, partial(_ack, message), stale)
            self._bury_unreadable(raw, f"packed message does not unpack: {exc}")
            return
        # A packed message is acknowledged once every envelope in it is finished (handled or buried).
        ack = partial(_ack, message) if len(envelopes) == 1 else _SharedAck(message, len(envelopes)).ack
        for envelope in envelopes:
            self._dispatcher.submit(
                RawDelivery(envelope, consumer.source, redelivered, ack, stale, token=message)
            )

    def _bury_unreadable(self, raw: RawDelivery, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self._bus.publish_dead_letter(self.topic, raw, reason, 0)
        )
        task.add_done_callback(_retrieve)  # if it fails, the message stays unacknowledged and comes back

    def forget_activity(self) -> None:
        """After a reconnect the broker may have chosen other active consumers."""
        for consumer in self._consumers.values():
            consumer.active = False

    async def stop(self, timeout: float = 10.0) -> None:
        if self._stopped is not None:
            await asyncio.shield(self._stopped)
            return
        self._stopped = asyncio.get_running_loop().create_future()
        try:
            if self._rebalancer is not None:
                self._rebalancer.cancel()
                await asyncio.gather(self._rebalancer, return_exceptions=True)
            await self._dispatcher.stop(timeout)
            await self._close_channels()  # the broker requeues what was not acked, at the head
        finally:
            self._bus.forget(self)
            self._stopped.set_result(None)

    async def _close_channels(self) -> None:
        channels = [c.channel for c in self._consumers.values()]
        if self._presence is not None:
            channels.append(self._presence)
        self._consumers, self._presence = {}, None
        await asyncio.gather(*(_close(channel) for channel in channels))

    # -- sharing partitions ----------------------------------------------------------------------

    async def _rebalance_loop(self) -> None:
        while True:
            await asyncio.sleep(self._bus.rebalance_interval)
            try:
                await self.rebalance()
            except BusUnavailable:
                log.debug("rebalance of %s skipped: the broker is away", self.topic)
            except Exception:
                log.warning("rebalance of %s failed", self.topic, exc_info=True)

    async def rebalance(self) -> None:
        """Yield the partitions held beyond ``ceil(partitions / subscribers)``."""
        for source in range(self._bus.partitions):
            if source not in self._consumers:
                await self._consume(source)  # a yield that could not re-subscribe: try again
        subscribers = await self._bus.subscriber_count(self.topic)
        share = math.ceil(self._bus.partitions / max(subscribers, 1))
        active = self.active_partitions
        for source in active[share:]:
            await self._yield(source)

    async def _yield(self, source: int) -> None:
        consumer = self._consumers.get(source)
        if consumer is None or await self._dispatcher.release(source, self._bus.yield_timeout) is None:
            return
        try:
            del self._consumers[source]
            await _close(consumer.channel)
            await self._consume(source)
        finally:
            self._dispatcher.resume(source)  # what arrived on the closed channel is stale and skipped
        log.info("yielded %s partition %d", self.topic, source)


# -- helpers ---------------------------------------------------------------------------------------


def _message(envelope: Envelope) -> aio_pika.Message:
    headers: dict[str, Any] = dict(envelope.headers)
    if envelope.key:
        headers[KEY_HEADER] = envelope.key
    return aio_pika.Message(
        envelope.body,
        message_id=envelope.message_id,
        headers=headers,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _packed_message(envelopes: list[Envelope]) -> aio_pika.Message:
    return aio_pika.Message(
        pack(envelopes),
        message_id=envelopes[0].message_id,
        headers={PACKED_HEADER: len(envelopes)},
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return None


def _envelopes(message: AbstractIncomingMessage) -> list[Envelope]:
    """The envelopes a broker message carries: itself, or those packed in it (may raise MalformedPack)."""
    count = (message.headers or {}).get(PACKED_HEADER)
    if count is None:
        return [_envelope(message)]
    if not isinstance(count, int) or count < 1:
        raise MalformedPack(f"{PACKED_HEADER} is {count!r}")
    return unpack(message.body, count)


def _envelope(message: AbstractIncomingMessage) -> Envelope:
    raw_headers: Mapping[str, Any] = message.headers or {}
    headers: dict[str, str] = {}
    for name, value in raw_headers.items():
        text = _text(value)
        if text is None or name.startswith("x-gateway-") or name.startswith(_BROKER_HEADERS):
            continue
        headers[name] = text
    return Envelope(
        body=message.body,
        message_id=message.message_id or "",
        key=_text(raw_headers.get(KEY_HEADER)) or "",
        headers=headers,
    )


def _readable_envelopes(message: AbstractIncomingMessage) -> list[Envelope]:
    """Its envelopes, or the message itself as one when it does not unpack."""
    try:
        return _envelopes(message)
    except MalformedPack:
        return [_envelope(message)]


def _dead_letters(message: AbstractIncomingMessage, topic: Topic) -> list[DeadLetter]:
    """What one message on a dead queue records: ours carry one envelope, the broker's may be packed."""
    headers: Mapping[str, Any] = message.headers or {}
    reason = _text(headers.get(REASON_HEADER))
    if reason is not None:
        return [
            DeadLetter(
                _envelope(message),
                topic,
                reason,
                int(_text(headers.get(ATTEMPTS_HEADER)) or 0),
                float(_text(headers.get(FAILED_AT_HEADER)) or 0.0),
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
            f"broker: {_text(death.get('reason')) or 'dead-lettered'}",
            int(count) if isinstance(count, int) else 0,
            when.timestamp() if isinstance(when, datetime) else 0.0,
        )
        for envelope in _readable_envelopes(message)
    ]


class _SharedAck:
    """Acknowledges a packed message when the last of its envelopes is acknowledged."""

    __slots__ = ("message", "remaining")

    def __init__(self, message: AbstractIncomingMessage, count: int) -> None:
        self.message, self.remaining = message, count

    async def ack(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            await _ack(self.message)


async def _ack(message: AbstractIncomingMessage) -> None:
    try:
        await message.ack()
    except _CHANNEL_ERRORS as exc:  # the channel is gone: the broker delivers the message again
        log.debug("ack of %s lost: %r", message.message_id, exc)


def _stale(message: AbstractIncomingMessage) -> bool:
    try:
        message.channel  # noqa: B018 - raises once the channel it came on is closed
    except aiormq.exceptions.ChannelInvalidStateError:
        return True
    return False


async def _restored(channel: AbstractRobustChannel) -> aiormq.abc.AbstractChannel:
    """The live AMQP channel under ``channel``, once a reconnect has restored it (callers bound the wait)."""
    await channel.ready()
    return await channel.get_underlay_channel()


async def _ignore(message: AbstractIncomingMessage) -> None:
    """The members queue carries no messages; it exists to be consumed."""


async def _close(channel: AbstractChannel) -> None:
    with contextlib.suppress(*_CHANNEL_ERRORS):
        await channel.close()


@contextlib.asynccontextmanager
async def _borrowed_channel(connection: AbstractRobustConnection) -> AsyncIterator[AbstractRobustChannel]:
    """A short-lived channel; closing it hands back whatever was fetched and not acknowledged."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        yield channel
    finally:
        await _close(channel)


@dataclass(slots=True)
class _PendingPublish:
    messages: list[tuple[str, Envelope]]  # (queue, envelope)
    unroutable: Literal["raise", "drop"]
    packable: bool
    result: asyncio.Future[int]


def _wire_messages(
    calls: list[_PendingPublish],
) -> tuple[list[tuple[str, aio_pika.Message]], list[list[int]]]:
    """The broker messages that carry the calls' envelopes, and which envelopes each one carries.

    Envelopes are numbered in call order. A queue's packable envelopes are packed, in publish order, at
    the position of its first one; dead letters (never packed) go to queues of their own, so every
    queue still receives its envelopes in publish order.
    """
    messages: list[tuple[str, aio_pika.Message]] = []
    carried: list[list[int]] = []
    order: list[tuple[str, list[tuple[int, Envelope]]]] = []
    by_queue: dict[str, list[tuple[int, Envelope]]] = {}
    number = 0
    for call in calls:
        for queue, envelope in call.messages:
            if not call.packable:
                order.append((queue, [(number, envelope)]))
            elif (group := by_queue.get(queue)) is not None:
                group.append((number, envelope))
            else:
                by_queue[queue] = group = [(number, envelope)]
                order.append((queue, group))
            number += 1
    for queue, group in order:
        numbers = iter(n for n, _ in group)
        for run in chunks([envelope for _, envelope in group]):
            messages.append((queue, _message(run[0]) if len(run) == 1 else _packed_message(run)))
            carried.append([next(numbers) for _ in run])
    return messages, carried


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()

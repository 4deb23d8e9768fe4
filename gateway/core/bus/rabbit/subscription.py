"""Consuming: one subscription's consumers (one channel per partition queue, or one on a direct queue) feed
the shared :class:`~gateway.core.bus.dispatch.Dispatcher`, and the subscriptions of an ordered topic share
its partitions among themselves.

Every subscriber consumes every partition on a channel of its own: the broker makes one consumer per
partition active and keeps the others standing by, so a dead subscriber's partitions (its unacked
messages first) move on at once. To share the load, each subscriber looks every ``rebalance_interval``
at how many subscribers there are (the consumers of the topic's members queue) and yields the partitions
it holds beyond its share: it finishes the running handlers of that partition, closes that channel (the
broker requeues the rest at the head and activates the next consumer) and re-subscribes as a standby.

A subscription reads what it needs from its bus through :class:`Owner`, when it needs it, so it does not
depend on the bus module (the bus depends on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from functools import partial
from typing import Any, Protocol

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from gateway.core.bus.base import Handler, Subscription, Topic
from gateway.core.bus.dispatch import Backoff, Dispatcher, RawDelivery
from gateway.core.bus.packing import MalformedPack
from gateway.core.bus.rabbit.acks import SharedAck, ack, stale
from gateway.core.bus.rabbit.channels import CHANNEL_ERRORS, close_channel, retrieve
from gateway.core.bus.rabbit.messages import to_envelope, to_envelopes
from gateway.core.bus.rabbit.naming import Topology
from gateway.core.errors import BusUnavailable

log = logging.getLogger("gateway.core.bus.rabbit")  # the name the bus has always logged under


class Owner(Protocol):
    """What a subscription uses of the bus that made it."""

    @property
    def partitions(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def prefetch(self) -> int: ...
    @property
    def backoff(self) -> Backoff: ...
    @property
    def topology(self) -> Topology: ...
    @property
    def rebalance_interval(self) -> float: ...
    @property
    def yield_timeout(self) -> float: ...

    async def publish_dead_letter(self, topic: Topic, raw: RawDelivery, reason: str, attempts: int) -> None:
        """Record ``raw`` as a dead letter of ``topic``, then acknowledge it."""

    async def subscriber_count(self, topic: Topic) -> int:
        """Subscribers of ``topic`` now, in every process."""

    def forget(self, subscription: RabbitSubscription) -> None:
        """``subscription`` has stopped."""


class _PartitionConsumer:
    """One subscription's consumer on one queue, on a channel of its own."""

    def __init__(self, source: int, channel: AbstractChannel) -> None:
        self.source = source
        self.channel = channel
        self.active = False  # got a delivery: the broker made it the active consumer


class RabbitSubscription(Subscription):
    def __init__(
        self,
        bus: Owner,
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
            self._bus.topology.members_queue(self.topic), **self._bus.topology.members_declaration()
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
            with contextlib.suppress(*CHANNEL_ERRORS):
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
        redelivered, is_stale = bool(message.redelivered), partial(stale, message)
        try:
            envelopes = to_envelopes(message)
        except MalformedPack as exc:  # not from a gateway: keep it, whole, where an operator can see it
            raw = RawDelivery(
                to_envelope(message), consumer.source, redelivered, partial(ack, message), is_stale
            )
            self._bury_unreadable(raw, f"packed message does not unpack: {exc}")
            return
        # A packed message is acknowledged once every envelope in it is finished (handled or buried).
        done = partial(ack, message) if len(envelopes) == 1 else SharedAck(message, len(envelopes)).ack
        for envelope in envelopes:
            self._dispatcher.submit(
                RawDelivery(envelope, consumer.source, redelivered, done, is_stale, token=message)
            )

    def _bury_unreadable(self, raw: RawDelivery, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(
            self._bus.publish_dead_letter(self.topic, raw, reason, 0)
        )
        task.add_done_callback(retrieve)  # if it fails, the message stays unacknowledged and comes back

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
        await asyncio.gather(*(close_channel(channel) for channel in channels))

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
            await close_channel(consumer.channel)
            await self._consume(source)
        finally:
            self._dispatcher.resume(source)  # what arrived on the closed channel is stale and skipped
        log.info("yielded %s partition %d", self.topic, source)


async def _ignore(message: AbstractIncomingMessage) -> None:
    """The members queue carries no messages; it exists to be consumed."""

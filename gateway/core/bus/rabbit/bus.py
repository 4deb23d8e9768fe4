"""The bus on RabbitMQ (aio-pika): :class:`RabbitBus` puts the package's parts together behind the
:class:`~gateway.core.bus.base.Bus` contract and owns their life cycle.

Partitioned single-active-consumer queues, publisher confirms and dead-letter queues. The topology (names
and arguments in :mod:`~gateway.core.bus.rabbit.naming`) is declared idempotently by :meth:`RabbitBus.start`
over the one robust connection (:mod:`~gateway.core.bus.rabbit.connection`); publishes are coalesced into
confirmed, packed batches (:mod:`~gateway.core.bus.rabbit.publisher`); each subscription consumes every
partition and shares them with the other subscribers (:mod:`~gateway.core.bus.rabbit.subscription`); dead
letters are recorded, read and replayed by :mod:`~gateway.core.bus.rabbit.dead_letters`.

Direct destinations (``{prefix}.{topic}.to.{instance}``) are declared by the instance's ``subscribe_direct``
and published to through the default exchange with ``mandatory``, so that the broker hands back (and
``publish_direct`` reports) what no queue takes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from gateway.core.bus.base import Bus, DeadLetter, Envelope, Handler, Subscription, Topic
from gateway.core.bus.dispatch import Backoff, RawDelivery, require_key
from gateway.core.bus.rabbit.channels import restored
from gateway.core.bus.rabbit.connection import BrokerConnection
from gateway.core.bus.rabbit.dead_letters import buried, peek_dead, remove_dead, replay_dead
from gateway.core.bus.rabbit.naming import Topology
from gateway.core.bus.rabbit.nodes import node_urls
from gateway.core.bus.rabbit.publisher import Publisher
from gateway.core.bus.rabbit.subscription import RabbitSubscription

log = logging.getLogger("gateway.core.bus.rabbit")  # the name the bus has always logged under


class RabbitBus(Bus):
    """The bus on RabbitMQ; one robust connection, a confirming publish channel, a channel per partition."""

    def __init__(
        self,
        url: str | Sequence[str],
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
        self.nodes = node_urls(url)  # one URL, or the nodes of a cluster (comma-separated)
        self.url = ",".join(self.nodes)
        self.partitions = partitions
        self.max_attempts = max_attempts
        self.topology = Topology(prefix, partitions, queue_type, delivery_limit, direct_expiry)
        self.prefetch = prefetch
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self.rebalance_interval = rebalance_interval
        self.yield_timeout = yield_timeout
        self.backoff = backoff or Backoff()
        self._broker = BrokerConnection()
        self._publisher = Publisher(self._broker, timeout=publish_timeout, window=publish_window)
        self._subscriptions: set[RabbitSubscription] = set()

    @property
    def publish_timeout(self) -> float:
        """Seconds a publish batch, or a look at the broker (counts, dead letters), may take."""
        return self._publisher.timeout

    @publish_timeout.setter
    def publish_timeout(self, value: float) -> None:
        self._publisher.timeout = value

    @property
    def publish_window(self) -> int:
        """Publish batches that may wait for their confirms at once."""
        return self._publisher.window

    @publish_window.setter
    def publish_window(self, value: int) -> None:
        self._publisher.window = value

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._broker.open(
            self.nodes,
            self.topology,
            connect_timeout=self.connect_timeout,
            reconnect_interval=self.reconnect_interval,
            on_reconnect=self._on_reconnect,
        )

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.stop()
        await self._publisher.drain()  # publishes already under way
        await self._broker.close()

    def _on_reconnect(self, *_: object) -> None:
        for subscription in self._subscriptions:
            subscription.forget_activity()

    async def ping(self) -> bool:
        try:
            self._broker.require()
            assert self._broker.admin_channel is not None
            async with asyncio.timeout(2.0):
                channel = await restored(self._broker.admin_channel)
                await channel.queue_declare(self.topology.queue(Topic.EMAIL), passive=True)
        except Exception:
            return False
        return True

    async def subscriber_count(self, topic: Topic) -> int:
        """Subscribers of an ordered topic now, in every process: the consumers of its members queue.

        Not the consumers of a partition queue: a quorum queue counts only its active consumer there.
        """
        self._broker.require()
        assert self._broker.admin_channel is not None
        async with asyncio.timeout(self.publish_timeout):
            channel = await restored(self._broker.admin_channel)
            # Declared, not looked up: the presence queue is not durable, and after a broker restart a
            # passive declaration made before the subscribers' recovery would fail (and close the channel).
            declared = await channel.queue_declare(
                self.topology.members_queue(topic), **self.topology.members_declaration()
            )
        return int(declared.consumer_count or 0)

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, topic: Topic, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            require_key(topic, envelope)
        await self._publisher.send(
            ((self.topology.route(topic, e), e) for e in envelopes), packable=topic.ordered
        )

    async def publish_direct(self, topic: Topic, instance: str, envelopes: Sequence[Envelope]) -> bool:
        for envelope in envelopes:
            require_key(topic, envelope)
        queue = self.topology.direct_queue(topic, instance)
        returned = await self._publisher.send(
            ((queue, e) for e in envelopes), unroutable="drop", packable=topic.ordered
        )
        if returned:
            log.debug("%d message(s) for %s dropped: the queue does not exist", returned, queue)
        return returned == 0

    @property
    def batches_in_flight(self) -> int:
        """Publish batches sent and waiting for their confirms (at most ``publish_window``)."""
        return self._publisher.in_flight

    # -- consuming -------------------------------------------------------------------------------

    async def subscribe(self, topic: Topic, handler: Handler, *, concurrency: int = 64) -> Subscription:
        connection = self._broker.require()
        subscription = RabbitSubscription(self, connection, topic, handler, concurrency)
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    async def subscribe_direct(
        self, topic: Topic, instance: str, handler: Handler, *, concurrency: int = 64
    ) -> Subscription:
        connection = self._broker.require()
        subscription = RabbitSubscription(self, connection, topic, handler, concurrency, instance=instance)
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    def forget(self, subscription: RabbitSubscription) -> None:
        self._subscriptions.discard(subscription)

    # -- dead letters ----------------------------------------------------------------------------

    async def publish_dead_letter(self, topic: Topic, raw: RawDelivery, reason: str, attempts: int) -> None:
        """Publish a dead letter (with why and when) to the topic's dead queue, then ack the original."""
        dead = buried(topic, raw.envelope, reason, attempts)
        await self._publisher.send([(self.topology.dead_queue(topic), dead)])
        await raw.ack()

    async def dead_letters(self, topic: Topic, limit: int = 100) -> list[DeadLetter]:
        return await peek_dead(self._broker, self.topology, topic, limit, timeout=self.publish_timeout)

    async def replay_dead_letters(self, topic: Topic, limit: int | None = None) -> int:
        """``limit`` counts stored messages: one the broker dead-lettered while packed moves whole."""
        return await replay_dead(
            self._broker, self.topology, topic, limit, timeout=self.publish_timeout, publish=self.publish
        )

    async def remove_dead_letters(
        self, topic: Topic, matches: Callable[[Envelope], bool]
    ) -> list[DeadLetter]:
        return await remove_dead(self._broker, self.topology, topic, matches, timeout=self.publish_timeout)

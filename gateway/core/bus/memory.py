"""The embedded bus: the RabbitMQ topology and its delivery rules, modelled in one process.

Used by ``gateway run`` and ``gateway chat`` when no broker is configured, and by tests. Each ordered
topic is ``partitions`` FIFO queues, each with one active subscriber at a time and the others standing
by (RabbitMQ's single-active-consumer); ``EMAIL`` is one queue whose subscribers compete. What a
subscriber gives back (not started when it stops or yields a partition) goes back to the head of its
queue in order, so the next subscriber sees it first. A direct destination is one more such queue per
(topic, instance), made by the first ``subscribe_direct`` and kept after its subscriber stops (like the
broker's queue within its expiry). Nothing survives the process.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.core.bus.base import Bus, DeadLetter, Envelope, Handler, Subscription, Topic, partition_of
from gateway.core.bus.dispatch import Backoff, Dispatcher, RawDelivery, require_key
from gateway.core.errors import BusUnavailable

__all__ = ["MemoryBus", "MemorySubscription"]


@dataclass(frozen=True, slots=True)
class _Message:
    envelope: Envelope
    redelivered: bool = False


class _Queue:
    """One partition (or the email queue): a FIFO and the subscribers attached to it."""

    def __init__(self, source: int, single_active: bool) -> None:
        self.source = source
        self.single_active = single_active
        self.messages: deque[_Message] = deque()
        self.consumers: list[_Consumer] = []
        self._turn = 0

    def active(self) -> list[_Consumer]:
        return self.consumers[:1] if self.single_active else self.consumers

    def give_back(self, messages: Sequence[_Message]) -> None:
        self.messages.extendleft(reversed([_Message(m.envelope, redelivered=True) for m in messages]))

    def pump(self) -> None:
        """Hand queued messages to active consumers with room, round robin."""
        active = self.active()
        count = len(active)
        while self.messages and count:
            for step in range(count):
                consumer = active[(self._turn + step) % count]
                if consumer.has_room():
                    break
            else:
                return
            self._turn = (self._turn + step + 1) % count
            consumer.take(self.messages.popleft())


class _Consumer:
    """One subscription's attachment to one queue, with its own prefetch window."""

    def __init__(self, subscription: MemorySubscription, queue: _Queue, prefetch: int) -> None:
        self.subscription = subscription
        self.queue = queue
        self.prefetch = prefetch
        self.in_flight = 0
        self.yielding = False

    def has_room(self) -> bool:
        return not (self.subscription.stopping or self.yielding) and self.in_flight < self.prefetch

    def take(self, message: _Message) -> None:
        self.in_flight += 1
        raw = RawDelivery(message.envelope, self.queue.source, message.redelivered, self.ack, token=message)
        self.subscription.dispatcher.submit(raw)

    async def ack(self) -> None:
        self.settle()

    def settle(self) -> None:
        self.in_flight -= 1
        self.queue.pump()
        self.subscription.bus.settled()


class MemorySubscription(Subscription):
    def __init__(
        self,
        bus: MemoryBus,
        topic: Topic,
        handler: Handler,
        concurrency: int,
        prefetch: int,
        direct: _Queue | None = None,
    ) -> None:
        self.bus = bus
        self.topic = topic
        self.direct = direct is not None
        self.stopping = False
        self._stopped: asyncio.Future[None] | None = None
        self.dispatcher = Dispatcher(
            topic,
            handler,
            concurrency=concurrency,
            max_attempts=bus.max_attempts,
            dead_letter=self._bury,
            backoff=bus.backoff,
        )
        queues = bus.queues(topic) if direct is None else [direct]
        self.consumers = [_Consumer(self, queue, prefetch) for queue in queues]

    def attach(self) -> None:
        for consumer in self.consumers:
            consumer.queue.consumers.append(consumer)
        for consumer in self.consumers:
            consumer.queue.pump()

    def active(self) -> list[_Consumer]:
        return [c for c in self.consumers if c.queue.active()[:1] == [c]]

    async def _bury(self, raw: RawDelivery, reason: str, attempts: int) -> None:
        self.bus.bury(DeadLetter(raw.envelope, self.topic, reason, attempts, time.time()))
        self.consumers[raw.source].settle()

    async def yield_queue(self, consumer: _Consumer, timeout: float) -> bool:
        """Hand one partition to the next subscriber in line, its unstarted messages first."""
        queue = consumer.queue
        consumer.yielding = True  # takes nothing new from the queue, so ``left`` is all it holds of it
        try:
            left = await self.dispatcher.release(queue.source, timeout)
        finally:
            consumer.yielding = False
        if left is None:
            queue.pump()
            return False
        queue.give_back(_messages(left))
        consumer.in_flight = 0
        if consumer in queue.consumers:  # not if stop() detached it meanwhile
            queue.consumers.remove(consumer)
            queue.consumers.append(consumer)
        self.dispatcher.resume(queue.source)
        queue.pump()
        return True

    async def stop(self, timeout: float = 10.0) -> None:
        if self._stopped is not None:
            await asyncio.shield(self._stopped)
            return
        self._stopped = asyncio.get_running_loop().create_future()
        self.stopping = True
        try:
            left = await self.dispatcher.stop(timeout)
            for consumer in self.consumers:
                queue = consumer.queue
                queue.give_back(_messages(r for r in left if r.source == queue.source))
                queue.consumers.remove(consumer)
                queue.pump()
            self.bus.forget(self)
        finally:
            self._stopped.set_result(None)


class MemoryBus(Bus):
    """In-process bus; ``publish`` enqueues synchronously, so nothing published is ever refused."""

    def __init__(
        self,
        partitions: int = 16,
        max_attempts: int = 5,
        *,
        prefetch: int | None = None,
        backoff: Backoff | None = None,
        yield_timeout: float = 10.0,
    ) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.partitions = partitions
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self._prefetch = prefetch
        self._yield_timeout = yield_timeout
        self._queues = {
            topic: [_Queue(p, topic.ordered) for p in range(partitions if topic.ordered else 1)]
            for topic in Topic
        }
        self._dead: dict[Topic, deque[DeadLetter]] = {topic: deque() for topic in Topic}
        self._subscriptions: dict[Topic, list[MemorySubscription]] = {topic: [] for topic in Topic}
        self._direct: dict[tuple[Topic, str], _Queue] = {}
        self._direct_subscriptions: list[MemorySubscription] = []
        self._rebalancing: dict[Topic, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._settled = asyncio.Event()
        self._closed = False

    def queues(self, topic: Topic) -> list[_Queue]:
        return self._queues[topic]

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for subscriptions in (*self._subscriptions.values(), self._direct_subscriptions):
            for subscription in list(subscriptions):
                await subscription.stop()

    async def ping(self) -> bool:
        return not self._closed

    async def publish(self, topic: Topic, envelopes: Sequence[Envelope]) -> None:
        if self._closed:
            raise BusUnavailable("the bus is closed")
        for envelope in envelopes:
            require_key(topic, envelope)
        queues = self._queues[topic]
        touched: dict[int, _Queue] = {}
        for envelope in envelopes:
            queue = queues[partition_of(envelope.key, self.partitions) if topic.ordered else 0]
            queue.messages.append(_Message(envelope))
            touched[queue.source] = queue
        for queue in touched.values():
            queue.pump()

    async def publish_direct(self, topic: Topic, instance: str, envelopes: Sequence[Envelope]) -> bool:
        if self._closed:
            raise BusUnavailable("the bus is closed")
        for envelope in envelopes:
            require_key(topic, envelope)
        queue = self._direct.get((topic, instance))
        if queue is None:
            return not envelopes
        queue.messages.extend(_Message(envelope) for envelope in envelopes)
        queue.pump()
        return True

    async def subscribe_direct(
        self, topic: Topic, instance: str, handler: Handler, *, concurrency: int = 64
    ) -> Subscription:
        if self._closed:
            raise BusUnavailable("the bus is closed")
        queue = self._direct.setdefault((topic, instance), _Queue(0, single_active=True))
        prefetch = self._prefetch or concurrency + 16
        subscription = MemorySubscription(self, topic, handler, concurrency, prefetch, direct=queue)
        self._direct_subscriptions.append(subscription)
        subscription.attach()
        return subscription

    async def subscribe(self, topic: Topic, handler: Handler, *, concurrency: int = 64) -> Subscription:
        if self._closed:
            raise BusUnavailable("the bus is closed")
        prefetch = self._prefetch or concurrency + 16
        subscription = MemorySubscription(self, topic, handler, concurrency, prefetch)
        self._subscriptions[topic].append(subscription)
        subscription.attach()
        self._schedule_rebalance(topic)
        return subscription

    async def join(self) -> None:
        """Wait until every message on a subscribed topic is handled, those its handlers publish too.

        For ``gateway chat`` and tests: after it returns, nothing is queued or running on any topic that
        has a subscriber, nor on a direct destination that has one (the others are not waited for).
        """
        while not self._quiet():
            self._settled.clear()
            await self._settled.wait()

    def settled(self) -> None:
        """A delivery was acknowledged or dead-lettered, or a subscriber left: wake :meth:`join`."""
        self._settled.set()

    def _quiet(self) -> bool:
        watched = [q for topic, subs in self._subscriptions.items() if subs for q in self._queues[topic]]
        watched += [q for q in self._direct.values() if q.consumers]
        return not any(
            queue.messages or any(consumer.in_flight for consumer in queue.consumers) for queue in watched
        )

    def bury(self, letter: DeadLetter) -> None:
        self._dead[letter.topic].append(letter)

    def forget(self, subscription: MemorySubscription) -> None:
        if subscription.direct:
            if subscription in self._direct_subscriptions:
                self._direct_subscriptions.remove(subscription)
                self.settled()
            return
        subscriptions = self._subscriptions[subscription.topic]
        if subscription in subscriptions:
            subscriptions.remove(subscription)
            self._schedule_rebalance(subscription.topic)
            self.settled()

    async def dead_letters(self, topic: Topic, limit: int = 100) -> list[DeadLetter]:
        return list(self._dead[topic])[:limit]

    async def replay_dead_letters(self, topic: Topic, limit: int | None = None) -> int:
        if self._closed:
            raise BusUnavailable("the bus is closed")
        dead = self._dead[topic]
        count = len(dead) if limit is None else min(limit, len(dead))
        letters = [dead.popleft() for _ in range(count)]
        await self.publish(topic, [letter.envelope for letter in letters])
        return count

    async def remove_dead_letters(
        self, topic: Topic, matches: Callable[[Envelope], bool]
    ) -> list[DeadLetter]:
        dead = self._dead[topic]
        removed = [letter for letter in dead if matches(letter.envelope)]
        if removed:
            self._dead[topic] = deque(letter for letter in dead if not matches(letter.envelope))
        return removed

    # -- sharing partitions between subscribers --------------------------------------------------

    def _schedule_rebalance(self, topic: Topic) -> None:
        if not topic.ordered or self._closed or len(self._subscriptions[topic]) < 2:
            return
        task = asyncio.get_running_loop().create_task(self._rebalance(topic))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rebalance(self, topic: Topic) -> None:
        """Move partitions from subscribers holding more than their share to the ones next in line."""
        lock = self._rebalancing.setdefault(topic, asyncio.Lock())
        async with lock:
            for _ in range(self.partitions * 4):
                subscriptions = [s for s in self._subscriptions[topic] if not s.stopping]
                if len(subscriptions) < 2:
                    return
                share = math.ceil(self.partitions / len(subscriptions))
                loaded = next((s for s in subscriptions if len(s.active()) > share), None)
                if loaded is None:
                    return
                consumer = min(loaded.active(), key=lambda c: (c.in_flight, -c.queue.source))
                if not await loaded.yield_queue(consumer, self._yield_timeout):
                    return


def _messages(raws: Iterable[RawDelivery]) -> list[_Message]:
    return [raw.token for raw in raws if isinstance(raw.token, _Message)]

"""The bus on a real 3-node RabbitMQ cluster with quorum queues: when the node a role is connected to is
killed (kill -9), the role moves to another node, its consumers resume, its publishes go through again,
nothing published with a confirm is lost, and the subscribers, counted right, keep or share every
partition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from gateway.core.bus.base import Delivery, Topic
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.bus.rabbit.subscription import RabbitSubscription
from gateway.core.errors import BusUnavailable
from tests.support.bus import Watch, envelope, eventually, number
from tests.support.clusters import RabbitCluster

pytestmark = pytest.mark.cluster


def cluster_bus(rabbit_cluster: RabbitCluster, queue_prefix: str) -> RabbitBus:
    """A role's bus on the cluster: quorum queues, 4 partitions, rebalanced only when a test says."""
    return RabbitBus(
        rabbit_cluster.amqp_url,
        prefix=queue_prefix,
        partitions=4,
        queue_type="quorum",
        reconnect_interval=0.5,
        publish_timeout=5.0,
        rebalance_interval=0,
    )


async def counted(bus: RabbitBus, subscribers: int) -> bool:
    """The presence queue counts ``subscribers`` now (more is a ghost: the test fails at once)."""
    count = await bus.subscriber_count(Topic.INBOUND)
    assert count <= subscribers, f"{count} subscribers counted, {subscribers} alive"
    return count == subscribers


async def publish_until_confirmed(bus: RabbitBus, n: int, deadline: float) -> None:
    """Publish as the ingress does: a refusal (503 to the channel) is tried again until it is confirmed."""
    while True:
        try:
            await bus.publish(Topic.INBOUND, [envelope(f"k{n % 7}", n)])
            return
        except BusUnavailable:
            assert time.monotonic() < deadline, f"publish {n} never confirmed"
            await asyncio.sleep(0.1)


async def test_a_role_moves_to_another_node_when_its_node_is_killed(
    rabbit_cluster: RabbitCluster, queue_prefix: str
) -> None:
    bus = cluster_bus(rabbit_cluster, queue_prefix)
    received: set[int] = set()
    watch = Watch()

    async def handler(delivery: Delivery) -> None:
        received.add(number(delivery))
        watch.changed()

    await bus.start()
    killed: int | None = None
    try:
        subscription = await bus.subscribe(Topic.INBOUND, handler)
        assert isinstance(subscription, RabbitSubscription)
        deadline = time.monotonic() + 90
        for n in range(50):
            await publish_until_confirmed(bus, n, deadline)
        await watch.until(lambda: received >= set(range(50)))

        killed = 0  # connect_cluster took the first node that answers: the first one
        began = time.monotonic()
        await asyncio.to_thread(rabbit_cluster.kill_node, killed)
        for n in range(50, 100):
            await publish_until_confirmed(bus, n, deadline)
        published_again = time.monotonic() - began
        await watch.until(lambda: received >= set(range(100)), timeout=60)
        print(f"node killed: publishing again after {published_again:.1f} s, all 100 consumed")
        assert received == set(range(100)), "every confirmed message consumed, none lost"

        # Alone, it keeps every partition: the consumer of its lost connection is not a second subscriber
        # (seen: `serve`, alone on the outbound topic, yielded half its partitions to that ghost, and their
        # replies waited until the node came back).
        # Counted once its presence consumer is back (a moment after its partitions' may be): never twice.
        await eventually(lambda: counted(bus, 1))
        await subscription.rebalance()
        await subscription.rebalance()
        for n in range(100, 140):  # keys k0..k6: every partition of four
            await publish_until_confirmed(bus, n, deadline)
        await watch.until(lambda: received >= set(range(140)), timeout=30)
        assert sorted(subscription.active_partitions) == [0, 1, 2, 3]
    finally:
        await bus.close()
        if killed is not None:
            await asyncio.to_thread(rabbit_cluster.restart_node, killed)


async def test_two_subscribers_share_the_partitions_again_after_their_node_is_killed(
    rabbit_cluster: RabbitCluster, queue_prefix: str
) -> None:
    """Both subscribers lose their node; each comes back with consumers on every partition (the waiting ones
    included), while the queues still list those of the dead connections. Counted right and rebalanced
    three times, they still receive every message published after the death, on every partition: none is
    handed to a consumer of the dead node."""
    buses = [cluster_bus(rabbit_cluster, queue_prefix) for _ in range(2)]
    received: dict[int, int] = {}
    watch = Watch()

    def handler_of(index: int) -> Callable[[Delivery], Awaitable[None]]:
        async def handler(delivery: Delivery) -> None:
            received[number(delivery)] = index
            watch.changed()

        return handler

    killed: int | None = None
    try:
        subscriptions = []
        for index, bus in enumerate(buses):
            await bus.start()
            subscription = await bus.subscribe(Topic.INBOUND, handler_of(index))
            assert isinstance(subscription, RabbitSubscription)
            subscriptions.append(subscription)
        deadline = time.monotonic() + 90
        for n in range(20):
            await publish_until_confirmed(buses[0], n, deadline)
        await watch.until(lambda: set(received) >= set(range(20)))

        killed = 0  # both connected to the first node that answers: the first one
        await asyncio.to_thread(rabbit_cluster.kill_node, killed)
        for n in range(20, 40):
            await publish_until_confirmed(buses[0], n, deadline)
        await watch.until(lambda: set(received) >= set(range(40)), timeout=60)

        await eventually(lambda: counted(buses[0], 2))  # both presence consumers back, and no ghost
        for _ in range(3):
            for subscription in subscriptions:
                await subscription.rebalance()
        for n in range(40, 110):  # keys k0..k6: every partition of four
            await publish_until_confirmed(buses[1], n, deadline)
        await watch.until(lambda: set(received) >= set(range(110)), timeout=30)
        held = [set(s.active_partitions) for s in subscriptions]
        assert held[0] | held[1] == {0, 1, 2, 3}, held
    finally:
        for bus in buses:
            await bus.close()
        if killed is not None:
            await asyncio.to_thread(rabbit_cluster.restart_node, killed)

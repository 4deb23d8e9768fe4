"""The bus on a real 3-node RabbitMQ cluster with quorum queues: when the node a role is connected to is
killed (kill -9), the role moves to another node, its consumers resume, its publishes go through again,
and nothing published with a confirm is lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.core.bus.base import Delivery, Topic
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.bus.rabbit.subscription import RabbitSubscription
from gateway.core.errors import BusUnavailable
from tests.support.bus import Watch, envelope, number
from tests.support.clusters import RabbitCluster

pytestmark = pytest.mark.cluster


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
    bus = RabbitBus(
        rabbit_cluster.amqp_url,
        prefix=queue_prefix,
        partitions=4,
        queue_type="quorum",
        reconnect_interval=0.5,
        publish_timeout=5.0,
    )
    received: set[int] = set()
    watch = Watch()

    async def handler(delivery: Delivery) -> None:
        received.add(number(delivery))
        watch.changed()

    await bus.start()
    killed: int | None = None
    try:
        await bus.subscribe(Topic.INBOUND, handler)
        deadline = time.monotonic() + 60
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
    finally:
        await bus.close()
        if killed is not None:
            await asyncio.to_thread(rabbit_cluster.restart_node, killed)


async def test_a_lone_subscriber_keeps_every_partition_after_its_node_is_killed(
    rabbit_cluster: RabbitCluster, queue_prefix: str
) -> None:
    """The subscribers are counted by their consumers on a members queue; a consumer of the killed node's
    connection must not be counted as a second subscriber (seen: `serve`, alone on the outbound topic,
    yielded half its partitions to that ghost, and their replies waited until the node came back)."""
    bus = RabbitBus(
        rabbit_cluster.amqp_url,
        prefix=queue_prefix,
        partitions=4,
        queue_type="quorum",
        reconnect_interval=0.5,
        publish_timeout=5.0,
        rebalance_interval=0,  # rebalanced by the test, when it says
    )
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
        deadline = time.monotonic() + 60
        for n in range(20):
            await publish_until_confirmed(bus, n, deadline)
        await watch.until(lambda: received >= set(range(20)))

        killed = 0  # connect_cluster took the first node that answers: the first one
        await asyncio.to_thread(rabbit_cluster.kill_node, killed)
        for n in range(20, 40):
            await publish_until_confirmed(bus, n, deadline)
        await watch.until(lambda: received >= set(range(40)), timeout=60)

        assert await bus.subscriber_count(Topic.INBOUND) == 1
        await subscription.rebalance()
        await subscription.rebalance()
        for n in range(40, 80):  # keys k0..k6: every partition of four
            await publish_until_confirmed(bus, n, deadline)
        await watch.until(lambda: received >= set(range(80)), timeout=30)
        assert sorted(subscription.active_partitions) == [0, 1, 2, 3]
    finally:
        await bus.close()
        if killed is not None:
            await asyncio.to_thread(rabbit_cluster.restart_node, killed)

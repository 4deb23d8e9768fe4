"""The cluster test infrastructure itself: a Redis key and a quorum queue outlive the crash of a node.

These also show how to use the fixtures: slow waits (failover, restart) go through ``asyncio.to_thread``
so the clients' event loop keeps running meanwhile. Timings are printed (``-s`` or ``-rP`` shows them).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aio_pika
import pytest
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as RedisClusterClient
from redis.exceptions import RedisError

from tests.support.clusters import RabbitCluster, RedisCluster, wait_until

pytestmark = pytest.mark.cluster

T = TypeVar("T")


async def eventually(what: str, attempt: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Retry ``attempt`` until it succeeds: a client needs a moment to find a new master or leader."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with asyncio.timeout(max(0.1, min(5.0, deadline - time.monotonic()))):
                return await attempt()
        except (RedisError, aio_pika.exceptions.AMQPError, ConnectionError, TimeoutError) as exc:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: still failing after {timeout:.0f} s: {exc!r}") from exc
        await asyncio.sleep(0.1)


async def test_redis_key_survives_master_failover(redis_cluster: RedisCluster) -> None:
    client = RedisClusterClient(
        startup_nodes=[ClusterNode(host, port) for host, port in redis_cluster.startup_nodes],
        decode_responses=True,
    )
    try:
        key = f"gwtest:{uuid.uuid4().hex}"
        assert await client.set(key, "kept")
        assert await client.get(key) == "kept"
        owner = client.get_node_from_key(key)
        assert owner is not None
        await asyncio.to_thread(redis_cluster.wait_replicated)  # replication is asynchronous

        killed_at = time.monotonic()
        dead = redis_cluster.kill_master(int(owner.port))
        read_back = asyncio.create_task(eventually("GET through the cluster client", lambda: client.get(key)))
        promoted = await asyncio.to_thread(redis_cluster.wait_failover, dead)
        failed_over = time.monotonic() - killed_at
        assert promoted != dead and promoted in redis_cluster.masters()
        assert await read_back == "kept"  # the client retried from the kill on, and found the new master
        readable = time.monotonic() - killed_at

        await asyncio.to_thread(redis_cluster.restart_node, dead)
        rejoined = time.monotonic() - killed_at
        # Its own view says "replica" once restart_node returns; the others learn it by gossip, a moment on.
        await asyncio.to_thread(
            wait_until, "the old master listed as a replica", lambda: dead in redis_cluster.replicas(), 15
        )
        assert await client.get(key) == "kept"
        print(
            f"redis: started in {redis_cluster.startup_seconds:.1f} s; after the kill: failed over"
            f" {failed_over:.1f} s, key readable {readable:.1f} s, node rejoined {rejoined:.1f} s"
        )
    finally:
        await client.aclose()


async def publish(url: str, queue: str, bodies: list[str]) -> None:
    """Publish with confirms through the node at ``url``, each message persistent."""
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        for body in bodies:
            await channel.default_exchange.publish(
                aio_pika.Message(body.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue,
            )
    finally:
        await connection.close()


async def consume(url: str, queue: str, expected: set[str], timeout: float = 30.0) -> set[str]:
    """Consume (and ack) through the node at ``url`` until every expected body has come."""
    connection = await aio_pika.connect_robust(url)
    seen: set[str] = set()
    try:
        channel = await connection.channel()
        source = await channel.declare_queue(queue, passive=True)
        async with asyncio.timeout(timeout), source.iterator() as messages:
            async for message in messages:
                async with message.process():
                    seen.add(message.body.decode())
                if expected <= seen:
                    break
    finally:
        await connection.close()
    return seen


async def test_quorum_queue_survives_node_kill(rabbit_cluster: RabbitCluster) -> None:
    queue = f"gwtest-{uuid.uuid4().hex[:10]}"
    declaring = await aio_pika.connect_robust(rabbit_cluster.urls[0])
    try:
        channel = await declaring.channel()
        await channel.declare_queue(queue, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        await declaring.close()
    before = [f"before-{n}" for n in range(20)]
    await publish(rabbit_cluster.urls[0], queue, before)
    status = await asyncio.to_thread(rabbit_cluster.quorum_queue, queue)
    assert len(status["online"]) == 3

    victim = rabbit_cluster.node_index(status["leader"])
    publisher, consumer = (index for index in range(3) if index != victim)
    killed_at = time.monotonic()
    await asyncio.to_thread(rabbit_cluster.kill_node, victim)
    after = [f"after-{n}" for n in range(20)]
    await eventually(
        "publishing with confirms after the leader's node died",
        lambda: publish(rabbit_cluster.urls[publisher], queue, after),
    )
    published = time.monotonic() - killed_at
    seen = await consume(rabbit_cluster.urls[consumer], queue, {*before, *after})
    assert seen == {*before, *after}
    consumed = time.monotonic() - killed_at
    status = await asyncio.to_thread(rabbit_cluster.quorum_queue, queue, consumer)
    assert status["leader"] != rabbit_cluster.node_names[victim]

    await asyncio.to_thread(rabbit_cluster.restart_node, victim)
    rejoined = time.monotonic() - killed_at
    status = await asyncio.to_thread(rabbit_cluster.quorum_queue, queue, victim)
    assert len(status["online"]) == 3
    print(
        f"rabbit: started in {rabbit_cluster.startup_seconds:.1f} s {rabbit_cluster.timings}; after the kill:"
        f" published {published:.1f} s, all consumed {consumed:.1f} s, node rejoined {rejoined:.1f} s"
    )

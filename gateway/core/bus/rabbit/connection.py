"""The bus's one robust connection to RabbitMQ, from start to close: connecting, declaring the topology of
:mod:`~gateway.core.bus.rabbit.naming`, and the two long-lived channels (one confirming channel for every
publish, one for passive declares: pings and counts). The publisher, the dead-letter reader and the
subscriptions all ask it for the connection, so "not started" and "the broker is away" are told apart in
one place.

Declaring is idempotent; when the queues already exist with other arguments (another queue type) RabbitMQ
refuses, and :class:`TopologyConflict` says what to do about it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from gateway.core.bus.base import Topic
from gateway.core.bus.rabbit.channels import CHANNEL_ERRORS, borrowed_channel, close_channel
from gateway.core.bus.rabbit.naming import Topology
from gateway.core.bus.rabbit.nodes import connect_cluster
from gateway.core.errors import BusUnavailable


class TopologyConflict(RuntimeError):
    """The queues exist with other arguments (e.g. another queue type): RabbitMQ refuses to redeclare them;
    or with another number of partitions than this process is configured for."""


MAX_PARTITIONS = 1024  # GATEWAY_PARTITIONS's upper bound


async def queue_exists(connection: AbstractRobustConnection, name: str) -> bool:
    """Whether the broker has queue ``name`` (a passive declare, on a channel of its own: a missing queue
    closes the channel that asked)."""
    try:
        async with borrowed_channel(connection) as channel:
            await channel.declare_queue(name, passive=True, robust=False)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    return True


async def partitions_found(connection: AbstractRobustConnection, topology: Topology) -> int:
    """How many inbound partitions the broker's queues have (0 when none exists yet): queues are numbered
    from 0 without gaps, so a binary search over passive declares finds the count."""
    if not await queue_exists(connection, topology.queue(Topic.INBOUND, 0)):
        return 0
    low, high = 1, MAX_PARTITIONS  # queue low-1 exists; queue high does not (bounded by the settings)
    while low < high:
        middle = (low + high) // 2
        if await queue_exists(connection, topology.queue(Topic.INBOUND, middle)):
            low = middle + 1
        else:
            high = middle
    return low


async def check_partitions(connection: AbstractRobustConnection, topology: Topology) -> None:
    """Refuse to run with another partition count than the queues have: messages would be routed to
    partitions that no one else consumes, and one conversation's messages could land in two queues."""
    found = await partitions_found(connection, topology)
    if found and found != topology.partitions:
        raise TopologyConflict(
            f"GATEWAY_PARTITIONS is {topology.partitions} but the broker's queues "
            f"{topology.prefix}.inbound.* have {found} partitions; every role must use the same value "
            f"(to change it, see `gateway partitions` in docs/operations.md)"
        )


class BrokerConnection:
    """The robust connection and its two long-lived channels: None until :meth:`open`, again after close."""

    def __init__(self) -> None:
        self.robust: AbstractRobustConnection | None = None
        self.publish_channel: AbstractRobustChannel | None = None  # publisher confirms, returns raise
        self.admin_channel: AbstractRobustChannel | None = None

    async def open(
        self,
        nodes: Sequence[str],
        topology: Topology,
        *,
        connect_timeout: float,
        reconnect_interval: float,
        on_reconnect: Callable[..., None],
    ) -> None:
        """Connect to the first of ``nodes`` that answers and declare ``topology`` (idempotent: nothing to
        do once open)."""
        if self.robust is not None:
            return
        try:
            connection = await asyncio.wait_for(
                connect_cluster(
                    nodes,
                    timeout=connect_timeout,
                    reconnect_interval=reconnect_interval,
                    client_properties={"connection_name": f"gateway-bus/{topology.prefix}"},
                ),
                connect_timeout * len(nodes),
            )
        except (*CHANNEL_ERRORS, aio_pika.exceptions.AMQPException) as exc:
            raise BusUnavailable(f"cannot connect to RabbitMQ: {exc!r}") from exc
        try:
            await check_partitions(connection, topology)
            await declare(connection, topology)
            await check_partitions(connection, topology)  # a role with another count declared meanwhile
            self.publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self.admin_channel = await connection.channel(publisher_confirms=False)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            await connection.close()
            raise TopologyConflict(
                f"RabbitMQ queues {topology.prefix}.* exist with other arguments than "
                f"queue_type={topology.queue_type!r} asks for; delete them or use another prefix ({exc})"
            ) from exc
        except BaseException:
            await connection.close()
            raise
        connection.reconnect_callbacks.add(on_reconnect)
        self.robust = connection

    async def renew_publish_channel(self, grace: float) -> None:
        """Replace the confirming channel with a new one.

        Seen on RabbitMQ 3.10 with quorum queues: a channel opened just after the node holding a queue's
        leader died refused every publish to that queue for as long as it lived, while a channel opened
        later worked. So a refused publish makes the next ones go out on a fresh channel. The old one is
        closed after ``grace`` seconds, when the batches still waiting on it have their outcome.
        """
        connection = self.robust
        if connection is None or connection.is_closed or not connection.connected.is_set():
            return  # reconnecting: aio-pika restores the channel itself
        fresh = await connection.channel(publisher_confirms=True, on_return_raises=True)
        old, self.publish_channel = self.publish_channel, fresh
        if old is not None:
            await asyncio.sleep(grace)
            await close_channel(old)

    async def close(self) -> None:
        connection, self.robust = self.robust, None
        self.publish_channel = self.admin_channel = None
        if connection is not None:
            await connection.close()

    def require(self) -> AbstractRobustConnection:
        """The connection, or :class:`BusUnavailable` when the bus is not started or the broker is away."""
        connection = self.robust
        if connection is None:
            raise BusUnavailable("the bus is not started")
        if connection.is_closed or not connection.connected.is_set():
            raise BusUnavailable("the connection to RabbitMQ is down")
        return connection


async def declare(connection: AbstractRobustConnection, topology: Topology) -> None:
    """Declare every exchange and queue of ``topology`` (on a channel of its own, closed afterwards)."""
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
            # Highest partition first: a role starting at the same moment finds partition 0 only once all
            # exist (partitions_found counts from it), never a count cut short by this declaration.
            for name in reversed(list(topology.queues(topic))):
                await channel.declare_queue(
                    name, durable=True, arguments=topology.arguments(topic), robust=False
                )
            if topic.ordered:
                await channel.declare_queue(
                    topology.members_queue(topic), **topology.members_declaration(), robust=False
                )

"""Changing ``GATEWAY_PARTITIONS`` of a running system (`gateway partitions`).

A conversation's partition is a hash of its key modulo the count, so a new count moves conversations to
other queues. Messages still queued under the old count would then be handled beside newer ones of the
same conversation in another queue, out of order. So the count changes only while the partition queues
are empty and nobody consumes them: stop ``serve`` (webhooks answer 503 meanwhile; the channels deliver
again later), let the workers and deliverers empty the queues, stop them, change the count here, start every
role with the new ``GATEWAY_PARTITIONS``. Each role refuses to start on a count that disagrees with the
queues it finds (:func:`~gateway.core.bus.rabbit.connection.check_partitions`).
"""

from __future__ import annotations

from dataclasses import dataclass

import aiormq

from gateway.core.bus.base import Topic
from gateway.core.bus.rabbit.channels import borrowed_channel
from gateway.core.bus.rabbit.connection import partitions_found
from gateway.core.bus.rabbit.naming import Topology
from gateway.core.bus.rabbit.nodes import connect_cluster


@dataclass(frozen=True, slots=True)
class PartitionQueue:
    name: str
    messages: int  # ready (not delivered yet)
    consumers: int


class PartitionsBusy(RuntimeError):
    """The partition queues hold messages or have consumers: the count cannot change now."""


async def inspect(nodes: list[str], topology: Topology) -> tuple[int, list[PartitionQueue]]:
    """The partition count the broker's queues have, and each partition queue's depth and consumers."""
    connection = await connect_cluster(nodes, timeout=10.0, reconnect_interval=1.0, client_properties={})
    try:
        found = await partitions_found(connection, topology)
        queues = []
        for topic in (Topic.INBOUND, Topic.OUTBOUND):
            for partition in range(found):
                name = topology.queue(topic, partition)
                async with borrowed_channel(connection) as channel:
                    try:
                        declared = await channel.declare_queue(name, passive=True, robust=False)
                    except aiormq.exceptions.ChannelNotFoundEntity:
                        continue
                    result = declared.declaration_result
                    queues.append(PartitionQueue(name, result.message_count or 0, result.consumer_count or 0))
        return found, queues
    finally:
        await connection.close()


async def change(nodes: list[str], topology: Topology, new_count: int) -> tuple[int, int]:
    """Set the partition count to ``new_count`` (``topology.partitions`` is ignored); returns (old, new).

    Raises :class:`PartitionsBusy` unless every partition queue is empty and unconsumed. Raising the count
    declares the new queues; lowering it deletes the queues beyond it.
    """
    found, queues = await inspect(nodes, topology)
    busy = [q for q in queues if q.messages or q.consumers]
    if busy:
        listed = ", ".join(f"{q.name} ({q.messages} messages, {q.consumers} consumers)" for q in busy[:5])
        raise PartitionsBusy(
            f"{len(busy)} partition queue(s) are not empty or still consumed: {listed}; stop serve, let the "
            f"queues empty, stop every role, then try again"
        )
    connection = await connect_cluster(nodes, timeout=10.0, reconnect_interval=1.0, client_properties={})
    try:
        async with borrowed_channel(connection) as channel:
            for topic in (Topic.INBOUND, Topic.OUTBOUND):
                for partition in range(new_count, found):
                    await channel.queue_delete(topology.queue(topic, partition))
                for partition in range(found, new_count):
                    await channel.declare_queue(
                        topology.queue(topic, partition),
                        durable=True,
                        arguments=topology.arguments(topic),
                        robust=False,
                    )
    finally:
        await connection.close()
    return found, new_count

"""``gateway partitions [--set N]``: the broker's partition count and queues, or a change of the count."""

from __future__ import annotations

import sys

from gateway.core.bus.rabbit.naming import Topology
from gateway.core.bus.rabbit.nodes import node_urls
from gateway.core.bus.rabbit.partitions import PartitionsBusy, change, inspect
from gateway.core.settings import Settings

MAX_PARTITIONS = 1024


async def run_partitions(settings: Settings, new_count: int | None) -> int:
    assert settings.amqp_url is not None  # the CLI requires it for this command
    nodes = node_urls(settings.amqp_url)
    topology = Topology(settings.queue_prefix, settings.partitions, settings.queue_type)
    try:
        if new_count is None:
            found, queues = await inspect(nodes, topology)
            print(f"{found} partitions on the broker (GATEWAY_PARTITIONS here: {settings.partitions})")
            for queue in queues:
                print(f"  {queue.name}: {queue.messages} messages waiting, {queue.consumers} consumers")
            return 0 if found in (0, settings.partitions) else 1
        if not 1 <= new_count <= MAX_PARTITIONS:
            print(f"error: --set takes 1 to {MAX_PARTITIONS}", file=sys.stderr)
            return 2
        old, new = await change(nodes, topology, new_count)
    except PartitionsBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ConnectionError, OSError, TimeoutError) as exc:
        print(f"error: RabbitMQ unreachable: {exc!r}", file=sys.stderr)
        return 1
    print(f"partitions: {old} → {new}; start every role with GATEWAY_PARTITIONS={new}")
    return 0

"""Names and arguments of every queue and exchange the bus uses, so that declaring, publishing, consuming and
the operators' tools (the Kubernetes checks count on it) agree on them from one place.

For each ordered topic, ``partitions`` durable queues ``{prefix}.{topic}.{p}`` with
``x-single-active-consumer``; ``{prefix}.email`` for competing consumers; ``{prefix}.dead.{topic}``
dead-letter queues bound to the direct exchange ``{prefix}.dead`` (routing key = topic), which every topic
queue names as its ``x-dead-letter-exchange`` so the broker's own dead letters (quorum ``x-delivery-limit``)
land there too; ``{prefix}.presence.{topic}``, an always-empty queue every subscriber of an ordered topic
consumes, so that the subscribers can be counted.

Direct destinations: ``{prefix}.{topic}.to.{instance}``. The queue is a durable queue with
``x-expires`` rather than an exclusive one: an exclusive queue dies with its connection, so replies
published during a connection blip would be lost and a process restarted under the same instance id could
not pick up what waited for it; ``x-expires`` still deletes the queue of an instance that is gone for good
(after ``direct_expiry`` unused, 5 minutes by default), so dead instances leave nothing behind.
``x-single-active-consumer`` keeps per-key order even if two processes were by mistake given one instance id.

Every queue but the presence queues has the type of ``GATEWAY_QUEUE_TYPE``, the direct queues included: on
a cluster a durable classic queue lives on one node, and while that node is down it can be neither consumed
nor declared again — and aio-pika's recovery, which declares again what a channel had declared, would fail
on it over and over. A quorum queue is replicated, so it stays usable with a majority of the nodes.

The presence queues are classic and not durable, on every broker: they hold nothing, and what they must get
right is the count of their consumers. A quorum queue keeps counting the consumers of a node that died (as
suspected down, until the node is back), so a role alone on a topic counted the consumer of its own lost
connection as a second subscriber and yielded partitions to nobody. A classic queue forgets a consumer as
soon as the consumer's node is gone, and a non-durable one whose own node dies is deleted with it, so the
subscribers' recovery declares it again on a node that lives (and consumes it again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.bus.base import Envelope, Topic, partition_of


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
            "x-queue-type": self.queue_type,
            "x-expires": max(1, round(self.direct_expiry * 1000)),
            "x-single-active-consumer": True,
        }

    def dead_queue(self, topic: Topic) -> str:
        return f"{self.prefix}.dead.{topic}"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    def members_queue(self, topic: Topic) -> str:
        """An always-empty queue each subscriber of ``topic`` consumes, to be counted (not durable)."""
        return f"{self.prefix}.presence.{topic}"

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

    def members_declaration(self) -> dict[str, Any]:
        """How a presence queue is declared (the same wherever it is): classic, not durable."""
        return {"durable": False, "arguments": {"x-queue-type": "classic"}}

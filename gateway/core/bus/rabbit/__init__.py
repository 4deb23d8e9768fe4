"""The bus on RabbitMQ (aio-pika), one concept per module, dependencies pointing one way (each module imports
only those listed before it, and nothing here imports this package's ``__init__``):

* ``naming`` — :class:`Topology`: the names and arguments of every queue and exchange;
* ``channels`` — channel helpers: the errors that mean "gone", restoring, closing, borrowing;
* ``messages`` — envelopes to aio-pika messages and back (alone or packed);
* ``acks`` — acknowledging what was received: lost channels, packed messages, stale deliveries;
* ``connection`` — the robust connection, declaring the topology, :class:`TopologyConflict`;
* ``publisher`` — the coalescing, confirmed, packing publisher;
* ``dead_letters`` — what a dead letter records; reading and replaying the dead queues;
* ``subscription`` — consuming partitions or a direct queue, and sharing partitions (rebalancing);
* ``bus`` — :class:`RabbitBus`, which puts them together behind :class:`~gateway.core.bus.base.Bus`.
"""

from gateway.core.bus.rabbit.bus import RabbitBus
from gateway.core.bus.rabbit.connection import TopologyConflict
from gateway.core.bus.rabbit.naming import Topology

__all__ = ["RabbitBus", "Topology", "TopologyConflict"]

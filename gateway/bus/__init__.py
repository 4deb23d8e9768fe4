"""The message bus: the contract in :mod:`gateway.bus.base`, implementations in ``memory`` and ``rabbit``."""

from gateway.bus.base import (
    Bus,
    BusUnavailable,
    DeadLetter,
    Delivery,
    Envelope,
    Handler,
    Rejected,
    Subscription,
    Topic,
    Unavailable,
    partition_of,
)

__all__ = [
    "Bus",
    "BusUnavailable",
    "DeadLetter",
    "Delivery",
    "Envelope",
    "Handler",
    "Rejected",
    "Subscription",
    "Topic",
    "Unavailable",
    "partition_of",
]

"""Helpers for the bus tests: envelopes numbered per key, waiting on what handlers recorded, and removing
a test's queues from RabbitMQ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aio_pika

from gateway.core.bus.base import Delivery, Envelope
from gateway.core.bus.dispatch import Backoff
from gateway.core.bus.rabbit import Topology

FAST_RETRIES = Backoff(initial=0.005, maximum=0.02)
WAIT = 15.0


async def delete_topology(amqp_url: str, topology: Topology) -> None:
    """Remove a test's queues and exchange from the run's vhost."""
    connection = await aio_pika.connect(amqp_url)
    try:
        async with connection.channel() as channel:
            for name in topology.all_queues():
                await channel.queue_delete(name)
            await channel.exchange_delete(topology.dead_exchange)
    finally:
        await connection.close()


class Watch:
    """Lets a test wait until a condition on what handlers recorded holds (woken by each change)."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()

    def changed(self) -> None:
        self._changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


async def eventually(probe: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    """Poll ``probe`` until it holds: only for what no event tells (dead letters stored by the broker)."""
    deadline = time.monotonic() + timeout
    while not await probe():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def envelope(key: str, n: int, **headers: str) -> Envelope:
    return Envelope(body=str(n).encode(), message_id=f"{key}/{n}", key=key, headers=headers)


def number(delivery: Delivery) -> int:
    return int(delivery.envelope.body)

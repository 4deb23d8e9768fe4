"""Small helpers around aio-pika channels, shared by the connection, the publisher, the subscriptions and the
dead-letter reader, so that each handles a channel that has gone away in the same way: which errors mean
"the channel (or connection) is gone", waiting for a robust channel to be restored, closing without
raising, a short-lived channel for one job, and collecting the outcome of a task nobody awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustChannel, AbstractRobustConnection

CHANNEL_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, OSError, RuntimeError, TimeoutError)


async def restored(channel: AbstractRobustChannel) -> aiormq.abc.AbstractChannel:
    """The live AMQP channel under ``channel``, once a reconnect has restored it (callers bound the wait)."""
    await channel.ready()
    return await channel.get_underlay_channel()


async def close_channel(channel: AbstractChannel) -> None:
    with contextlib.suppress(*CHANNEL_ERRORS):
        await channel.close()


@contextlib.asynccontextmanager
async def borrowed_channel(connection: AbstractRobustConnection) -> AsyncIterator[AbstractRobustChannel]:
    """A short-lived channel; closing it hands back whatever was fetched and not acknowledged."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        yield channel
    finally:
        await close_channel(channel)


def retrieve(task: asyncio.Task[Any]) -> None:
    """A done callback: fetch the exception of a task nobody awaits, so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()

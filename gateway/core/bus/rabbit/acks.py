"""Acknowledging what a subscription received, as the dispatcher needs it: an ack never raises when the
channel the message came on is gone (the broker delivers the message again anyway), a packed message is
acknowledged once every envelope in it is finished, and a delivery can tell that its channel is closed
(so it is stale: it will come again, and is skipped).
"""

from __future__ import annotations

import logging

import aiormq
from aio_pika.abc import AbstractIncomingMessage

from gateway.core.bus.rabbit.channels import CHANNEL_ERRORS

log = logging.getLogger("gateway.core.bus.rabbit")  # the name the bus has always logged under


async def ack(message: AbstractIncomingMessage) -> None:
    try:
        await message.ack()
    except CHANNEL_ERRORS as exc:  # the channel is gone: the broker delivers the message again
        log.debug("ack of %s lost: %r", message.message_id, exc)


class SharedAck:
    """Acknowledges a packed message when the last of its envelopes is acknowledged."""

    __slots__ = ("message", "remaining")

    def __init__(self, message: AbstractIncomingMessage, count: int) -> None:
        self.message, self.remaining = message, count

    async def ack(self) -> None:
        self.remaining -= 1
        if self.remaining == 0:
            await ack(self.message)


def stale(message: AbstractIncomingMessage) -> bool:
    try:
        message.channel  # noqa: B018 - raises once the channel it came on is closed
    except aiormq.exceptions.ChannelInvalidStateError:
        return True
    return False

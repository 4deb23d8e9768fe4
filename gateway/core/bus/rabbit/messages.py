"""Envelopes to aio-pika messages and back, in one place, so that what the publisher writes and what the
subscriptions and the dead-letter reader read stay the same format.

An envelope travels alone as a persistent message (its key in the ``x-gateway-key`` header), or packed
with others bound for the same queue (:mod:`gateway.core.bus.packing`, the count in ``x-gateway-packed``).
Reading a message back keeps only the envelope's own headers: the bus's ``x-gateway-*`` headers and the
broker's dead-lettering headers are dropped, and so are values that are not text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from gateway.core.bus.base import Envelope
from gateway.core.bus.packing import PACKED_HEADER, MalformedPack, pack, unpack

KEY_HEADER = "x-gateway-key"
BROKER_HEADERS = ("x-death", "x-first-death-", "x-last-death-", "x-delivery-count")


def to_message(envelope: Envelope) -> aio_pika.Message:
    headers: dict[str, Any] = dict(envelope.headers)
    if envelope.key:
        headers[KEY_HEADER] = envelope.key
    return aio_pika.Message(
        envelope.body,
        message_id=envelope.message_id,
        headers=headers,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def to_packed_message(envelopes: list[Envelope]) -> aio_pika.Message:
    return aio_pika.Message(
        pack(envelopes),
        message_id=envelopes[0].message_id,
        headers={PACKED_HEADER: len(envelopes)},
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def header_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return None


def to_envelopes(message: AbstractIncomingMessage) -> list[Envelope]:
    """The envelopes a broker message carries: itself, or those packed in it (may raise MalformedPack)."""
    count = (message.headers or {}).get(PACKED_HEADER)
    if count is None:
        return [to_envelope(message)]
    if not isinstance(count, int) or count < 1:
        raise MalformedPack(f"{PACKED_HEADER} is {count!r}")
    return unpack(message.body, count)


def to_envelope(message: AbstractIncomingMessage) -> Envelope:
    raw_headers: Mapping[str, Any] = message.headers or {}
    headers: dict[str, str] = {}
    for name, value in raw_headers.items():
        text = header_text(value)
        if text is None or name.startswith("x-gateway-") or name.startswith(BROKER_HEADERS):
            continue
        headers[name] = text
    return Envelope(
        body=message.body,
        message_id=message.message_id or "",
        key=header_text(raw_headers.get(KEY_HEADER)) or "",
        headers=headers,
    )


def readable_envelopes(message: AbstractIncomingMessage) -> list[Envelope]:
    """Its envelopes, or the message itself as one when it does not unpack."""
    try:
        return to_envelopes(message)
    except MalformedPack:
        return [to_envelope(message)]

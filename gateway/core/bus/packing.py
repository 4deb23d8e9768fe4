"""Several envelopes in one broker message: how the RabbitMQ bus makes one publish carry many.

A broker spends most of its effort per message (routing, storing, confirming, delivering, acknowledging),
not per byte, and so does the AMQP client on each side. Envelopes published in the same turn of the event
loop to the same queue are therefore sent as one *packed* message; the consumer unpacks them and hands
each envelope to its handler as if it had come alone, acknowledging the packed message once every one of
them is finished (see :mod:`gateway.core.bus.rabbit`).

Wire format (the broker message's header ``x-gateway-packed`` holds the count)::

    JSON array of [message_id, key, {header: value}, body_length]   one line, no newline inside
    b"\\n"
    the bodies, concatenated in that order

Bodies stay opaque bytes; only the small index is JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from gateway.core.bus.base import Envelope

PACKED_HEADER = "x-gateway-packed"

MAX_ENVELOPES = 128  # per packed message: a redelivery repeats at most this many envelopes' checks
MAX_BYTES = 256 * 1024  # of bodies per packed message: keeps one message far below any broker limit


class MalformedPack(ValueError):
    """A message that says it is packed but whose body does not unpack."""


def pack(envelopes: Sequence[Envelope]) -> bytes:
    index = [[e.message_id, e.key, dict(e.headers), len(e.body)] for e in envelopes]
    head = json.dumps(index, separators=(",", ":"), ensure_ascii=True).encode()
    return b"".join([head, b"\n", *(e.body for e in envelopes)])


def unpack(body: bytes, count: int) -> list[Envelope]:
    """The envelopes of a packed body; raises :class:`MalformedPack` unless exactly ``count`` are there."""
    end = body.find(b"\n")
    if end < 0:
        raise MalformedPack("no index line")
    try:
        index = json.loads(body[:end])
    except ValueError as exc:
        raise MalformedPack(f"index is not JSON: {exc}") from exc
    if not isinstance(index, list) or len(index) != count:
        listed = len(index) if isinstance(index, list) else "no"
        raise MalformedPack(f"index lists {listed} envelopes, not {count}")
    envelopes: list[Envelope] = []
    offset = end + 1
    for entry in index:
        match entry:
            case [str(message_id), str(key), dict(headers), int(length)] if length >= 0 and all(
                isinstance(value, str) for value in headers.values()
            ):
                pass
            case _:
                raise MalformedPack(f"bad index entry {entry!r:.200}")
        if offset + length > len(body):
            raise MalformedPack(f"body of {message_id!r} runs past the end")
        envelopes.append(Envelope(body[offset : offset + length], message_id, key, headers))
        offset += length
    if offset != len(body):
        raise MalformedPack(f"{len(body) - offset} bytes after the last body")
    return envelopes


def chunks(envelopes: Sequence[Envelope]) -> list[list[Envelope]]:
    """Split envelopes (in order) into runs that each fit in one packed message."""
    runs: list[list[Envelope]] = []
    run: list[Envelope] = []
    size = 0
    for envelope in envelopes:
        if run and (len(run) >= MAX_ENVELOPES or size + len(envelope.body) > MAX_BYTES):
            runs.append(run)
            run, size = [], 0
        run.append(envelope)
        size += len(envelope.body)
    if run:
        runs.append(run)
    return runs

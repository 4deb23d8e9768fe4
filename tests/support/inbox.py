"""Helpers for the inbox tests: staff replies as mail clients write them, a handed-over conversation in a
store, and the staff inbounds a bus carries.

The replies follow the two common layouts: Gmail (the answer, a "-- " signature, then "On <date>, X wrote:"
and the quoted ticket) and Outlook (the answer, then "-----Original Message-----" / "From: ... Sent: ..."
and the ticket, with the sender's closing and signature after the quoted part).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid

from gateway.core import desk
from gateway.core.bus.base import Bus, Delivery, Subscription, Topic
from gateway.core.schema import ConversationKey, Inbound, parse_inbound
from gateway.core.store.base import Commit, Record, Store

SECRET = "test-secret-key-of-the-desk"
INBOX_ADDRESS = "desk@bot.example.com"
STAFF = ("agent@support.example.com", "@helpdesk.example.org")
AGENT = "agent@support.example.com"
CONVERSATION = ConversationKey("telegram", "1001", "1001")
WAIT = 15.0
# A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360000002"
    "000154a24f5d0000000049454e44ae426082"
)
_handoffs = itertools.count(1)

GMAIL_BODY = """\
Hi Ada,

your parcel left the warehouse this morning; it arrives tomorrow.

-- 
Bob Agent
Support, Example Inc.
+1 555 0100

On Tue, 1 Dec 2026 at 16:00, Gateway <desk+TOKEN@bot.example.com> wrote:
> Conversation with Ada
>
> Ada: where is my parcel?
> Bot: let me get a person for you.
"""  # noqa: W291 - "-- " with its space is the signature delimiter

OUTLOOK_BODY = """\
Hello Ada,

the refund of 20 EUR is on its way:
- to your card
- within 3 days

-----Original Message-----
From: Gateway <desk+TOKEN@bot.example.com>
Sent: Tuesday, December 1, 2026 4:00 PM
To: support@example.com
Subject: Conversation with Ada

Ada: I want a refund
Bot: let me get a person for you.

Best regards,
Bob Agent
Support, Example Inc.
"""


def reply_address(key: ConversationKey = CONVERSATION, secret: str = SECRET) -> str:
    return desk.reply_address(secret, key, INBOX_ADDRESS)


def staff_reply(
    body: str | None = GMAIL_BODY,
    *,
    sender: str = AGENT,
    to: str | None = None,
    message_id: str | None = None,
    html: str | None = None,
    images: tuple[tuple[bytes, str, str], ...] = (),
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """A reply to the ticket of ``CONVERSATION`` (``to``: another recipient); ``images``: (data, mime,
    name) each."""
    message = EmailMessage()
    message["From"] = f"Bob Agent <{sender}>"
    message["To"] = to if to is not None else reply_address()
    message["Subject"] = "Re: Conversation with Ada"
    message["Message-ID"] = message_id or make_msgid(domain="support.example.com")
    for name, value in (headers or {}).items():
        message[name] = value
    if body is not None:
        message.set_content(body)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    for data, mime, name in images:
        maintype, subtype = mime.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message


async def hand_over(store: Store, key: ConversationKey = CONVERSATION) -> None:
    """Make ``key`` handed over, as the worker records it (the record's content is the worker's)."""
    record = Record(b'{"desk": "email"}', ttl=3600)
    commit = Commit(f"test-handoff-{next(_handoffs)}", None, records={desk.HANDOFF_RECORD: record})
    await store.commit(key, commit)


async def hand_back(store: Store, key: ConversationKey = CONVERSATION) -> None:
    commit = Commit(f"test-handback-{next(_handoffs)}", None, records={desk.HANDOFF_RECORD: None})
    await store.commit(key, commit)


@dataclass
class Inbounds:
    """What a bus carries on INBOUND, parsed; ``until(n)`` waits until ``n`` have come."""

    received: list[Inbound] = field(default_factory=list)
    subscription: Subscription | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, delivery: Delivery) -> None:
        self.received.append(parse_inbound(delivery.envelope.body))
        self._changed.set()

    async def until(self, count: int, timeout: float = WAIT) -> list[Inbound]:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.received

    async def stop(self) -> None:
        if self.subscription is not None:
            await self.subscription.stop()


async def collect_inbounds(bus: Bus) -> Inbounds:
    inbounds = Inbounds()
    inbounds.subscription = await bus.subscribe(Topic.INBOUND, inbounds.handle)
    return inbounds

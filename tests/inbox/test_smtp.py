"""The SMTP inbox as a mail server sees it: aiosmtplib sends to the running listener, which publishes on
RabbitMQ with the Redis store. 250 only once the reply is on the bus; 550 with the reason for a refusal;
552 for a mail over 10 MiB; 451 while the bus is away.

"Nothing was published" is shown by order: every refused mail is followed by an accepted one on the same
conversation (one partition, so one order), and that one is the first and only inbound to arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import EmailMessage

import aiosmtplib
import pytest

from gateway.core.bus.memory import MemoryBus
from gateway.core.store.memory import MemoryStore
from gateway.core.store.redis import RedisStore
from mailer.inbox.service import Inbox
from mailer.inbox.smtp_server import SmtpInbox
from tests.support.inbox import (
    AGENT,
    CONVERSATION,
    GMAIL_BODY,
    INBOX_ADDRESS,
    OUTLOOK_BODY,
    PNG,
    SECRET,
    STAFF,
    Inbounds,
    hand_back,
    hand_over,
    reply_address,
    staff_reply,
)


@pytest.fixture
async def listener(inbox: Inbox) -> AsyncIterator[SmtpInbox]:
    server = SmtpInbox(inbox, "127.0.0.1", 0)
    await server.start()
    yield server
    await server.stop_intake()
    await server.drain(5)


async def send(listener: SmtpInbox, message: EmailMessage | bytes, rcpt: str | None = None) -> str:
    """Send as an MX would (envelope recipient = the reply address); the server's answer to DATA."""
    _, answer = await aiosmtplib.send(
        message, hostname="127.0.0.1", port=listener.port, sender="bounces@support.example.com",
        recipients=[rcpt or reply_address()], timeout=30,
    )  # fmt: skip
    return answer


def refused_count(inbox: Inbox, reason: str) -> float:
    value = inbox.metrics.registry.get_sample_value("gateway_inbox_refused_total", {"reason": reason})
    return value or 0.0


async def test_both_layouts_are_passed_on_through_rabbitmq(listener: SmtpInbox, inbounds: Inbounds) -> None:
    assert (await send(listener, staff_reply(GMAIL_BODY))).startswith("2.0.0 OK: passed on")
    assert (await send(listener, staff_reply(OUTLOOK_BODY))).startswith("2.0.0 OK: passed on")
    gmail, outlook = await inbounds.until(2)
    assert gmail.kind == outlook.kind == "staff"
    assert gmail.conversation == outlook.conversation == CONVERSATION
    assert gmail.text == "Hi Ada,\n\nyour parcel left the warehouse this morning; it arrives tomorrow."
    assert outlook.text == (
        "Hello Ada,\n\nthe refund of 20 EUR is on its way:\n- to your card\n- within 3 days"
    )
    assert gmail.user_name == AGENT


async def test_an_image_attachment_arrives_as_a_data_url(listener: SmtpInbox, inbounds: Inbounds) -> None:
    await send(listener, staff_reply("The label:", images=((PNG, "image/png", "label.png"),)))
    [inbound] = await inbounds.until(1)
    assert inbound.attachments[0].url.startswith("data:image/png;base64,iVBOR")


async def assert_refused(listener: SmtpInbox, message: EmailMessage | bytes, code: int, words: str) -> None:
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send(listener, message)
    assert refused.value.code == code, refused.value
    assert words in refused.value.message


async def assert_only_the_marker_arrives(listener: SmtpInbox, inbounds: Inbounds) -> None:
    await send(listener, staff_reply("the marker"))
    [inbound] = await inbounds.until(1)
    assert inbound.text == "the marker"


async def test_refusals_answer_550_with_the_reason_and_publish_nothing(
    listener: SmtpInbox, inbounds: Inbounds
) -> None:
    forged = staff_reply(to="desk+" + "b" * 40 + "@bot.example.com")
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send(listener, forged, rcpt="desk+" + "b" * 40 + "@bot.example.com")
    assert refused.value.code == 550 and "desk reply address" in refused.value.message
    other_key = staff_reply(to=reply_address(secret="another-key"))
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send(listener, other_key, rcpt=reply_address(secret="another-key"))
    assert refused.value.code == 550
    await assert_refused(listener, staff_reply(sender="mallory@evil.test"), 550, "not support staff")
    await assert_refused(listener, b"\x00\xff not a mail\r\n", 550, "does not parse")
    no_text = EmailMessage()
    no_text["From"], no_text["To"] = AGENT, reply_address()
    no_text.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    await assert_refused(listener, no_text, 550, "no text")
    await assert_only_the_marker_arrives(listener, inbounds)
    reasons = ("bad_token", "not_staff", "unparseable", "no_text")
    assert [refused_count(listener.inbox, r) for r in reasons] == [2, 1, 1, 1]


async def test_a_reply_sent_twice_is_passed_on_once(listener: SmtpInbox, inbounds: Inbounds) -> None:
    reply = staff_reply(message_id="<twice@support.example.com>")
    assert (await send(listener, reply)).startswith("2.0.0 OK: passed on")
    assert (await send(listener, reply)).startswith("2.0.0 OK: passed on before")
    await send(listener, staff_reply("the marker"))
    first, marker = await inbounds.until(2)
    assert first.text.startswith("Hi Ada") and marker.text == "the marker"
    assert len(inbounds.received) == 2
    assert refused_count(listener.inbox, "duplicate") == 1


async def test_a_reply_to_a_conversation_handed_back_is_refused(
    listener: SmtpInbox, inbounds: Inbounds, redis_store: RedisStore
) -> None:
    await hand_back(redis_store)
    await assert_refused(listener, staff_reply(), 550, "no longer handed over")
    await hand_over(redis_store)
    await assert_only_the_marker_arrives(listener, inbounds)
    assert refused_count(listener.inbox, "handed_back") == 1


async def test_a_20_mib_mail_is_refused_with_552(listener: SmtpInbox, inbounds: Inbounds) -> None:
    big = staff_reply("x" * (20 * 1024 * 1024)).as_bytes()
    # aiosmtplib declares the size (SIZE=, the server advertises it): refused at MAIL.
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        await send(listener, big)
    assert refused.value.code == 552
    # A client that does not declare it sends the 20 MiB: refused at the end of DATA, unread.
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=listener.port, timeout=60) as client:
        await client.mail("bounces@support.example.com")
        await client.rcpt(reply_address())
        with pytest.raises(aiosmtplib.SMTPDataError) as too_much:
            await client.data(big)
    assert too_much.value.code == 552
    await assert_only_the_marker_arrives(listener, inbounds)
    assert refused_count(listener.inbox, "too_big") == 2


async def test_451_while_the_bus_is_away_and_250_once_it_is_back() -> None:
    bus, store = MemoryBus(partitions=2), MemoryStore()
    await hand_over(store)
    inbox = Inbox(bus, store, secret_key=SECRET, inbox_address=INBOX_ADDRESS, staff=STAFF)
    server = SmtpInbox(inbox, "127.0.0.1", 0)
    await server.start()
    try:
        reply = staff_reply(message_id="<retry@support.example.com>")
        await bus.close()  # the broker does not confirm
        with pytest.raises(aiosmtplib.SMTPResponseException) as later:
            await send(server, reply)
        assert later.value.code == 451
        await bus.start()
        assert (await send(server, reply)).startswith("2.0.0 OK: passed on")  # not "before": nothing recorded
    finally:
        await server.stop_intake()
        await server.drain(5)

"""Every check of :class:`Inbox` on one mail, on the in-memory bus and store: what is passed on, what is
refused and why (counted, logged, nothing published)."""

from __future__ import annotations

import base64
import logging
from email.message import EmailMessage

import pytest

from gateway.core import desk
from gateway.core.bus.base import Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.metrics import Metrics
from gateway.core.schema import ConversationKey, Inbound, parse_inbound
from gateway.core.store.memory import MemoryStore
from mailer.inbox.outcome import Refusal
from mailer.inbox.service import Inbox, mail_digest
from tests.support.inbox import (
    AGENT,
    CONVERSATION,
    GMAIL_BODY,
    INBOX_ADDRESS,
    OUTLOOK_BODY,
    PNG,
    SECRET,
    STAFF,
    hand_back,
    hand_over,
    reply_address,
    staff_reply,
)

NOW = 1_800_000_000.0


@pytest.fixture
def bus() -> MemoryBus:
    return MemoryBus(partitions=2)


@pytest.fixture
async def store() -> MemoryStore:
    store = MemoryStore()
    await hand_over(store)
    return store


@pytest.fixture
def inbox(bus: MemoryBus, store: MemoryStore) -> Inbox:
    return Inbox(
        bus, store, secret_key=SECRET, inbox_address=INBOX_ADDRESS, staff=STAFF, metrics=Metrics(),
        clock=lambda: NOW, max_image_bytes=1024,
    )  # fmt: skip


def published(bus: MemoryBus) -> list[Inbound]:
    """What was published on INBOUND (no one consumes in these tests: it stays queued)."""
    return [parse_inbound(m.envelope.body) for q in bus.queues(Topic.INBOUND) for m in q.messages]


def refused(inbox: Inbox, reason: str) -> float:
    value = inbox.metrics.registry.get_sample_value("gateway_inbox_refused_total", {"reason": reason})
    return value or 0.0


def accepted(inbox: Inbox) -> float:
    return inbox.metrics.registry.get_sample_value("gateway_inbox_accepted_total") or 0.0


async def test_a_gmail_reply_is_passed_on_as_a_staff_inbound(inbox: Inbox, bus: MemoryBus) -> None:
    mail = staff_reply(GMAIL_BODY, message_id="<r1@support.example.com>")
    outcome = await inbox.handle(mail.as_bytes())
    assert outcome.refusal is None and outcome.done and outcome.smtp_reply.startswith("250 ")
    [inbound] = published(bus)
    assert inbound.id == outcome.inbound_id == "mail:" + mail_digest("r1@support.example.com")
    assert inbound.kind == "staff"
    assert inbound.conversation == CONVERSATION
    assert inbound.text == "Hi Ada,\n\nyour parcel left the warehouse this morning; it arrives tomorrow."
    assert inbound.user_name == AGENT and inbound.sent_at == NOW and inbound.attachments == ()
    [queued] = [m.envelope for q in bus.queues(Topic.INBOUND) for m in q.messages]
    assert queued.key == str(CONVERSATION) and queued.message_id == inbound.id
    assert accepted(inbox) == 1


async def test_an_outlook_reply_is_cut_the_same_way(inbox: Inbox, bus: MemoryBus) -> None:
    await inbox.handle(staff_reply(OUTLOOK_BODY).as_bytes())
    [inbound] = published(bus)
    assert inbound.text.startswith("Hello Ada,") and inbound.text.endswith("- within 3 days")
    assert "Original Message" not in inbound.text and "Best regards" not in inbound.text


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("desk+" + "a" * 40 + "@bot.example.com", "a made-up token"),
        (desk.reply_address("another-key", CONVERSATION, INBOX_ADDRESS), "a token signed with another key"),
        (reply_address().replace("+", "+x"), "a changed token"),
        ("desk@bot.example.com", "the desk's address without a token"),
        (reply_address().replace("bot.example.com", "other.example.com"), "another domain"),
    ],
)
async def test_bad_tokens_are_refused(
    inbox: Inbox, bus: MemoryBus, to: str, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "gateway.inbox")
    mail = staff_reply(to=to, message_id="<forged@support.example.com>")
    outcome = await inbox.handle(mail.as_bytes())
    assert outcome.refusal is Refusal.BAD_TOKEN, why
    assert outcome.smtp_reply.startswith("550 5.1.1 ")
    assert published(bus) == [] and refused(inbox, "bad_token") == 1
    [line] = [r.getMessage() for r in caplog.records]
    assert "forged@support.example.com" in line and AGENT in line and "bad_token" in line


async def test_the_token_may_come_in_the_smtp_envelope_only(inbox: Inbox, bus: MemoryBus) -> None:
    mail = staff_reply(to="support-team@support.example.com")  # a forwarding rule delivered it
    outcome = await inbox.handle(mail.as_bytes(), envelope_recipients=[reply_address()])
    assert outcome.refusal is None and len(published(bus)) == 1


async def test_the_token_of_another_conversation_reaches_that_one(inbox: Inbox, store: MemoryStore) -> None:
    other = ConversationKey("slack", "C1", "U7")
    await hand_over(store, other)
    outcome = await inbox.handle(staff_reply(to=reply_address(other)).as_bytes())
    assert outcome.refusal is None
    [inbound] = published(inbox.bus)  # type: ignore[arg-type]
    assert inbound.conversation == other


@pytest.mark.parametrize(
    "sender", ["mallory@evil.test", "agent@support.example.com.evil.test", "agent@sub.helpdesk.example.org"]
)
async def test_a_sender_outside_staff_is_refused(inbox: Inbox, bus: MemoryBus, sender: str) -> None:
    outcome = await inbox.handle(staff_reply(sender=sender).as_bytes())
    assert outcome.refusal is Refusal.NOT_STAFF and outcome.smtp_reply.startswith("550 5.7.1 ")
    assert published(bus) == [] and refused(inbox, "not_staff") == 1


async def test_a_staff_domain_is_accepted_and_case_does_not_count(inbox: Inbox, bus: MemoryBus) -> None:
    assert (await inbox.handle(staff_reply(sender="Carol@HelpDesk.Example.org").as_bytes())).refusal is None
    assert published(bus)[0].user_name == "carol@helpdesk.example.org"


async def test_no_staff_list_refuses_every_reply(bus: MemoryBus, store: MemoryStore) -> None:
    inbox = Inbox(bus, store, secret_key=SECRET, inbox_address=INBOX_ADDRESS, staff=())
    assert (await inbox.handle(staff_reply().as_bytes())).refusal is Refusal.NOT_STAFF


async def test_a_reply_sent_twice_is_passed_on_once(inbox: Inbox, bus: MemoryBus) -> None:
    raw = staff_reply(message_id="<twice@support.example.com>").as_bytes()
    first, second = await inbox.handle(raw), await inbox.handle(raw)
    assert first.refusal is None
    assert second.refusal is Refusal.DUPLICATE and second.done and second.smtp_reply.startswith("250 ")
    assert len(published(bus)) == 1 and refused(inbox, "duplicate") == 1 and accepted(inbox) == 1


async def test_two_copies_at_once_are_passed_on_once(inbox: Inbox, bus: MemoryBus) -> None:
    import asyncio

    raw = staff_reply(message_id="<race@support.example.com>").as_bytes()
    outcomes = await asyncio.gather(inbox.handle(raw), inbox.handle(raw))
    assert sorted(str(o.refusal) for o in outcomes) == ["None", "duplicate"]
    assert len(published(bus)) == 1


async def test_a_reply_to_a_conversation_handed_back_is_refused(
    inbox: Inbox, bus: MemoryBus, store: MemoryStore
) -> None:
    await hand_back(store)
    outcome = await inbox.handle(staff_reply().as_bytes())
    assert outcome.refusal is Refusal.HANDED_BACK and outcome.smtp_reply.startswith("550 ")
    assert published(bus) == [] and refused(inbox, "handed_back") == 1


async def test_a_mail_over_10_mib_is_refused_unread(bus: MemoryBus, store: MemoryStore) -> None:
    inbox = Inbox(bus, store, secret_key=SECRET, inbox_address=INBOX_ADDRESS, staff=STAFF)
    raw = staff_reply("x" * (10 * 1024 * 1024 + 1)).as_bytes()
    outcome = await inbox.handle(raw)
    assert outcome.refusal is Refusal.TOO_BIG and outcome.smtp_reply.startswith("552 ")
    assert published(bus) == [] and refused(inbox, "too_big") == 1


async def test_a_mail_with_no_text_part_is_refused(inbox: Inbox, bus: MemoryBus) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Message-ID"] = AGENT, reply_address(), "<pdf@support.example.com>"
    mail.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="invoice.pdf")
    outcome = await inbox.handle(mail.as_bytes())
    assert outcome.refusal is Refusal.NO_TEXT and outcome.smtp_reply.startswith("550 ")
    assert published(bus) == [] and refused(inbox, "no_text") == 1


async def test_a_reply_that_is_only_quoted_history_is_refused(inbox: Inbox, bus: MemoryBus) -> None:
    outcome = await inbox.handle(staff_reply("On Tue, 1 Dec 2026, Gateway wrote:\n> hi\n").as_bytes())
    assert outcome.refusal is Refusal.NO_TEXT and published(bus) == []


async def test_an_html_only_reply_is_turned_into_text(inbox: Inbox, bus: MemoryBus) -> None:
    html = (
        "<div dir=ltr>Hi Ada,<br><br>it is <b>fixed</b> now.</div><br>"
        '<div class="gmail_quote"><div class="gmail_attr">On Tue, 1 Dec 2026 at 16:00, Gateway '
        "&lt;desk@bot.example.com&gt; wrote:<br></div><blockquote>Ada: it is broken</blockquote></div>"
    )
    outcome = await inbox.handle(staff_reply(None, html=html).as_bytes())
    assert outcome.refusal is None
    assert published(bus)[0].text == "Hi Ada,\n\nit is fixed now."


async def test_an_image_is_passed_on_as_a_data_url(inbox: Inbox, bus: MemoryBus) -> None:
    big = b"\x89PNG" + b"\0" * 2048  # over this inbox's 1 KiB image limit: dropped with a log line
    images = ((PNG, "image/png", "map.png"), (big, "image/png", "big.png"))
    mail = staff_reply("Here is the map.", images=images)
    assert (await inbox.handle(mail.as_bytes())).refusal is None
    [inbound] = published(bus)
    assert inbound.text == "Here is the map."
    [image] = inbound.attachments
    assert (image.kind, image.mime, image.name) == ("image", "image/png", "map.png")
    assert image.url == "data:image/png;base64," + base64.b64encode(PNG).decode()


async def test_an_image_alone_is_a_reply(inbox: Inbox, bus: MemoryBus) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"] = AGENT, reply_address()
    mail.set_content(PNG, maintype="image", subtype="jpeg", filename="photo.jpg")
    assert (await inbox.handle(mail.as_bytes())).refusal is None
    [inbound] = published(bus)
    assert inbound.text == "" and inbound.attachments[0].mime == "image/jpeg"


async def test_an_unparseable_mail_is_refused(inbox: Inbox, bus: MemoryBus) -> None:
    outcome = await inbox.handle(b"\x00\xff\xfe not a mail\r\n", envelope_sender="x@y.example")
    assert outcome.refusal is Refusal.UNPARSEABLE and outcome.smtp_reply.startswith("550 5.6.0")
    assert published(bus) == [] and refused(inbox, "unparseable") == 1


async def test_the_handback_line_goes_through(inbox: Inbox, bus: MemoryBus) -> None:
    await inbox.handle(staff_reply("Thanks for your patience!\n#bot\n\n-- \nBob\n").as_bytes())
    assert published(bus)[0].text == "Thanks for your patience!\n#bot"

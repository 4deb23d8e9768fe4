"""The parts of the inbox that read one mail: the reply text (both common layouts), HTML to text, the
staff list, and what is taken from the MIME."""

from __future__ import annotations

import pytest

from mailer.inbox.html_text import html_to_text
from mailer.inbox.parse import Unparseable, parse_mail
from mailer.inbox.reply_text import reply_text
from mailer.inbox.staff import StaffList
from tests.support.inbox import GMAIL_BODY, OUTLOOK_BODY, PNG, reply_address, staff_reply


def test_gmail_layout_loses_signature_and_quoted_history() -> None:
    assert reply_text(GMAIL_BODY) == (
        "Hi Ada,\n\nyour parcel left the warehouse this morning; it arrives tomorrow."
    )


def test_outlook_layout_loses_quoted_history_and_the_signature_after_it() -> None:
    text = reply_text(OUTLOOK_BODY)
    assert text == "Hello Ada,\n\nthe refund of 20 EUR is on its way:\n- to your card\n- within 3 days"
    assert "Original Message" not in text and "Best regards" not in text and "I want a refund" not in text


def test_a_closing_above_the_quoted_history_is_cut_too() -> None:
    body = "Done, you will get it Friday.\n\nKind regards,\nBob\n\nOn Tue, 1 Dec 2026, Gateway wrote:\n> hi\n"
    assert reply_text(body) == "Done, you will get it Friday."


@pytest.mark.parametrize(
    "body",
    [
        "Glad I could help!\n#bot\n\n-- \nBob\n\nOn Tue, 1 Dec 2026, Gateway wrote:\n> thanks\n",
        "#bot\n",
        "Glad I could help!\n\n#bot\n\nBest regards,\nBob\n",
    ],
)
def test_the_handback_line_is_kept(body: str) -> None:
    assert "#bot" in reply_text(body).splitlines()


def test_a_plain_answer_is_kept_whole() -> None:
    assert reply_text("Yes, that works.\nSee you then.") == "Yes, that works.\nSee you then."


def test_html_to_text_keeps_lines_and_drops_styles() -> None:
    html = (
        "<html><head><style>p{color:red}</style><title>x</title></head><body>"
        "<div>Hi Ada,</div><div><br></div><p>your parcel&nbsp;left <b>today</b>.</p>"
        "<div class=gmail_quote>On Tue, 1 Dec 2026, Gateway wrote:<blockquote>Ada: where?</blockquote></div>"
        "</body></html>"
    )
    text = html_to_text(html)
    assert text.splitlines()[:4] == ["Hi Ada,", "", "your parcel left today.", ""]
    assert "> Ada: where?" in text and "color" not in text
    assert reply_text(text) == "Hi Ada,\n\nyour parcel left today."


def test_staff_list_matches_addresses_and_domains_case_insensitively() -> None:
    staff = StaffList(["Agent@Support.example.com", "@HelpDesk.example.org"])
    assert staff.allows("agent@support.example.com")
    assert staff.allows("AGENT@SUPPORT.EXAMPLE.COM")
    assert staff.allows("anyone@helpdesk.example.org")
    assert not staff.allows("other@support.example.com")
    assert not staff.allows("x@sub.helpdesk.example.org")  # a domain entry is that domain only
    assert not staff.allows("helpdesk.example.org")
    assert not StaffList([]) and not StaffList([]).allows("agent@support.example.com")


def test_parse_takes_sender_id_recipients_text_and_images() -> None:
    raw = staff_reply(
        "Hi", message_id="<abc@support.example.com>", images=((PNG, "image/png", "map.png"),),
        headers={"Cc": "boss@support.example.com", "Delivered-To": "desk+x@bot.example.com"},
    ).as_bytes()  # fmt: skip
    mail = parse_mail(raw, ["envelope@bot.example.com"])
    assert mail.sender == "agent@support.example.com"
    assert mail.message_id == "abc@support.example.com"
    assert mail.recipients == (
        "envelope@bot.example.com", "desk+x@bot.example.com", reply_address(), "boss@support.example.com",
    )  # fmt: skip
    assert mail.text == "Hi\n" and mail.html is None
    [image] = mail.images
    assert (image.mime, image.name, image.data) == ("image/png", "map.png", PNG)


def test_the_display_name_is_not_the_sender() -> None:
    message = staff_reply("Hi")
    del message["From"]
    message["From"] = '"agent@support.example.com" <mallory@evil.test>'
    assert parse_mail(message.as_bytes()).sender == "mallory@evil.test"


def test_a_mail_without_message_id_gets_one_from_its_bytes() -> None:
    message = staff_reply("Hi")
    del message["Message-ID"]
    raw = message.as_bytes()
    assert parse_mail(raw).message_id == parse_mail(raw).message_id
    assert parse_mail(raw).message_id.startswith("digest:")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage without any header\r\n",
        b"To: desk@bot.example.com\r\nSubject: no sender\r\n\r\nhello\r\n",
        b"From: undisclosed-recipients:;\r\nTo: desk@bot.example.com\r\n\r\nhello\r\n",
        b"From: a@x.example, b@y.example\r\nTo: desk@bot.example.com\r\n\r\nhello\r\n",
    ],
)
def test_unparseable(raw: bytes) -> None:
    with pytest.raises(Unparseable):
        parse_mail(raw)

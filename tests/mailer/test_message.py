"""build_message: headers, bodies, addresses and the limits, on the message as it would be sent."""

from __future__ import annotations

import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.schema import EmailJob
from mailer.message import build_message, clean_header, parse_addresses, parse_sender
from mailer.transport import PermanentMailError

SENDER = "Support Bot <bot@example.com>"
TICKET = (
    "Hi {{@user.x}} <<@message>> <b>bold</b> & \u00e9t\u00e9 \U0001f44b\r\n"
    "second line\nthird\r  trailing  \r\n"
)


def job(**changes: Any) -> EmailJob:
    values: dict[str, Any] = {
        "id": "telegram:update:42/e0",
        "to": ("support@example.com",),
        "subject": "Support question",
        "text": "hello",
        "created_at": 1_700_000_000.0,
    }
    values.update(changes)
    return EmailJob(**values)


def wire(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def reparse(message: EmailMessage) -> EmailMessage:
    parsed: EmailMessage = BytesParser(policy=policy.default).parsebytes(wire(message))
    return parsed


def header_names(raw: bytes) -> list[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if line and not line[0].isspace()]


def test_headers_of_a_plain_job() -> None:
    message = reparse(
        build_message(
            job(to=("Ann <ann@example.com>",), cc=("bob@example.org",), reply_to="carol@example.net"),
            SENDER,
            max_recipients=10,
        )
    )
    assert str(message["From"]) == "Support Bot <bot@example.com>"
    assert str(message["To"]) == "Ann <ann@example.com>"
    assert str(message["Cc"]) == "bob@example.org"
    assert str(message["Reply-To"]) == "carol@example.net"
    assert message["Subject"] == "Support question"
    assert message["Date"].datetime.timestamp() == 1_700_000_000.0
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.com>", message["Message-ID"])
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "hello"


def test_message_id_is_stable_per_job_and_distinct_between_jobs() -> None:
    first = build_message(job(), SENDER, max_recipients=10)["Message-ID"]
    again = build_message(job(subject="other", created_at=5.0), SENDER, max_recipients=10)["Message-ID"]
    other = build_message(job(id="telegram:update:42/e1"), SENDER, max_recipients=10)["Message-ID"]
    assert first == again
    assert first != other


def test_same_job_gives_the_same_bytes_apart_from_the_boundary() -> None:
    one = wire(build_message(job(html="<p>x</p>"), SENDER, max_recipients=10))
    two = wire(build_message(job(html="<p>x</p>"), SENDER, max_recipients=10))
    boundary = re.compile(rb"={15}\d+==")
    assert boundary.sub(b"B", one) == boundary.sub(b"B", two)


def test_utf8_names_and_subject_are_encoded_and_decode_back() -> None:
    subject = "Gr\u00fc\u00dfe von Zo\u00eb \U0001f44b \u2014 " + "long " * 30
    message = build_message(
        job(to=("Zo\u00eb \u00dcn\u00efcode <zoe@example.com>",), subject=subject), SENDER, max_recipients=10
    )
    raw = wire(message)
    assert raw.isascii()
    assert b"=?utf-8?" in raw
    parsed = reparse(message)
    assert parsed["Subject"] == subject.strip()
    assert parsed["To"].addresses[0].display_name == "Zo\u00eb \u00dcn\u00efcode"


def test_international_domains_are_idna_encoded() -> None:
    message = reparse(build_message(job(to=("zoe@b\u00fccher.example",)), SENDER, max_recipients=10))
    assert message["To"].addresses[0].domain == "xn--bcher-kva.example"


def test_text_body_arrives_byte_for_byte() -> None:
    parsed = reparse(build_message(job(text=TICKET), SENDER, max_recipients=10))
    assert parsed.get_content() == TICKET
    assert parsed.get_payload(decode=True) == TICKET.encode()


def test_html_becomes_an_alternative_carried_as_is() -> None:
    html = "<p>Question from <b>Ann</b>: &lt;script&gt; {{@user.x}} \U0001f44b</p>\n"
    parsed = reparse(build_message(job(text=TICKET, html=html), SENDER, max_recipients=10))
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    text_part = parsed.get_body(("plain",))
    html_part = parsed.get_body(("html",))
    assert text_part is not None and html_part is not None
    assert text_part.get_content() == TICKET
    assert html_part.get_content() == html


@pytest.mark.parametrize(
    "field",
    ["subject", "reply_to"],
)
@pytest.mark.parametrize(
    "payload",
    [
        "x@example.com\r\nBcc: evil@attacker.example",
        "x@example.com\nBcc: evil@attacker.example",
        "x@example.com\rBcc: evil@attacker.example",
        "x@example.com\u2028Bcc: evil@attacker.example",
        "x@example.com\r\n\r\nInjected body",
    ],
)
def test_crlf_in_subject_or_reply_to_cannot_create_headers(field: str, payload: str) -> None:
    raw = wire(build_message(job(**{field: payload}), SENDER, max_recipients=10))
    names = header_names(raw)
    assert "Bcc" not in names
    assert len(names) == len(set(names))
    assert b"evil@attacker.example" not in raw.split(b"\r\n\r\n", 1)[1]
    if field == "reply_to":
        assert "Reply-To" not in names  # not one valid address: dropped, not mangled into one


def test_crlf_in_a_recipient_cannot_add_a_recipient() -> None:
    message = build_message(
        job(to=("ann@example.com", "bob@example.com\r\nBcc: evil@attacker.example")),
        SENDER,
        max_recipients=10,
    )
    assert [a.addr_spec for a in reparse(message)["To"].addresses] == ["ann@example.com"]
    assert b"evil" not in wire(message)


def test_invalid_recipients_are_dropped_and_none_valid_is_permanent() -> None:
    message = build_message(job(to=("not an address", "ann@example.com", "a@b@c")), SENDER, max_recipients=10)
    assert [a.addr_spec for a in reparse(message)["To"].addresses] == ["ann@example.com"]
    with pytest.raises(PermanentMailError, match="invalid recipient"):
        build_message(job(to=("not an address", "@example.com", "x@-bad-.com")), SENDER, max_recipients=10)
    with pytest.raises(PermanentMailError, match="invalid recipient"):
        build_message(job(to=()), SENDER, max_recipients=10)


def test_too_many_recipients_is_permanent() -> None:
    to = tuple(f"user{i}@example.com" for i in range(4))
    cc = ("cc1@example.com", "cc2@example.com")
    assert build_message(job(to=to, cc=cc), SENDER, max_recipients=6)
    with pytest.raises(PermanentMailError, match="too many recipients: 6"):
        build_message(job(to=to, cc=cc), SENDER, max_recipients=5)


def test_comma_separated_fields_and_duplicates() -> None:
    message = reparse(
        build_message(
            job(
                to=('"Doe, Ann" <ann@example.com>, bob@example.com',),
                cc=("ANN@example.com, carol@example.com",),
            ),
            SENDER,
            max_recipients=3,
        )
    )
    assert [a.addr_spec for a in message["To"].addresses] == ["ann@example.com", "bob@example.com"]
    assert message["To"].addresses[0].display_name == "Doe, Ann"
    assert [a.addr_spec for a in message["Cc"].addresses] == ["carol@example.com"]


@pytest.mark.parametrize(
    "text",
    [
        "ann@example.com",
        "Ann <ann@example.com>",
        '"A \\"q\\" B" <ann@example.com>',
        "ann@localhost",
        " ann@example.com ",
    ],
)
def test_valid_addresses(text: str) -> None:
    valid, rejected = parse_addresses([text])
    assert len(valid) == 1 and rejected == []


@pytest.mark.parametrize(
    "text",
    ["ann", "ann@", "@example.com", "a@b@c", "a..b@example.com", "ann@exa mple.com", "ann@-x.com",
     "a b@example.com", "ann@example.com extra", "x <ann@example.com> y", 'bad"quote <ann@example.com>',
     "ann@example.com;bob@example.com", "ann@[127.0.0.1]", "\u00e4nn@example.com", "a" * 65 + "@example.com"],
)  # fmt: skip
def test_obviously_invalid_addresses(text: str) -> None:
    valid, rejected = parse_addresses([text])
    assert valid == [] and rejected


def test_sender_must_be_one_valid_address() -> None:
    assert parse_sender("gateway@localhost").addr_spec == "gateway@localhost"
    for bad in ("", "nobody", "a@example.com, b@example.com"):
        with pytest.raises(ValueError):
            parse_sender(bad)


@settings(max_examples=150, deadline=None)
@given(subject=st.text(), reply_to=st.text(max_size=60))
def test_no_header_value_ever_breaks_the_header_block(subject: str, reply_to: str) -> None:
    raw = wire(build_message(job(subject=subject, reply_to=reply_to), SENDER, max_recipients=10))
    names = header_names(raw)
    assert names[:3] == ["From", "To", "Subject"] or names[:4] == ["From", "To", "Reply-To", "Subject"]
    assert len(names) == len(set(names))
    assert reparse(build_message(job(subject=subject), SENDER, max_recipients=10))["Subject"] == clean_header(
        subject
    )


@settings(max_examples=150, deadline=None)
@given(text=st.text(), html=st.text())
def test_bodies_round_trip_exactly(text: str, html: str) -> None:
    parsed = reparse(build_message(job(text=text, html=html), SENDER, max_recipients=10))
    text_part, html_part = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert text_part is not None and html_part is not None
    assert text_part.get_content() == text
    assert html_part.get_content() == html


def test_an_unusable_creation_time_still_gives_a_date() -> None:
    for created_at in (1e20, float("nan"), -1e18):
        assert reparse(build_message(job(created_at=created_at), SENDER, max_recipients=10))["Date"].datetime


@pytest.mark.parametrize(
    "subject",
    [
        "x" * 60 + " ünïcödé " * 8,  # spaces between two encoded-words were lost
        "Re: [SOS-1495488] Commande et livraison - Demande de retour - bibijolie - 251210-AABBCC - Abo "
        "actualités digitales 20 semaines d\u2019abonnement à 24 heures, Bilan, Tribune de Genève et "
        "tous les titres Tamedia",  # CPython gh-144156: glued encoded-words, refused by some servers
        "0000\x80\x80\x80\x80\x80\x80\x80\x80𐀀𐀀𐀀𐀀𐀀  \x80",  # found by hypothesis
    ],
)
def test_a_long_non_ascii_subject_reads_back_exactly_and_folds_cleanly(subject: str) -> None:
    raw = wire(build_message(job(subject=subject), SENDER, max_recipients=10))
    assert reparse(build_message(job(subject=subject), SENDER, max_recipients=10))["Subject"] == clean_header(
        subject
    )
    header = raw.split(b"\r\n\r\n", 1)[0]
    assert b"?==?" not in header, "two encoded-words glued together"
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))

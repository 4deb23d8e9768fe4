"""One raw mail → :class:`StaffMail`: who sent it, its id, the addresses that may carry a desk token, its
text, HTML and images. Only facts about the mail; the checks are :mod:`mailer.inbox.service`'s."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses

# Where a reply address shows, most trusted first: the SMTP envelope, then what the receiving servers
# wrote (a forwarding rule keeps the original recipient there), then what the sender wrote.
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "To", "Cc")


class Unparseable(ValueError):
    """A mail that cannot be read as a staff reply (not MIME, no usable From)."""


@dataclass(frozen=True, slots=True)
class MailImage:
    """An image part, inline or attached, as its bytes."""

    mime: str
    name: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class StaffMail:
    """What the inbox needs of a mail. ``sender`` is the From address, lower case; ``message_id`` the
    Message-ID without its angle brackets (a digest of the mail when it has none, so that the same mail
    delivered twice still has one id); ``recipients`` every address that may carry the token."""

    sender: str
    message_id: str
    recipients: tuple[str, ...]
    text: str | None
    html: str | None
    images: tuple[MailImage, ...]


_parser = BytesParser(policy=policy.default)


def parse_mail(raw: bytes, envelope_recipients: Iterable[str] = ()) -> StaffMail:
    """Read ``raw`` (the bytes of one mail); :class:`Unparseable` when there is no staff reply to read."""
    try:
        message = _parser.parsebytes(raw)
        assert isinstance(message, EmailMessage)
        sender = _sender(message)
        message_id = _message_id(message, raw)
        recipients = tuple(_unique([*envelope_recipients, *_header_addresses(message)]))
        text, html = _body(message, "plain"), _body(message, "html")
        images = tuple(_images(message))
    except Unparseable:
        raise
    except Exception as exc:  # the email package raises many kinds on malformed input
        raise Unparseable(f"the mail does not parse: {exc!r}") from None
    return StaffMail(sender, message_id, recipients, text, html, images)


def _sender(message: EmailMessage) -> str:
    if message.defects and not message.keys():
        raise Unparseable("no headers")
    header = message.get("From")
    if header is None:
        raise Unparseable("no From header")
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    if len(addresses) != 1:
        raise Unparseable(f"From names {len(addresses)} addresses: {str(header)!r}")
    address: Address = addresses[0]
    if not address.username or not address.domain:
        raise Unparseable(f"From is not an address: {str(header)!r}")
    return f"{address.username}@{address.domain}".lower()


def _message_id(message: EmailMessage, raw: bytes) -> str:
    found = str(message.get("Message-ID") or "").strip().strip("<>").strip()
    if found:
        return found
    return "digest:" + hashlib.blake2b(raw, digest_size=16).hexdigest()


def _header_addresses(message: EmailMessage) -> Iterator[str]:
    for name in RECIPIENT_HEADERS:
        values = [str(value) for value in message.get_all(name, [])]
        for _, address in getaddresses(values):
            if "@" in address:
                yield address


def _unique(addresses: list[str]) -> Iterator[str]:
    seen: set[str] = set()
    for address in addresses:
        cleaned = address.strip().strip("<>")
        if cleaned and cleaned.lower() not in seen:
            seen.add(cleaned.lower())
            yield cleaned


def _body(message: EmailMessage, subtype: str) -> str | None:
    """The message's text/<subtype> body (not an attachment), decoded; None when it has none."""
    part = message.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != f"text/{subtype}":
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def _images(message: EmailMessage) -> Iterator[MailImage]:
    for part in message.walk():
        if part.get_content_maintype() != "image" or part.is_multipart():
            continue
        data = part.get_payload(decode=True)
        if isinstance(data, bytes) and data:
            yield MailImage(part.get_content_type(), part.get_filename(), data)

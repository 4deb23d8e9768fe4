"""Turn an :class:`~gateway.core.schema.EmailJob` into the exact email that goes on the wire.

The same job always gives the same message (Date from ``created_at``, Message-ID from ``id``), so a
retried or replayed job is recognisable downstream.

Bodies are UTF-8 in base64: a ticket that quotes a user's message must arrive exactly as rendered —
CR, LF, trailing spaces, ``=``, ``{{...}}`` and emoji included — and 8bit or quoted-printable bodies
get their line ends rewritten on the way. Header values never carry control characters, and addresses
are rebuilt from their validated parts, so no job can add a header or a recipient of its own.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email import utils as email_utils
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage

from gateway.core.schema import EmailJob
from mailer.transport import PermanentMailError

log = logging.getLogger(__name__)

# Characters that end or bend a header line: C0 controls (CR, LF, tab...), DEL, and the Unicode line
# breaks that str.splitlines() honours (the email package refuses a header value containing any).
_HEADER_UNSAFE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_NAME_ADDR = re.compile(r"(?P<name>[^<>]*?)\s*<\s*(?P<addr>[^<>\s]+)\s*>")
_BARE_ADDR = re.compile(r"(?P<addr>[^<>\s\"]+)")


def clean_header(value: str) -> str:
    """One header value on one line: every run of control or line-break characters becomes a space."""
    return _HEADER_UNSAFE.sub(" ", value).strip()


def set_text_header(message: EmailMessage, name: str, value: str) -> None:
    """Set an unstructured header; a non-ASCII one as RFC 2047 encoded-words written here.

    Python's own folding (3.11, CPython gh-144156) puts whitespace between two encoded-words, where a
    reader drops it: a long subject lost its spaces, or had two encoded-words glued together, which
    some servers refuse. Every character of the value, spaces included, goes inside the encoded-words
    written here, so it reads back exactly.
    """
    if value.isascii():
        message[name] = value
        return
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\n")
    message.set_raw(name, encoded)


def _ascii_domain(domain: str) -> str | None:
    """The domain in ASCII (IDNA for international names), or None when it is not a host name."""
    domain = domain.rstrip(".")
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return None
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return ascii_domain.lower()


def parse_address(name: str, addr_spec: str) -> Address | None:
    """A mailbox from a display name and an addr-spec, or None when the address is obviously invalid.

    Accepted: an ASCII dot-atom local part (at most 64 characters) ``@`` a host name (international
    names are IDNA-encoded). Quoted local parts, address literals and UTF-8 local parts are refused:
    they are rare in practice and many servers refuse them anyway.
    """
    local, at, domain = addr_spec.strip().rpartition("@")
    if not at or len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        return None
    ascii_domain = _ascii_domain(domain)
    if ascii_domain is None:
        return None
    return Address(display_name=clean_header(name), username=local, domain=ascii_domain)


def _split_list(field: str) -> list[str]:
    """Split an address list on the commas that are outside quotes and angle brackets."""
    items: list[str] = []
    current: list[str] = []
    quoted = angled = escaped = False
    for char in field:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"' and not angled:
            quoted = not quoted
        elif char == "<" and not quoted:
            angled = True
        elif char == ">" and not quoted:
            angled = False
        elif char == "," and not quoted and not angled:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _mailbox(item: str) -> Address | None:
    """Exactly one mailbox, ``addr@host`` or ``Name <addr@host>`` (name optionally quoted), else None.

    Stricter than ``email.utils.getaddresses`` on purpose: that one reads ``a@b.c Bcc: d@e.f`` as two
    recipients, which would let text pasted into an address template add a recipient.
    """
    match = _NAME_ADDR.fullmatch(item) or _BARE_ADDR.fullmatch(item)
    if match is None:
        return None
    name = match.groupdict().get("name") or ""
    if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    elif '"' in name:
        return None
    return parse_address(name, match.group("addr"))


def parse_addresses(fields: Iterable[str]) -> tuple[list[Address], list[str]]:
    """Parse address fields (each may hold several, comma-separated): (valid mailboxes, rejected).

    Duplicates (ignoring case) are kept once, in first-seen order.
    """
    valid: list[Address] = []
    rejected: list[str] = []
    seen: set[str] = set()
    for field in fields:
        for item in _split_list(clean_header(field)):
            address = _mailbox(item)
            if address is None:
                rejected.append(item)
            elif address.addr_spec.lower() not in seen:
                seen.add(address.addr_spec.lower())
                valid.append(address)
    return valid, rejected


def parse_sender(mail_from: str) -> Address:
    """The configured sender (``GATEWAY_MAIL_FROM``) as one mailbox; ValueError when it is not one."""
    valid, rejected = parse_addresses([mail_from])
    if len(valid) != 1 or rejected:
        raise ValueError(f"not a single valid sender address: {mail_from!r}")
    return valid[0]


def message_id(job_id: str, domain: str) -> str:
    """A valid, stable msg-id for a job: the same job id always gives the same Message-ID."""
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def _written_at(created_at: float) -> datetime:
    """The job's creation time (so a retried job keeps its Date); now, if that is not a usable time."""
    try:
        return datetime.fromtimestamp(created_at, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.now(UTC)


def _body(message: EmailMessage, text: str, subtype: str) -> None:
    message.set_content(text.encode(), "text", subtype, cte="base64", params={"charset": "utf-8"})


def build_message(job: EmailJob, mail_from: str, *, max_recipients: int) -> EmailMessage:
    """The email for ``job``; PermanentMailError when it has no valid recipient or too many."""
    sender = parse_sender(mail_from)
    to, bad_to = parse_addresses(job.to)
    cc, bad_cc = parse_addresses(job.cc)
    cc = [address for address in cc if address.addr_spec.lower() not in {a.addr_spec.lower() for a in to}]
    if bad_to or bad_cc:
        log.warning("email %s: dropped invalid recipients %s", job.id, ", ".join(map(repr, bad_to + bad_cc)))
    if not to and not cc:
        shown = ", ".join(repr(a) for a in (*job.to, *job.cc)) or "none given"
        raise PermanentMailError(f"invalid recipient: no valid address among {shown}")
    if len(to) + len(cc) > max_recipients:
        raise PermanentMailError(f"too many recipients: {len(to) + len(cc)} (at most {max_recipients})")

    message = EmailMessage()
    message["From"] = sender
    if to:
        message["To"] = to
    if cc:
        message["Cc"] = cc
    if job.reply_to is not None:
        reply_to, bad_reply_to = parse_addresses([job.reply_to])
        if bad_reply_to:
            log.warning("email %s: dropped invalid Reply-To %r", job.id, job.reply_to)
        if reply_to:
            message["Reply-To"] = reply_to
    set_text_header(message, "Subject", clean_header(job.subject))
    message["Date"] = email_utils.format_datetime(_written_at(job.created_at))
    message["Message-ID"] = message_id(job.id, sender.domain)
    if job.thread is not None:  # a ticket's later message: in the thread of the one that opened it
        opened = message_id(job.thread, sender.domain)
        message["In-Reply-To"] = opened
        message["References"] = opened
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: vacation responders must not answer
    message["X-Gateway-Job"] = clean_header(job.id)

    _body(message, job.text, "plain")
    if job.html is not None:
        alternative = EmailMessage()
        _body(alternative, job.html, "html")
        message.make_alternative()
        del alternative["MIME-Version"]
        message.attach(alternative)
    return message

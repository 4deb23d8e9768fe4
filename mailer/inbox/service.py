"""The inbox's checks and its one effect: a staff reply published on the user's conversation, once.

One mail, whatever brought it (SMTP or IMAP), goes through :meth:`Inbox.handle`: refused when it is over
10 MiB, does not parse, is not from staff, names no conversation by a token that verifies, has nothing to
pass on, or is about a conversation no longer handed over; answered as done without a second publish when
its Message-ID was passed on before. Otherwise its new text (quoted history and signature cut) and its
images (each up to 5 MiB, as ``data:`` URLs) go out as one ``Inbound(kind="staff")`` with a deterministic
id, published with confirm; only then is the Message-ID recorded and the mail acknowledged. A crash in
between publishes the same id again, which the worker drops as committed.

A refusal is counted (``gateway_inbox_refused{reason}``) and logged in one line with sender, Message-ID
and reason; nothing is published. A broker or store that is away raises :class:`Unavailable`: the mail is
not acknowledged (SMTP 451, IMAP: left unseen) and comes again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Callable, Iterable

from opentelemetry.trace import SpanKind

from gateway.core import desk, tracing
from gateway.core.bus.base import Bus, Envelope, Topic
from gateway.core.faults import FaultPoints
from gateway.core.metrics import Metrics
from gateway.core.schema import Attachment, ConversationKey, Inbound
from gateway.core.store.base import Store
from mailer.inbox.html_text import html_to_text
from mailer.inbox.outcome import Outcome, Refusal
from mailer.inbox.parse import MailImage, StaffMail, Unparseable, parse_mail
from mailer.inbox.reply_text import reply_text
from mailer.inbox.staff import StaffList

log = logging.getLogger("gateway.inbox")

MAX_MAIL_BYTES = 10 * 1024 * 1024
MAX_IMAGE_BYTES = 5 * 1024 * 1024
SEEN_NAMESPACE = "inbox-mail"  # Message-IDs passed on (their digests)
LOAD_ID = "inbox"  # the message id the inbox's store.load asks about (it never commits one)


def mail_digest(message_id: str) -> str:
    return hashlib.blake2b(message_id.encode(), digest_size=16).hexdigest()


class Inbox:
    """Checks and passes on staff replies (see the module docstring)."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        *,
        secret_key: str,
        inbox_address: str,
        staff: Iterable[str],
        dedup_ttl: float = 86400.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        max_mail_bytes: int = MAX_MAIL_BYTES,
        max_image_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        self.bus = bus
        self.store = store
        self.secret_key = secret_key
        self.inbox_address = inbox_address
        self.staff = StaffList(staff)
        self.dedup_ttl = dedup_ttl
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.max_mail_bytes = max_mail_bytes
        self.max_image_bytes = max_image_bytes
        self._faults = FaultPoints()
        self._in_flight: dict[str, asyncio.Lock] = {}

    async def handle(
        self, raw: bytes, envelope_recipients: Iterable[str] = (), envelope_sender: str | None = None
    ) -> Outcome:
        """Check and pass on one mail; the outcome says what to answer. :class:`Unavailable` when the
        broker or the store is away (nothing recorded: the same mail may come again)."""
        with tracing.span("inbox mail", kind=SpanKind.SERVER) as span:
            outcome = await self._handle(raw, tuple(envelope_recipients), envelope_sender)
            if span is not None:
                span.set_attribute("gateway.outcome", outcome.refusal or "accepted")
            return outcome

    def refuse_too_big(self, size: int | None, envelope_sender: str | None) -> Outcome:
        """Count and log a mail refused for its size before it was read (the SMTP server's 552)."""
        shown = f"{size} bytes" if size is not None else "more bytes than the limit"
        return self._refuse(Refusal.TOO_BIG, envelope_sender or "-", "-", f"{shown} > {self.max_mail_bytes}")

    async def _handle(self, raw: bytes, recipients: tuple[str, ...], envelope_sender: str | None) -> Outcome:
        if len(raw) > self.max_mail_bytes:
            return self.refuse_too_big(len(raw), envelope_sender)
        try:
            mail = parse_mail(raw, recipients)
        except Unparseable as exc:
            return self._refuse(Refusal.UNPARSEABLE, envelope_sender or "-", "-", str(exc))
        if not self.staff.allows(mail.sender):
            return self._refuse(Refusal.NOT_STAFF, mail.sender, mail.message_id, "not in GATEWAY_STAFF")
        conversation = self._conversation(mail)
        if isinstance(conversation, str):
            return self._refuse(Refusal.BAD_TOKEN, mail.sender, mail.message_id, conversation)
        text = self._text(mail)
        attachments = self._attachments(mail)
        if not text and not attachments:
            return self._refuse(Refusal.NO_TEXT, mail.sender, mail.message_id, "no text and no image")
        digest = mail_digest(mail.message_id)
        # Two copies of one mail at once in this process (an SMTP retry while the first is in hand): the
        # second waits, then finds the first recorded.
        lock = self._in_flight.setdefault(digest, asyncio.Lock())
        try:
            async with lock:
                return await self._pass_on(mail, digest, conversation, text, attachments)
        finally:
            if not lock.locked() and self._in_flight.get(digest) is lock:
                del self._in_flight[digest]

    async def _pass_on(
        self,
        mail: StaffMail,
        digest: str,
        conversation: ConversationKey,
        text: str,
        attachments: tuple[Attachment, ...],
    ) -> Outcome:
        if await self.store.is_seen(SEEN_NAMESPACE, digest):
            self.metrics.inbox_refused.labels(Refusal.DUPLICATE.value).inc()
            log.info("inbox: mail %s from %s was passed on before; not again", mail.message_id, mail.sender)
            return Outcome(Refusal.DUPLICATE, "passed on before")
        snapshot = await self.store.load(conversation, LOAD_ID, records=(desk.HANDOFF_RECORD,))
        if desk.HANDOFF_RECORD not in snapshot.records:
            return self._refuse(
                Refusal.HANDED_BACK, mail.sender, mail.message_id, f"{conversation} is not handed over"
            )
        inbound = Inbound(
            kind="staff",
            id=f"mail:{digest}",
            channel=conversation.channel,
            chat=conversation.chat,
            user=conversation.user,
            text=text,
            attachments=attachments,
            user_name=mail.sender,
            sent_at=self.clock(),
        )
        envelope = Envelope(
            body=inbound.to_json(), message_id=inbound.id, key=str(conversation), headers=tracing.carried()
        )
        await self.bus.publish(Topic.INBOUND, [envelope])
        self._faults.reach("after_publish", inbound.id)  # tests: killed before the record and the 250
        await self.store.mark_seen(SEEN_NAMESPACE, digest, self.dedup_ttl)
        self.metrics.inbox_accepted.inc()
        log.info(
            "inbox: reply %s from %s passed on to %s as %s (%d image(s))",
            mail.message_id, mail.sender, conversation, inbound.id, len(attachments),
        )  # fmt: skip
        return Outcome(inbound_id=inbound.id)

    def _conversation(self, mail: StaffMail) -> ConversationKey | str:
        """The conversation the first verifying token names, or why there is none."""
        tokens = [
            token
            for address in mail.recipients
            if (token := desk.token_of_address(address, self.inbox_address)) is not None
        ]
        if not tokens:
            return f"no recipient of the form {self._reply_form()}"
        for token in tokens:
            try:
                return desk.verify(self.secret_key, token)
            except desk.BadToken:
                continue
        return f"{len(tokens)} token(s), none verifies"

    def _reply_form(self) -> str:
        local, _, domain = self.inbox_address.rpartition("@")
        return f"{local}+<token>@{domain}"

    @staticmethod
    def _text(mail: StaffMail) -> str:
        if mail.text is not None:
            return reply_text(mail.text)
        if mail.html is not None:
            return reply_text(html_to_text(mail.html))
        return ""

    def _attachments(self, mail: StaffMail) -> tuple[Attachment, ...]:
        return tuple(self._image(mail, image) for image in mail.images if self._fits(mail, image))

    def _fits(self, mail: StaffMail, image: MailImage) -> bool:
        if len(image.data) <= self.max_image_bytes:
            return True
        log.warning(
            "inbox: image %r (%s, %d bytes) of mail %s from %s dropped: over %d bytes",
            image.name, image.mime, len(image.data), mail.message_id, mail.sender, self.max_image_bytes,
        )  # fmt: skip
        return False

    @staticmethod
    def _image(mail: StaffMail, image: MailImage) -> Attachment:
        url = f"data:{image.mime};base64,{base64.b64encode(image.data).decode()}"
        return Attachment(kind="image", url=url, mime=image.mime, name=image.name)

    def _refuse(self, reason: Refusal, sender: str, message_id: str, detail: str) -> Outcome:
        self.metrics.inbox_refused.labels(reason.value).inc()
        log.warning("inbox: refused mail %s from %s: %s (%s)", message_id, sender, reason.value, detail)
        return Outcome(reason, detail)

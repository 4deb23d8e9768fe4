"""The inbox's SMTP listener (aiosmtpd): what an MX or a forwarding rule delivers staff replies to.

Answers at the end of DATA with what became of the mail: 250 only once it is passed on (published with
confirm) or was passed on before; 550 with the reason for a refusal; 451 while the broker or the store is
away, so that the sending server tries again later; 552 for a mail over 10 MiB (aiosmtpd's own
``data_size_limit``: it also advertises ``SIZE``, so a client that declares the size is refused at MAIL).

The aiosmtpd protocol is served from the process's own event loop (``loop.create_server``) rather than
by aiosmtpd's ``Controller``, which runs a loop of its own in a thread: the handler publishes on the
process's bus and store, which belong to this loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.core.errors import Unavailable
from mailer.inbox.service import MAX_MAIL_BYTES, Inbox

log = logging.getLogger("gateway.inbox")

TEMPORARY = "451 4.3.0 The inbox cannot take mail now; try again later"


class _InboxSMTP(SMTP):
    """aiosmtpd's protocol, telling the handler of the 552 it answers by itself (the handler is not
    called for a mail over the size limit), so that those refusals are counted and logged too."""

    async def push(self, status: Any) -> None:
        text = status.decode(errors="replace") if isinstance(status, bytes) else str(status)
        if text.startswith("552"):
            sender = self.envelope.mail_from if self.envelope is not None else None
            self.event_handler.too_big(sender)
        await super().push(status)


class InboxHandler:
    """The aiosmtpd handler: one mail at the end of DATA through :class:`Inbox`."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.in_flight += 1
        self._idle.clear()
        try:
            raw = envelope.original_content or b""
            outcome = await self.inbox.handle(raw, envelope.rcpt_tos, envelope.mail_from)
            return outcome.smtp_reply
        except Unavailable as exc:
            log.warning("inbox: mail from %s not taken now (451): %s", envelope.mail_from, exc)
            return TEMPORARY
        except Exception:
            log.exception("inbox: mail from %s not taken (451): unexpected error", envelope.mail_from)
            return TEMPORARY
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    def too_big(self, sender: str | None) -> None:
        self.inbox.refuse_too_big(None, sender)

    async def wait_idle(self) -> None:
        await self._idle.wait()


class SmtpInbox:
    """Listen on ``host:port`` (port 0: a free one, then in :attr:`port`) until :meth:`stop_intake`."""

    def __init__(self, inbox: Inbox, host: str, port: int, *, data_size_limit: int = MAX_MAIL_BYTES) -> None:
        self.inbox = inbox
        self.host = host
        self.port = port
        self.data_size_limit = data_size_limit
        self.handler = InboxHandler(inbox)
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()  # open connections, for drain()
        _, _, self._hostname = inbox.inbox_address.rpartition("@")

    def _protocol(self) -> SMTP:
        smtp = _InboxSMTP(
            self.handler,
            data_size_limit=self.data_size_limit,
            enable_SMTPUTF8=True,
            hostname=self._hostname,
            ident="gateway inbox",
            loop=asyncio.get_running_loop(),
        )
        self._sessions.add(smtp)
        return smtp

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop_intake(self) -> None:
        """Stop listening; connections already open finish their current mail (see :meth:`drain`)."""
        if self._server is not None:
            self._server.close()

    async def drain(self, timeout: float) -> None:
        """Let mails in hand be answered (within ``timeout``), then hang up on every connection."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.handler.wait_idle(), timeout)
        for smtp in list(self._sessions):
            if smtp.transport is not None:
                smtp.transport.close()
        self._sessions.clear()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

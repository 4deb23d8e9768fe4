"""SMTP delivery on aiosmtplib, with the connection kept open across a burst of emails.

Opening an SMTP session costs a TCP (and often a TLS) handshake, EHLO and AUTH; a burst of emails
reuses one or two open sessions instead. Each session serves one email at a time. A session the server
has closed, or that failed mid-command, is replaced on the next email; one that sat idle for a while is
probed with NOOP first, since servers drop idle clients without telling them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from email.message import EmailMessage

import aiosmtplib

from gateway.core.settings import SmtpSettings
from mailer.transport import MailTransport, PermanentMailError, TemporaryMailError

log = logging.getLogger(__name__)


def _reply(code: int, text: str) -> str:
    return f"{code} {' '.join(text.split())}".strip()


def _by_code(code: int, text: str) -> TemporaryMailError | PermanentMailError:
    """4xx (and anything not 5xx) is temporary; 5xx is permanent."""
    kind = PermanentMailError if 500 <= code < 600 else TemporaryMailError
    return kind(text)


def classify(exc: Exception) -> TemporaryMailError | PermanentMailError:
    """Map an aiosmtplib (or socket) failure onto the transport's two kinds, keeping the reply text."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        replies = "; ".join(f"{r.recipient}: {_reply(r.code, r.message)}" for r in exc.recipients)
        temporary = any(not 500 <= r.code < 600 for r in exc.recipients)
        kind = TemporaryMailError if temporary else PermanentMailError
        return kind(f"all recipients refused: {replies}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, _reply(exc.code, exc.message))
    if isinstance(exc, TimeoutError):  # includes aiosmtplib's connect and read timeouts
        return TemporaryMailError(f"timed out: {exc}")
    if isinstance(exc, ConnectionError | OSError):  # includes SMTPServerDisconnected, SMTPConnectError
        return TemporaryMailError(f"connection failed: {exc}")
    if isinstance(exc, aiosmtplib.SMTPException | ValueError):  # no STARTTLS/AUTH/SMTPUTF8, bad address
        return PermanentMailError(str(exc))
    return TemporaryMailError(f"{type(exc).__name__}: {exc}")


class _Session:
    """One SMTP connection, opened on demand and replaced when it breaks."""

    def __init__(self, transport: SmtpTransport) -> None:
        self._transport = transport
        self._client: aiosmtplib.SMTP | None = None
        self._last_used = 0.0

    async def send(self, message: EmailMessage) -> None:
        try:
            client = await self._ready()
        except BaseException:  # failed or cancelled while connecting or probing: start over next time
            self.drop()
            raise
        try:
            refused, _ = await client.send_message(message)
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused) as exc:
            # The envelope was reset (RSET) and the session is still usable, unless the server said 421:
            # it is closing the channel (RFC 5321 3.8), whichever command that answered.
            if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421:
                self.drop()
            self._last_used = time.monotonic()
            raise classify(exc) from exc
        except Exception as exc:
            # Whatever happened mid-command, the session's state is unknown: start over next time.
            self.drop()
            raise classify(exc) from exc
        except BaseException:  # cancelled mid-command: same as above
            self.drop()
            raise
        self._last_used = time.monotonic()
        if refused:
            # Delivered to the others already, so retrying would duplicate it for them: log and move on.
            log.warning(
                "email %s: some recipients refused: %s",
                message.get("Message-ID", ""),
                "; ".join(f"{rcpt}: {_reply(r.code, r.message)}" for rcpt, r in refused.items()),
            )

    async def _ready(self) -> aiosmtplib.SMTP:
        client = self._client
        if client is not None and client.is_connected:
            if time.monotonic() - self._last_used < self._transport.idle_check:
                return client
            try:
                await client.noop()
                return client
            except Exception:
                log.debug("idle SMTP session is gone; opening a new one")
                self.drop()
        elif client is not None:
            self.drop()
        client = await self._transport.open_client()
        self._client = client
        self._last_used = time.monotonic()
        return client

    def drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def quit(self, timeout: float) -> None:
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit(timeout=timeout)
        except Exception as exc:
            log.debug("SMTP QUIT failed: %s", exc)
        finally:
            client.close()


class SmtpTransport(MailTransport):
    """Deliver over SMTP: plain, STARTTLS (``?starttls=true``) or implicit TLS (``smtps://``).

    ``pool_size`` sessions serve concurrent sends (each one email at a time); senders beyond that wait
    for a free session. ``connections_opened`` counts the sessions opened so far.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        tls_context: ssl.SSLContext | None = None,
        pool_size: int = 1,
        idle_check: float = 5.0,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.settings = settings
        self.idle_check = idle_check
        self.connections_opened = 0
        self._tls_context = tls_context
        self._local_hostname: str | None = None
        self._sessions = [_Session(self) for _ in range(pool_size)]
        self._free: asyncio.Queue[_Session] = asyncio.Queue()
        for session in self._sessions:
            self._free.put_nowait(session)
        self._closed = False

    async def send(self, message: EmailMessage) -> None:
        if self._closed:
            raise TemporaryMailError("the SMTP transport is closed")
        session = await self._free.get()
        try:
            if self._closed:
                raise TemporaryMailError("the SMTP transport is closed")
            await session.send(message)
        finally:
            self._free.put_nowait(session)

    async def open_client(self) -> aiosmtplib.SMTP:
        """Connect, say EHLO, upgrade to TLS and log in as the settings say."""
        settings = self.settings
        if self._local_hostname is None:
            # getfqdn() may wait on DNS: resolve once, in a thread, not once per connection.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password if settings.username else None,
            local_hostname=self._local_hostname,
            timeout=settings.timeout,
            use_tls=settings.implicit_tls,
            start_tls=settings.starttls,
            tls_context=self._tls_context,
        )
        try:
            await client.connect()
        except Exception as exc:
            client.close()
            raise classify(exc) from exc
        self.connections_opened += 1
        log.debug("SMTP session open to %s:%s", settings.host, settings.port)
        return client

    async def close(self) -> None:
        """Wait for sends in progress, then QUIT every open session."""
        if self._closed:
            return
        self._closed = True
        taken = [await self._free.get() for _ in self._sessions]
        for session in taken:
            await session.quit(self.settings.timeout)
            self._free.put_nowait(session)

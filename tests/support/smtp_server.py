"""Real SMTP servers for the mailer tests: aiosmtpd on a free local port, scripted to misbehave.

The fixtures starting them (``smtp_server``, ``certificate``) are in tests/mailer/conftest.py.

Each server runs in its own thread (aiosmtpd's ``Controller``) with a :class:`Recorder` handler that
keeps every accepted message with the connection it came on, and can be told to answer the next
commands with a given reply, to hang, or to drop the connection in the middle of DATA.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway.core.settings import SmtpSettings

USERNAME = "mailer"
PASSWORD = "s3cret-pässword"


@dataclass(frozen=True)
class Received:
    """One message the server accepted (answered 250 to its DATA)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    peer: tuple[Any, ...]
    tls: bool
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        parsed: EmailMessage = BytesParser(policy=policy.default).parsebytes(self.content)
        return parsed


@dataclass
class Recorder:
    """The aiosmtpd handler: records accepted messages; replies from the scripts below come first.

    ``rcpt_replies`` / ``data_replies``: replies for the next RCPT / DATA commands, one each, in order;
    ``rcpt_rules``: address -> reply for every RCPT of that address; ``drop_data``: how many DATA
    commands to cut off after their first line; ``hang_data``: make every DATA wait forever;
    ``hold_data``: make every DATA wait until that event is set;
    ``hang_up_after_data``: close the connection, unannounced, right after accepting a message.
    """

    received: list[Received] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    rcpt_rules: dict[str, list[str]] = field(default_factory=dict)
    drop_data: int = 0
    hang_data: bool = False
    hold_data: threading.Event | None = None  # every DATA waits until this is set
    hang_up_after_data: bool = False
    quits: int = 0
    data_commands: int = 0
    data_seen: threading.Event = field(default_factory=threading.Event)  # set by every DATA command
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def connections(self) -> set[tuple[Any, ...]]:
        """The connections that carried accepted messages."""
        return {r.peer for r in self.received}

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            rule = self.rcpt_rules.get(address)
            reply = rule.pop(0) if rule else (self.rcpt_replies.pop(0) if self.rcpt_replies else None)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.data_commands += 1
            reply = self.data_replies.pop(0) if self.data_replies else None
        self.data_seen.set()
        if self.hang_data:
            await asyncio.sleep(3600)
        if self.hold_data is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.hold_data.wait)
        if reply is not None:
            return reply
        assert isinstance(envelope.content, bytes)
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        with self.lock:
            self.received.append(
                Received(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    content=envelope.content,
                    peer=tuple(cast(tuple[Any, ...], session.peer)),
                    tls=tls,
                    authenticated=bool(session.authenticated),
                )
            )
        return "250 2.0.0 OK queued"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.quits += 1
        return "221 Bye"


class ScriptedSMTP(SMTP):
    """aiosmtpd's server, able to drop the connection after the first line of a DATA body."""

    async def smtp_DATA(self, arg: str) -> None:
        recorder = self.event_handler
        assert isinstance(recorder, Recorder)
        with recorder.lock:
            drop = recorder.drop_data > 0
            recorder.drop_data -= int(drop)
        if not drop:
            await super().smtp_DATA(arg)
            if recorder.hang_up_after_data and self.transport is not None:
                self.transport.close()
            return
        with recorder.lock:
            recorder.data_commands += 1
        recorder.data_seen.set()
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        await self._reader.readline()
        assert self.transport is not None
        self.transport.close()


class _Controller(Controller):
    """A Controller on a free port chosen by the OS (port 0), with :class:`ScriptedSMTP`."""

    def factory(self) -> SMTP:
        return ScriptedSMTP(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = cast(asyncio.Server, self.server).sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == USERNAME.encode()
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


@dataclass
class SmtpServer:
    controller: Controller
    recorder: Recorder
    implicit_tls: bool
    starttls: bool

    @property
    def port(self) -> int:
        port: int = self.controller.port
        return port

    def settings(self, **changes: Any) -> SmtpSettings:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "username": None,
            "password": None,
            "implicit_tls": self.implicit_tls,
            "starttls": self.starttls,
            "timeout": 5.0,
        }
        values.update(changes)
        return SmtpSettings(**values)


ServerFactory = Callable[..., SmtpServer]


def start_smtp_server(
    tls: str | None = None, tls_context: ssl.SSLContext | None = None, auth: bool = False, **smtp: Any
) -> SmtpServer:
    """A running server: plain, ``tls="starttls"`` (required) or ``tls="implicit"``, with AUTH if asked."""
    recorder = Recorder()
    kwargs: dict[str, Any] = dict(smtp)
    if tls == "starttls":
        kwargs.update(tls_context=tls_context, require_starttls=True)
    elif tls == "implicit":
        kwargs.update(ssl_context=tls_context)
    if auth:
        kwargs.update(authenticator=_authenticate, auth_require_tls=False)
    controller = _Controller(recorder, hostname="127.0.0.1", port=0, **kwargs)
    controller.start()
    return SmtpServer(controller, recorder, implicit_tls=tls == "implicit", starttls=tls == "starttls")


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Trusts exactly this self-signed certificate, with host name checking on."""
        return ssl.create_default_context(cafile=str(self.cert))

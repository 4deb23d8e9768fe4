"""The ``inbox`` role: staff email replies to handed-over conversations, received by SMTP or read from an
IMAP mailbox (``GATEWAY_IMAP_URL``), passed on to the user's conversation (OPERATIONS.md, "Staff replies
by email"). ``run`` includes it when ``GATEWAY_INBOX_ADDRESS`` is set."""

from __future__ import annotations

from gateway.app.roles.base import Role, Services, StartupError
from mailer.inbox.imap_reader import ImapInbox
from mailer.inbox.service import Inbox
from mailer.inbox.smtp_server import SmtpInbox


class InboxRole(Role):
    def __init__(self, services: Services) -> None:
        settings = services.settings
        if settings.inbox_address is None:
            raise StartupError("GATEWAY_INBOX_ADDRESS: required by `gateway inbox` (the desk's address)")
        self.settings = settings
        self.inbox = Inbox(
            services.bus,
            services.store,
            secret_key=settings.secret_key,
            inbox_address=settings.inbox_address,
            staff=settings.staff,
            dedup_ttl=settings.dedup_ttl,
            metrics=services.metrics,
            clock=services.clock,
        )
        self.listener: SmtpInbox | ImapInbox
        if settings.imap_url is not None:
            self.listener = ImapInbox(self.inbox, services.store, settings.imap_url)
        else:
            self.listener = SmtpInbox(self.inbox, settings.inbox_host, settings.inbox_port)

    async def start(self) -> None:
        try:
            await self.listener.start()
        except OSError as exc:
            raise StartupError(
                f"inbox: cannot listen on {self.settings.inbox_host}:{self.settings.inbox_port}: {exc}"
            ) from None

    async def stop_intake(self) -> None:
        await self.listener.stop_intake()

    async def drain(self, timeout: float) -> None:
        await self.listener.drain(timeout)

    async def close(self) -> None:
        if isinstance(self.listener, ImapInbox):
            await self.listener.close()

    def describe(self) -> list[str]:
        staff = ", ".join(self.settings.staff) or "nobody (GATEWAY_STAFF is unset: every reply is refused)"
        where = (
            f"reading {self.listener.url}"
            if isinstance(self.listener, ImapInbox)
            else f"SMTP on {self.listener.host}:{self.listener.port}"
        )
        return [f"inbox: staff replies to {self.settings.inbox_address}, {where}; staff: {staff}"]

"""The ``mailer`` role: email jobs to SMTP (or to ``.eml`` files in the outbox), each once."""

from __future__ import annotations

from gateway.app.roles.base import Role, Services
from mailer.factory import build_transport
from mailer.service import Mailer


class MailerRole(Role):
    def __init__(self, services: Services) -> None:
        settings = services.settings
        self.settings = settings
        self.mailer = Mailer(
            services.bus,
            services.store,
            build_transport(settings),
            mail_from=settings.mail_from,
            max_recipients=settings.max_recipients,
            dedup_ttl=settings.dedup_ttl,
            metrics=services.metrics,
        )

    async def start(self) -> None:
        await self.mailer.start()

    async def drain(self, timeout: float) -> None:
        await self.mailer.stop(timeout)  # also closes the transport

    def describe(self) -> list[str]:
        smtp = self.settings.smtp
        if smtp is None:
            return [f"emails: written as .eml files to {self.settings.outbox}/"]
        return [f"emails: SMTP {smtp.host}:{smtp.port}"]

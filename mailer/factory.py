"""The mail transport the settings name: SMTP when ``GATEWAY_SMTP_URL`` is set, else the outbox folder."""

from __future__ import annotations

from gateway.core.settings import Settings
from mailer.transport import MailTransport


def build_transport(settings: Settings) -> MailTransport:
    if settings.smtp is None:
        from mailer.outbox import OutboxTransport

        return OutboxTransport(settings.outbox)
    from mailer.smtp import SmtpTransport

    return SmtpTransport(settings.smtp)

"""The mailer role: deliver the email jobs story workers publish, once each, over SMTP or to an outbox."""

from mailer.message import build_message
from mailer.outbox import OutboxTransport
from mailer.service import Mailer
from mailer.smtp import SmtpTransport
from mailer.transport import MailError, MailTransport, PermanentMailError, TemporaryMailError

__all__ = [
    "MailError",
    "MailTransport",
    "Mailer",
    "OutboxTransport",
    "PermanentMailError",
    "SmtpTransport",
    "TemporaryMailError",
    "build_message",
]

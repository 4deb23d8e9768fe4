"""The mail transport interface: hand one finished message to something that delivers it.

A transport sorts every failure into one of two kinds, because the mailer's retry policy depends only
on that: a :class:`TemporaryMailError` (4xx reply, connection refused or dropped, timeout) is worth
trying again later; a :class:`PermanentMailError` (5xx reply, every recipient refused, a message the
server can never take) is not. Both carry the server's reply text so it reaches the dead-letter reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from email.message import EmailMessage


class MailError(Exception):
    """A message was not delivered; the text says why (with the server's reply when there was one)."""


class TemporaryMailError(MailError):
    """Delivery failed this time and may succeed later: retry with backoff."""


class PermanentMailError(MailError):
    """Delivery can never succeed as the message stands: dead-letter it."""


class MailTransport(ABC):
    @abstractmethod
    async def send(self, message: EmailMessage) -> None:
        """Deliver ``message`` to its To and Cc recipients, or raise a :class:`MailError`."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections or files; safe to call twice."""

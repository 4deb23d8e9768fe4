"""The ends of the pipeline a conversation test listens at: a channel and a mail transport that record.

Both sit where the real ones sit (behind the deliverer and the mailer), so a test sees what a user and a
support inbox would receive, after rendering, routing and MIME building.
"""

from __future__ import annotations

from email.message import EmailMessage

from channels.base import Channel, Progress
from gateway.core.schema import Button, Reply
from mailer.transport import MailTransport


class CapturingChannel(Channel):
    """Records each reply; remembers the buttons last offered, as a chat window shows them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.replies: list[Reply] = []
        self.offered: tuple[Button, ...] = ()

    async def send(self, reply: Reply, progress: Progress | None = None) -> None:
        self.replies.append(reply)
        if reply.buttons:
            self.offered = reply.buttons


class CapturingTransport(MailTransport):
    """Records each finished email instead of sending it."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.messages.append(message)

    async def close(self) -> None:
        """Nothing to release."""

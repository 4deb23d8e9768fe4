"""The ends of the pipeline a conversation test listens at: channels and a mail transport that record.

They sit where the real ones sit (behind the deliverer and the mailer), so a test sees what a user, a
support inbox and a support desk would receive, after rendering, routing and MIME building.
"""

from __future__ import annotations

from email.message import EmailMessage

from channels.base import Channel, Progress
from gateway.core.desk import DESK_OF
from gateway.core.schema import Button, Reply
from mailer.transport import MailTransport


class CapturingChannel(Channel):
    """Records each reply in ``replies`` (which two channels may share, to keep one order); remembers the
    buttons last offered to the user, as a chat window shows them (a desk post's are the desk's)."""

    def __init__(self, name: str, replies: list[Reply] | None = None) -> None:
        self.name = name
        self.replies: list[Reply] = replies if replies is not None else []
        self.offered: tuple[Button, ...] = ()

    async def send(self, reply: Reply, progress: Progress | None = None) -> None:
        self.replies.append(reply)
        if reply.buttons and DESK_OF not in reply.meta:
            self.offered = reply.buttons


class CapturingTransport(MailTransport):
    """Records each finished email instead of sending it."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def send(self, message: EmailMessage) -> None:
        self.messages.append(message)

    async def close(self) -> None:
        """Nothing to release."""

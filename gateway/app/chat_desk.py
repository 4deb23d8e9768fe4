"""What a support desk gets, shown in ``gateway chat`` as lines starting ``[desk] ``.

The person at the terminal plays both the user and the desk's staff: a handoff's ticket email and the
user's later messages in it, or the posts to a Slack desk, are printed where they can read them, and they
answer with ``/agent`` (gateway/app/chat.py). Emails still go where the settings send them (the outbox
folder or SMTP); the Slack desk exists only in the terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage

from channels.base import Channel, Progress
from channels.console import ConsoleChannel, render_text
from designer.conversation_tests.desk import is_desk_email
from gateway.core.desk import DESK_POST
from gateway.core.schema import Reply
from mailer.transport import MailTransport

DESK_PREFIX = "[desk] "
DESK_CHANNEL = "slack"  # the channel a Slack desk's posts go to


def desk_lines(text: str) -> str:
    """Every line of ``text`` marked as the desk's."""
    return "\n".join(DESK_PREFIX + line for line in text.splitlines() or [""])


class UserConsole(ConsoleChannel):
    """The user's side: a person's answer shows who wrote it, ``(Agent) Text``."""

    async def send(self, reply: Reply, progress: Progress | None = None) -> None:
        if reply.author is None:
            await super().send(reply, progress)
            return
        self.last_buttons = reply.buttons or self.last_buttons
        self.write(f"({reply.author}) {render_text(reply)}")


class SlackDeskConsole(Channel):
    """A Slack desk in the terminal: each post to the desk channel, printed as the desk's."""

    name = DESK_CHANNEL

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write

    async def send(self, reply: Reply, progress: Progress | None = None) -> None:
        titles = [b.title for b in reply.buttons]
        if reply.meta.get(DESK_POST) == "root":
            titles.append("Hand back")  # the Slack channel draws it on the thread's first post
        buttons = f"\n[{' | '.join(titles)}]" if titles else ""
        self.write(desk_lines(f"slack {reply.chat}: {reply.text}{buttons}"))


class DeskShowingTransport(MailTransport):
    """Sends every email with ``inner``, and prints the ones to an email desk (a ticket and its thread)."""

    def __init__(self, inner: MailTransport, inbox_address: str, write: Callable[[str], None]) -> None:
        self.inner = inner
        self.inbox_address = inbox_address
        self.write = write

    async def send(self, message: EmailMessage) -> None:
        await self.inner.send(message)
        if is_desk_email(message, self.inbox_address):
            part = message.get_body(preferencelist=("plain",))
            content = part.get_content() if part is not None else ""  # type: ignore[attr-defined]
            body = content if isinstance(content, str) else ""
            head = f"email to {message.get('To', '')!s}: {message.get('Subject', '')!s}"
            self.write(desk_lines(f"{head}\n{body.rstrip()}"))

    async def close(self) -> None:
        await self.inner.close()

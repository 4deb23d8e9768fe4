"""What the baseline bots share: the story engine on dicts (gone when the process ends), Telegram updates
read by hand into the engine's messages, and a turn's effects done inline — replies through aiogram's
``Bot``, then the ticket emails written to an outbox folder as the gateway's mailer writes them."""

from __future__ import annotations

from pathlib import Path

from aiogram import Bot
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from channels.telegram import keyboard
from gateway.core.schema import ButtonPress, EmailJob, Inbound, Reply
from gateway.core.store.base import Session
from mailer.message import build_message
from mailer.outbox import OutboxTransport
from worker.engine import Engine, load_stories

MAIL_FROM = "gateway@localhost"


class DictStories:
    def __init__(self, stories: Path) -> None:
        self.engine = Engine(load_stories(stories))
        self.sessions: dict[str, Session | None] = {}
        self.users: dict[str, dict[str, str]] = {}

    def handle(self, inbound: Inbound) -> tuple[list[Reply], list[EmailJob]]:
        """Run one message through the stories; the replies to send and the emails to write."""
        attributes = self.users.setdefault(inbound.user, {})
        session, replies, emails = self.turn(self.sessions.get(inbound.chat), attributes, inbound)
        self.sessions[inbound.chat] = session
        return replies, emails

    def turn(
        self, session: Session | None, attributes: dict[str, str], inbound: Inbound
    ) -> tuple[Session | None, list[Reply], list[EmailJob]]:
        """One message on the state given (``attributes`` changed in place): the session after it, the
        replies to send and the emails to write."""
        turn = self.engine.handle(session, attributes, inbound, 0.0)
        for name, value in turn.user_changes.items():
            if value is None:
                attributes.pop(name, None)
            else:
                attributes[name] = value
        return turn.session, list(turn.replies), list(turn.emails)


def from_message(update_id: int, message: Message) -> Inbound | None:
    if message.text is None or message.from_user is None:
        return None
    chat, user = str(message.chat.id), str(message.from_user.id)
    return Inbound(
        id=f"telegram:update:{update_id}", channel="telegram", chat=chat, user=user, text=message.text
    )


def from_button(update_id: int, query: CallbackQuery) -> Inbound | None:
    if query.data is None or query.message is None:
        return None
    markup = getattr(query.message, "reply_markup", None)
    rows = markup.inline_keyboard if isinstance(markup, InlineKeyboardMarkup) else []
    title = next((b.text for row in rows for b in row if b.callback_data == query.data), None)
    return Inbound(
        id=f"telegram:update:{update_id}",
        channel="telegram",
        chat=str(query.message.chat.id),
        user=str(query.from_user.id),
        text=title or "",
        button=ButtonPress(payload=query.data, title=title),
    )


class Effects:
    """Sends a turn's replies one after another, then writes its emails (fsynced, as the mailer does)."""

    def __init__(self, bot: Bot, outbox: Path) -> None:
        self.bot = bot
        self.outbox = OutboxTransport(outbox)

    async def run(self, replies: list[Reply], emails: list[EmailJob]) -> None:
        for reply in replies:
            await self.bot.send_message(int(reply.chat), reply.text or "", reply_markup=keyboard(reply))
        for job in emails:
            await self.outbox.send(build_message(job, MAIL_FROM, max_recipients=10))

"""Telegram through aiogram: verified webhook updates in, ``sendMessage`` / ``sendPhoto`` out.

Inbound: the ``X-Telegram-Bot-Api-Secret-Token`` header is compared in constant time, the body is parsed
with aiogram's ``Update`` model, and text messages, bot commands, photos (with their captions) and button
presses (``callback_query``) become :class:`~gateway.core.schema.Inbound` messages with the id
``telegram:update:<update_id>``. A button press is answered with ``answerCallbackQuery`` once it is safe in
the broker, so the client stops spinning. Every other update kind is acknowledged and ignored without
validating its content, so a kind newer than aiogram never makes Telegram retry it for ever.

Outbound: through aiogram's ``Bot`` on ``TELEGRAM_API_URL``, with no ``parse_mode``, so user text can never
break (or inject) formatting. Buttons become an inline keyboard whose ``callback_data`` is the button's
payload; a payload over Telegram's 64-byte limit is sent as a digest (:func:`callback_data`) and comes back
as a press whose title is the button's text, so the engine matches it by title. An image in a ``data:``
URL (a person's answer by email) is uploaded: ``sendPhoto`` with the bytes, as a multipart form.

Photos the user sends arrive as ``telegram-file:<file_id>`` URLs: resolving a downloadable URL would cost
a ``getFile`` call per photo while the webhook waits, and that URL embeds the bot token, which must not
travel on the bus or sit in Redis. Whoever needs the bytes calls ``getFile`` with the file id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Literal

from aiogram import Bot
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    ClientDecodeError,
    RestartingTelegram,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import (
    AnswerCallbackQuery,
    DeleteWebhook,
    GetUpdates,
    Response,
    SendMessage,
    SendPhoto,
    SetWebhook,
)
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from pydantic import ValidationError

from channels.base import (
    Accepted,
    Channel,
    Endpoint,
    Malformed,
    Progress,
    Refused,
    RetryLater,
    Unauthorized,
    WebhookRequest,
)
from channels.data_url import decode_image, is_data_url
from channels.ratelimit import TELEGRAM_LIMIT
from channels.telegram_session import JsonAiohttpSession
from gateway.core.schema import Attachment, ButtonPress, Inbound, Reply

log = logging.getLogger("gateway.channels.telegram")

WEBHOOK_PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# What the webhook (set-webhook) and the poller ask Telegram for; other kinds would only be ignored.
ALLOWED_UPDATES = ("message", "callback_query")
CALLBACK_DATA_LIMIT = 64  # bytes, Bot API limit of InlineKeyboardButton.callback_data
DIGEST_PREFIX = "#"
TEXT_LIMIT = 4096  # characters of one sendMessage
CAPTION_LIMIT = 1024  # characters of one sendPhoto caption
EMPTY_TEXT = "…"  # Telegram refuses an empty message; a reply of buttons alone still needs some text

# aiogram parses every answer as ``Response[<returned type>]``, a pydantic generic that pydantic caches only
# weakly: without a strong reference the class is rebuilt on every call (about a tenth of a busy `serve`
# process's CPU). Holding the ones we use keeps them cached.
_RESPONSE_TYPES = tuple(
    Response[method.__returning__]  # type: ignore[name-defined]
    for method in (SendMessage, SendPhoto, AnswerCallbackQuery, GetUpdates, SetWebhook, DeleteWebhook)
)
FILE_URL_SCHEME = "telegram-file:"


def callback_data(payload: str) -> str:
    """The ``callback_data`` for a button payload: itself when it fits in 64 bytes, else a digest.

    A digest is ``#`` + 43 characters of URL-safe base64 of its SHA-256 (44 bytes); a press on such a
    button comes back with this digest as payload and the button's text as title.
    """
    if len(payload.encode()) <= CALLBACK_DATA_LIMIT:
        return payload
    digest = base64.urlsafe_b64encode(hashlib.sha256(payload.encode()).digest()).decode().rstrip("=")
    return DIGEST_PREFIX + digest


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """One button per row: titles are often long, and a column reads like a list of choices."""
    if not reply.buttons:
        return None
    rows = [
        [InlineKeyboardButton(text=b.title, callback_data=callback_data(b.payload))] for b in reply.buttons
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _command(text: str) -> str:
    """``/start@SomeBot rest`` → ``/start rest``: in groups commands carry the bot's name."""
    if not text.startswith("/"):
        return text
    head, sep, rest = text.partition(" ")
    return head.split("@", 1)[0] + sep + rest


def _button_title(query: CallbackQuery) -> str | None:
    """The text of the pressed button, read from the keyboard of the message it belongs to."""
    message = query.message
    markup = getattr(message, "reply_markup", None) if message is not None else None
    if not isinstance(markup, InlineKeyboardMarkup):
        return None
    for row in markup.inline_keyboard:
        for button in row:
            if button.callback_data == query.data:
                return button.text
    return None


def _attachments(message: Message) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    if message.photo:
        largest = message.photo[-1]  # Telegram lists the sizes smallest first
        found.append(Attachment(kind="image", url=FILE_URL_SCHEME + largest.file_id, mime="image/jpeg"))
    document = message.document
    if document is not None:
        mime = document.mime_type or ""
        kind: Literal["image", "file"] = "image" if mime.startswith("image/") else "file"
        found.append(
            Attachment(
                kind=kind, url=FILE_URL_SCHEME + document.file_id, mime=mime or None, name=document.file_name
            )
        )
    return tuple(found)


class TelegramChannel(Channel):
    name = "telegram"
    rate_limit = TELEGRAM_LIMIT

    def __init__(
        self,
        token: str,
        *,
        api_url: str = "https://api.telegram.org",
        webhook_secret: str | None = None,
        serve_webhook: bool = True,
        request_timeout: float = 15.0,
    ) -> None:
        """``token`` must look like a bot token (aiogram raises ``TokenValidationError`` otherwise)."""
        session = JsonAiohttpSession(api=TelegramAPIServer.from_base(api_url), timeout=request_timeout)
        self.bot = Bot(token, session=session)
        self.api_url = api_url
        self.webhook_secret = webhook_secret
        self.serve_webhook = serve_webhook
        self._secret = webhook_secret.encode() if webhook_secret else None

    def endpoints(self) -> Sequence[Endpoint]:
        return (Endpoint(WEBHOOK_PATH, self.handle_webhook),) if self.serve_webhook else ()

    def describe(self) -> str:
        mode = "webhook" if self.serve_webhook else "long polling"
        return f"telegram ({mode}, {self.api_url})"

    async def close(self) -> None:
        await self.bot.session.close()

    # Inbound

    async def handle_webhook(self, request: WebhookRequest) -> Accepted:
        if self._secret is not None:
            given = request.headers.get(SECRET_HEADER, "").encode()
            if not hmac.compare_digest(given, self._secret):
                raise Unauthorized(f"missing or wrong {SECRET_HEADER}")
        try:
            raw = json.loads(request.body)
        except ValueError:
            raise Malformed("body is not JSON") from None
        if not isinstance(raw, dict) or type(raw.get("update_id")) is not int:
            raise Malformed("not a Telegram update: no integer update_id")
        kinds = [kind for kind in ALLOWED_UPDATES if kind in raw]
        if not kinds:
            return Accepted()  # a kind we do not use: acknowledged without validating its content
        try:
            update = Update.model_validate({"update_id": raw["update_id"], kinds[0]: raw[kinds[0]]})
        except ValidationError as exc:
            raise Malformed(f"not a Telegram update: {_first_error(exc)}") from None
        return self.accept_update(update)

    def accept_update(self, update: Update) -> Accepted:
        """The parse path shared by the webhook and the poller: what to publish, what to do after."""
        if update.message is not None:
            return Accepted(messages=self._from_message(update.update_id, update.message))
        if update.callback_query is not None:
            return self._from_callback(update.update_id, update.callback_query)
        return Accepted()

    def _from_message(self, update_id: int, message: Message) -> tuple[Inbound, ...]:
        sender = message.from_user
        if sender is None or sender.is_bot:
            return ()
        text = _command(message.text) if message.text is not None else (message.caption or "")
        attachments = _attachments(message)
        if not text and not attachments:
            return ()  # stickers, voice, locations...: nothing a story reads
        return (
            Inbound(
                id=f"telegram:update:{update_id}",
                channel=self.name,
                chat=str(message.chat.id),
                user=str(sender.id),
                channel_message_id=str(message.message_id),
                text=text,
                attachments=attachments,
                sent_at=message.date.timestamp(),
                user_name=sender.full_name or None,
            ),
        )

    def _from_callback(self, update_id: int, query: CallbackQuery) -> Accepted:
        async def answer() -> None:
            await self.bot.answer_callback_query(callback_query_id=query.id)

        message = query.message
        if query.data is None or message is None or query.from_user.is_bot:
            return Accepted(after=answer)  # a game button, or a button of an inline-mode message
        title = _button_title(query)
        inbound = Inbound(
            id=f"telegram:update:{update_id}",
            channel=self.name,
            chat=str(message.chat.id),
            user=str(query.from_user.id),
            channel_message_id=str(message.message_id),
            text=title or "",
            button=ButtonPress(payload=query.data, title=title),
            user_name=query.from_user.full_name or None,
        )
        return Accepted(messages=(inbound,), after=answer)

    # Outbound

    async def send(self, reply: Reply, progress: Progress | None = None) -> None:
        try:
            await (progress or Progress()).run(self._calls(reply))
        except TelegramRetryAfter as exc:
            raise RetryLater(f"telegram flood control: {exc.message}", after=float(exc.retry_after)) from None
        except (TelegramNetworkError, TelegramServerError, RestartingTelegram, ClientDecodeError) as exc:
            raise RetryLater(f"telegram unavailable: {exc}") from None
        except TelegramMigrateToChat as exc:
            raise Refused(f"chat moved to supergroup {exc.migrate_to_chat_id}") from None
        except (
            TelegramForbiddenError,
            TelegramBadRequest,
            TelegramNotFound,
            TelegramUnauthorizedError,
            TelegramConflictError,
            TelegramEntityTooLarge,
        ) as exc:
            raise Refused(exc.message) from None
        except TelegramAPIError as exc:  # an answer the Bot API does not document: try again, bounded
            raise RetryLater(f"telegram: {exc.message}") from None

    def _calls(self, reply: Reply) -> list[Callable[[], Awaitable[object]]]:
        """The Bot API calls of one reply, in order (more than one for a long text or caption)."""
        markup = keyboard(reply)
        chat: int | str = int(reply.chat) if reply.chat.lstrip("-").isdigit() else reply.chat
        text = reply.text
        calls: list[Callable[[], Awaitable[object]]] = []
        if reply.image is not None:
            photo = _photo(reply.image.url)
            caption = "\n\n".join(part for part in (reply.image.caption, text) if part)
            if len(caption) <= CAPTION_LIMIT:
                return [
                    partial(self.bot.send_photo, chat, photo, caption=caption or None, reply_markup=markup)
                ]
            # Too long for one caption: the photo, then the text.
            own_caption = (reply.image.caption or "")[:CAPTION_LIMIT] or None
            calls.append(partial(self.bot.send_photo, chat, photo, caption=own_caption))
        if not text and markup is None:
            return calls
        parts = _chunks(text or EMPTY_TEXT, TEXT_LIMIT)
        for n, part in enumerate(parts, 1):
            last_markup = markup if n == len(parts) else None
            calls.append(partial(self.bot.send_message, chat, part, reply_markup=last_markup))
        return calls


def _photo(url: str) -> str | BufferedInputFile:
    """What ``sendPhoto`` is given: a URL Telegram fetches, or the bytes of a ``data:`` URL, uploaded (a
    multipart call); a ``data:`` URL that does not decode is :class:`Refused`."""
    if not is_data_url(url):
        return url
    image = decode_image(url)
    return BufferedInputFile(image.data, filename=image.filename)


def _first_error(exc: ValidationError) -> str:
    first: dict[str, Any] = dict(exc.errors()[0])
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg')}"

"""A fake Telegram Bot API: ``{url}/bot{token}/{method}``, answering ``{"ok": true, "result": ...}``.

It speaks the real wire format (https://core.telegram.org/bots/api#making-requests): parameters as
query string, form fields (JSON-encoded objects such as ``reply_markup``) or a JSON body; errors as
``{"ok": false, "error_code": N, "description": "..."}`` with ``parameters.retry_after`` on 429. It
enforces the limits a sender can trip over (text 4096, caption 1024, callback_data 64 bytes) and answers
403 "Forbidden: bot was blocked by the user" for chats in :attr:`blocked_chats`. ``getUpdates`` long-polls
the updates given to :meth:`FakeTelegram.push_update`. Files uploaded in a multipart call (``sendPhoto``
with ``photo=attach://<part>``) are kept in :attr:`FakeTelegram.uploads`, bytes and all.

    async with FakeTelegram() as tg:
        channel = TelegramChannel(tg.token, api_url=tg.url)
        ...
        [call] = await tg.wait_for_calls(1, method="sendMessage")
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.support.fakes.base import FakeApi, drop

DEFAULT_TOKEN = "123456789:AAFakeTokenForTests_abcdefghijklmnop"
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "allowed_updates",
        "entities",
        "caption_entities",
        "link_preview_options",
        "reply_parameters",
    }
)
_DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart call."""

    method: str
    field: str
    filename: str
    content_type: str
    data: bytes


class FakeTelegram(FakeApi):
    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        super().__init__()
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.blocked_chats: set[str] = set()
        self.webhook: dict[str, Any] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_added: asyncio.Event | None = None
        self.long_polling: asyncio.Event | None = None  # set while a getUpdates call waits for updates
        self._message_ids = 0
        self.uploads: list[Upload] = []

    @property
    def url(self) -> str:
        """The value for ``TELEGRAM_API_URL``."""
        return self.address

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/bot{token}/{method}", self._handle)]

    async def start(self) -> None:
        self._update_added = asyncio.Event()
        self.long_polling = asyncio.Event()
        await super().start()

    async def close(self) -> None:
        if self._update_added is not None:
            self._update_added.set()  # release a pending long poll, so the server stops at once
        await super().close()

    def push_update(self, update: dict[str, Any]) -> None:
        """Queue an update for ``getUpdates`` (give it an ``update_id``)."""
        self._updates.append(update)
        if self._update_added is not None:
            self._update_added.set()

    @property
    def bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Fake Bot", "username": "fake_bot"}

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body = await request.json()
            params.update(body if isinstance(body, dict) else {})
            return params
        if request.can_read_body:
            form = await request.post()
            for key, value in form.items():
                if not isinstance(value, str):
                    filename = getattr(value, "filename", None) or "upload"
                    data = value.file.read() if hasattr(value, "file") else bytes(value)
                    method = request.match_info["method"]
                    content_type = getattr(value, "content_type", "") or ""
                    self.uploads.append(Upload(method, key, filename, content_type, data))
                    params[key] = filename  # in the call log a file is its name; its bytes are in uploads
                elif key in _JSON_FIELDS:
                    params[key] = json.loads(value)
                else:
                    params[key] = value
        return params

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params = await self._params(request)
        if request.match_info["token"] != self.token:
            return await self._error(request, method, params, 401, {})
        failure = self.take_failure(method)
        if failure is not None:
            if failure.status == 0:
                await self.record(method, params, request, 0)
                return drop(request)
            return await self._error(request, method, params, failure.status, failure.details)
        handler = getattr(self, "_m_" + method.lower(), None)
        if handler is None:
            return await self._error(request, method, params, 404, {})
        outcome = await handler(params)
        if isinstance(outcome, _Refusal):
            return await self._error(request, method, params, outcome.status, {"description": outcome.text})
        await self.record(method, params, request, 200)
        return web.json_response({"ok": True, "result": outcome})

    async def _error(
        self, request: web.Request, method: str, params: dict[str, Any], status: int, details: dict[str, Any]
    ) -> web.Response:
        await self.record(method, params, request, status)
        retry_after = details.get("retry_after", 1 if status == 429 else None)
        description = details.get("description") or _DESCRIPTIONS.get(status, "Error").format(
            retry_after=retry_after
        )
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    # Methods

    def _message(self, params: dict[str, Any], **content: Any) -> dict[str, Any] | _Refusal:
        chat = str(params.get("chat_id", ""))
        if not chat:
            return _Refusal(400, "Bad Request: chat_id is empty")
        if chat in self.blocked_chats:
            return _Refusal(403, "Forbidden: bot was blocked by the user")
        markup = params.get("reply_markup")
        if isinstance(markup, dict):
            for row in markup.get("inline_keyboard", []):
                for button in row:
                    if len(str(button.get("callback_data", "")).encode()) > 64:
                        return _Refusal(400, "Bad Request: BUTTON_DATA_INVALID")
        self._message_ids += 1
        chat_id: int | str = int(chat) if chat.lstrip("-").isdigit() else chat
        message: dict[str, Any] = {
            "message_id": self._message_ids,
            "from": self.bot_user,
            "chat": {
                "id": chat_id,
                "type": "private" if isinstance(chat_id, int) and chat_id > 0 else "group",
            },
            "date": int(time.time()),
            **content,
        }
        if isinstance(markup, dict):
            message["reply_markup"] = markup
        return message

    async def _m_getme(self, params: dict[str, Any]) -> Any:
        return self.bot_user

    async def _m_sendmessage(self, params: dict[str, Any]) -> Any:
        text = str(params.get("text", ""))
        if not text.strip():
            return _Refusal(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _Refusal(400, "Bad Request: message is too long")
        return self._message(params, text=text)

    async def _m_sendphoto(self, params: dict[str, Any]) -> Any:
        photo = str(params.get("photo") or "")
        if not photo or (photo.startswith("attach://") and photo[len("attach://") :] not in params):
            return _Refusal(400, "Bad Request: there is no photo in the request")
        caption = params.get("caption")
        if caption is not None and len(str(caption)) > 1024:
            return _Refusal(400, "Bad Request: message caption is too long")
        photo = [{"file_id": f"AgAC{self._message_ids}", "file_unique_id": "AQAD", "width": 90, "height": 90}]
        extra = {"caption": caption} if caption else {}
        return self._message(params, photo=photo, **extra)

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> Any:
        if not params.get("callback_query_id"):
            return _Refusal(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        return True

    async def _m_setwebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = dict(params)
        return True

    async def _m_deletewebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = {}
        return True

    async def _m_getwebhookinfo(self, params: dict[str, Any]) -> Any:
        return {
            "url": self.webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }

    async def _m_getupdates(self, params: dict[str, Any]) -> Any:
        if self.webhook.get("url"):
            return _Refusal(409, "Conflict: can't use getUpdates method while webhook is active")
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        timeout = min(float(params.get("timeout") or 0), 50.0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates and timeout > 0:
            assert self._update_added is not None and self.long_polling is not None
            self._update_added.clear()
            self.long_polling.set()
            try:
                await asyncio.wait_for(self._update_added.wait(), timeout)
            except TimeoutError:
                return []
            finally:
                self.long_polling.clear()
        return self._updates[:limit]


class _Refusal:
    def __init__(self, status: int, text: str) -> None:
        self.status = status
        self.text = text

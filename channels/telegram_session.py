"""aiogram's HTTP session, sending Bot API calls as one JSON body instead of a multipart form.

aiogram always builds ``multipart/form-data`` (each nested object JSON-encoded into its own part), which
only file uploads need; the Bot API takes ``application/json`` just as well, and building and parsing
one JSON document costs a fraction of a multipart body. Calls that upload a file (an ``InputFile``) still
go as multipart through aiogram's own code; everything else (URL building, timeouts, errors, response
checking) is aiogram's too, except one thing: the successful answer of a call whose result the gateway
never reads (``sendMessage``, ``sendPhoto``, ``answerCallbackQuery``) is checked, not turned into
aiogram's models (a ``Message`` with its chat, sender and keyboard: a third of what a reply costs
``serve``); such a call returns None. A refusal still goes through aiogram, with its exceptions.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, cast

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import AnswerCallbackQuery, SendMessage, SendPhoto, TelegramMethod
from aiogram.methods.base import TelegramType
from aiohttp import ClientError, ClientTimeout

_JSON = {"Content-Type": "application/json"}
UNREAD_RESULTS = (SendMessage, SendPhoto, AnswerCallbackQuery)  # methods whose result no caller reads


class JsonAiohttpSession(AiohttpSession):
    def json_body(self, bot: Bot, method: TelegramMethod[Any]) -> str | None:
        """The call as a JSON document, or None when it uploads a file (multipart needed)."""
        files: dict[str, Any] = {}
        fields: dict[str, Any] = {}
        for key, value in method.model_dump(warnings=False).items():
            prepared = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if prepared:  # what aiogram's form leaves out (None, False, empty), this leaves out too
                fields[key] = prepared
        return None if files else self.json_dumps(fields)

    def answered_ok(self, method: TelegramMethod[Any], status_code: int, content: str) -> bool:
        """Whether ``method`` is one of :data:`UNREAD_RESULTS` and its answer says it succeeded; anything
        else goes through aiogram's ``check_response`` (its models, its exceptions)."""
        if not isinstance(method, UNREAD_RESULTS) or not HTTPStatus.OK <= status_code <= HTTPStatus.IM_USED:
            return False
        try:
            answer = self.json_loads(content)
        except ValueError:
            return False  # aiogram reports it
        return isinstance(answer, dict) and answer.get("ok") is True

    async def make_request(
        self, bot: Bot, method: TelegramMethod[TelegramType], timeout: int | None = None
    ) -> TelegramType:
        body = self.json_body(bot, method)
        if body is None:
            return await super().make_request(bot, method, timeout)
        session = await self.create_session()
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
        try:
            seconds = self.timeout if timeout is None else timeout
            async with session.post(
                url, data=body, headers=_JSON, timeout=ClientTimeout(total=seconds)
            ) as resp:
                raw_result = await resp.text()
        except TimeoutError as e:
            raise TelegramNetworkError(method=method, message="Request timeout error") from e
        except ClientError as e:
            raise TelegramNetworkError(method=method, message=f"{type(e).__name__}: {e}") from e
        if self.answered_ok(method, resp.status, raw_result):
            return cast(TelegramType, None)  # no Response object either: see _RESPONSE_TYPES in telegram.py
        response = self.check_response(bot=bot, method=method, status_code=resp.status, content=raw_result)
        return cast(TelegramType, response.result)

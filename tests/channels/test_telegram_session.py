"""The Telegram channel's HTTP session (channels/telegram_session.py): the answer of a call whose result
the gateway never reads is checked without building aiogram's models; refusals still raise aiogram's
exceptions, and the results that are read are aiogram's models as before."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.exceptions import ClientDecodeError, TelegramForbiddenError
from aiogram.methods import GetMe, SendMessage
from aiogram.types import User

from channels.telegram_session import JsonAiohttpSession
from tests.support.fakes.telegram import DEFAULT_TOKEN

MESSAGE = {
    "message_id": 7,
    "date": 1764064800,
    "chat": {"id": 42, "type": "private"},
    "text": "hello",
    "reply_markup": {"inline_keyboard": [[{"text": "Paris", "callback_data": "b:welcome:ask:0"}]]},
}


@pytest.fixture
async def session() -> AsyncIterator[JsonAiohttpSession]:
    session = JsonAiohttpSession()
    yield session
    await session.close()


def answer(ok: bool, **fields: object) -> str:
    return json.dumps({"ok": ok, **fields})


async def test_a_sent_message_is_checked_not_modelled(session: JsonAiohttpSession) -> None:
    bot = Bot(DEFAULT_TOKEN, session=session)
    method = SendMessage(chat_id=42, text="hello")
    response = session.check_response(bot, method, 200, answer(True, result=MESSAGE))
    assert response.ok and response.result is None
    modelled = BaseSession.check_response(session, bot, method, 200, answer(True, result=MESSAGE))
    assert modelled.result is not None and modelled.result.message_id == 7  # what aiogram alone builds


async def test_a_refusal_still_raises_aiograms_exception(session: JsonAiohttpSession) -> None:
    bot = Bot(DEFAULT_TOKEN, session=session)
    method = SendMessage(chat_id=42, text="hello")
    refusal = answer(False, error_code=403, description="Forbidden: bot was blocked by the user")
    with pytest.raises(TelegramForbiddenError):
        session.check_response(bot, method, 403, refusal)
    with pytest.raises(ClientDecodeError):
        session.check_response(bot, method, 200, "<html>not JSON</html>")


async def test_results_that_are_read_are_still_modelled(session: JsonAiohttpSession) -> None:
    bot = Bot(DEFAULT_TOKEN, session=session)
    me = {"id": 123456789, "is_bot": True, "first_name": "Fake Bot"}
    response = session.check_response(bot, GetMe(), 200, answer(True, result=me))
    assert isinstance(response.result, User) and response.result.id == 123456789

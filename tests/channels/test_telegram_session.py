"""The Telegram channel's HTTP session (channels/telegram_session.py): the answer of a call whose result
the gateway never reads is checked without building aiogram's models (nor a pydantic generic Response,
which pydantic would rebuild on every call); refusals still raise aiogram's exceptions, and the results
that are read are aiogram's models as before."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import ClientDecodeError, TelegramForbiddenError
from aiogram.methods import GetMe, SendMessage
from aiogram.types import User

from channels.telegram_session import JsonAiohttpSession
from tests.support.fakes import FakeTelegram
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
    sent = SendMessage(chat_id=42, text="hello")
    assert session.answered_ok(sent, 200, answer(True, result=MESSAGE))
    assert not session.answered_ok(GetMe(), 200, answer(True, result=MESSAGE))  # read: aiogram models it


async def test_a_refusal_goes_to_aiogram_and_raises_its_exception(session: JsonAiohttpSession) -> None:
    sent = SendMessage(chat_id=42, text="hello")
    refusal = answer(False, error_code=403, description="Forbidden: bot was blocked by the user")
    assert not session.answered_ok(sent, 403, refusal)
    assert not session.answered_ok(sent, 200, answer(False, description="odd"))
    assert not session.answered_ok(sent, 200, "<html>not JSON</html>")
    bot = Bot(DEFAULT_TOKEN, session=session)
    with pytest.raises(TelegramForbiddenError):
        session.check_response(bot, sent, 403, refusal)
    with pytest.raises(ClientDecodeError):
        session.check_response(bot, sent, 200, "<html>not JSON</html>")


async def test_send_returns_nothing_and_read_results_are_still_modelled() -> None:
    async with FakeTelegram() as tg:
        session = JsonAiohttpSession(api=TelegramAPIServer.from_base(tg.url))
        bot = Bot(tg.token, session=session)
        try:
            assert await bot.send_message(42, "hello") is None
            me = await bot.get_me()
            assert isinstance(me, User) and me.id == tg.bot_id
        finally:
            await session.close()
        [call] = tg.calls_to("sendMessage")
        assert call.ok and call.params["text"] == "hello"

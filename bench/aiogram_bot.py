"""A second baseline of the HTTP benchmark: the bot the aiogram documentation teaches, nothing durable.

One process; aiogram's ``Dispatcher`` with a message handler and a button (callback query) handler behind
``SimpleRequestHandler`` (the webhook answers after the handler ran: ``handle_in_background=False``), the
same story engine on state kept in a dict, the replies sent inline, the turn's emails written, a button
press answered with ``callback.answer()``. This is what "a naive bot" usually is; bench/naive_bot.py is a
leaner one, hand-written without the Dispatcher.

    python bench/aiogram_bot.py PORT STORIES_FOLDER TELEGRAM_API_URL TOKEN SECRET OUTBOX
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import CallbackQuery, Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dict_state import DictStories, Effects, from_button, from_message


def main() -> None:
    port, stories, api_url, token, secret = (
        int(sys.argv[1]),
        Path(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
        sys.argv[5],
    )
    outbox = Path(sys.argv[6])
    state = DictStories(stories)
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))
    effects = Effects(bot, outbox)
    dispatcher = Dispatcher()
    numbers = itertools.count(1)  # aiogram hands a handler the message or the query, not the update's id

    @dispatcher.message(F.text)
    async def on_text(message: Message) -> None:
        inbound = from_message(next(numbers), message)
        if inbound is not None:
            await effects.run(*state.handle(inbound))

    @dispatcher.callback_query(F.data)
    async def on_button(callback: CallbackQuery) -> None:
        inbound = from_button(next(numbers), callback)
        if inbound is not None:
            await effects.run(*state.handle(inbound))
        await callback.answer()

    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, handle_in_background=False, secret_token=secret).register(
        app, path="/webhooks/telegram"
    )
    setup_application(app, dispatcher, bot=bot)
    import uvloop  # the same event loop the gateway's roles run on

    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()

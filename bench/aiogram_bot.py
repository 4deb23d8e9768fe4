"""A second baseline of the HTTP benchmark: the bot the aiogram documentation teaches, nothing durable.

One process; aiogram's ``Dispatcher`` with one message handler behind ``SimpleRequestHandler`` (the
webhook answers after the handler ran: ``handle_in_background=False``), the same story engine on state
kept in a dict, and the replies sent inline with ``message.answer``. This is what "a naive bot" usually
is; bench/naive_bot.py is a leaner one, hand-written without the Dispatcher.

    python bench/aiogram_bot.py PORT STORIES_FOLDER TELEGRAM_API_URL TOKEN SECRET
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dict_state import DictStories
from gateway.core.schema import Inbound


def main() -> None:
    port, stories, api_url, token, secret = (
        int(sys.argv[1]),
        Path(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
        sys.argv[5],
    )
    state = DictStories(stories)
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))
    dispatcher = Dispatcher()

    @dispatcher.message(F.text)
    async def on_text(message: Message) -> None:
        assert message.text is not None and message.from_user is not None
        chat, user = str(message.chat.id), str(message.from_user.id)
        message_id = f"telegram:{chat}:{message.message_id}"
        inbound = Inbound(id=message_id, channel="telegram", chat=chat, user=user, text=message.text)
        for reply in state.handle(inbound):
            await message.answer(reply.text)

    app = web.Application()
    SimpleRequestHandler(dispatcher, bot, handle_in_background=False, secret_token=secret).register(
        app, path="/webhooks/telegram"
    )
    setup_application(app, dispatcher, bot=bot)
    import uvloop  # the same event loop the gateway's roles run on

    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()

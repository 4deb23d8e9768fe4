"""The baseline of the HTTP benchmark: the simplest bot that could work, and nothing it does survives.

One process; the webhook handler parses the update with aiogram, runs the same story engine on state kept
in a dict, sends the replies through aiogram's Bot inline (buttons as an inline keyboard), writes the
turn's emails, answers a button press, and only then answers Telegram. No broker, no Redis, no
durability, no order across restarts.

    python bench/naive_bot.py PORT STORIES_FOLDER TELEGRAM_API_URL TOKEN SECRET (ignored) OUTBOX
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.methods import AnswerCallbackQuery, Response, SendMessage
from aiogram.types import Update
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dict_state import DictStories, Effects, from_button, from_message

# The same aiogram workaround the gateway's Telegram channel has (pydantic caches generics weakly), so the
# baseline is not slowed by what the gateway avoids.
_RESPONSE_TYPES = (
    Response[SendMessage.__returning__],  # type: ignore[name-defined,valid-type]
    Response[AnswerCallbackQuery.__returning__],  # type: ignore[name-defined,valid-type]
)


def main() -> None:
    port, stories, api_url, token = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    outbox = Path(sys.argv[6])
    state = DictStories(stories)
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))
    effects = Effects(bot, outbox)

    async def webhook(request: web.Request) -> web.Response:
        update = Update.model_validate(await request.json(), context={"bot": bot})
        query = update.callback_query
        if update.message is not None:
            inbound = from_message(update.update_id, update.message)
        elif query is not None:
            inbound = from_button(update.update_id, query)
        else:
            inbound = None
        if inbound is not None:
            await effects.run(*state.handle(inbound))
        if query is not None:
            await bot.answer_callback_query(query.id)
        return web.Response()

    async def close_bot(_: web.Application) -> None:
        await bot.session.close()

    app = web.Application()
    app.router.add_post("/webhooks/telegram", webhook)
    app.on_cleanup.append(close_bot)
    import uvloop  # the same event loop the gateway's roles run on

    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()

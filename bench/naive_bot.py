"""The baseline of the HTTP benchmark: the simplest bot that could work, and nothing it does survives.

One process; the webhook handler parses the update with aiogram, runs the same story engine on state kept
in a dict, sends the replies through aiogram's Bot inline, and only then answers Telegram. No broker, no
Redis, no durability, no order across restarts.

    python bench/naive_bot.py PORT STORIES_FOLDER TELEGRAM_API_URL TOKEN [SECRET (ignored)]
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.methods import Response, SendMessage
from aiogram.types import Update
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dict_state import DictStories
from gateway.core.schema import Inbound

# The same aiogram workaround the gateway's Telegram channel has (pydantic caches generics weakly), so the
# baseline is not slowed by what the gateway avoids.
_RESPONSE_TYPE = Response[SendMessage.__returning__]  # type: ignore[name-defined]


def main() -> None:
    port, stories, api_url, token = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    state = DictStories(stories)
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))

    async def webhook(request: web.Request) -> web.Response:
        update = Update.model_validate(await request.json(), context={"bot": bot})
        message = update.message
        if message is None or message.text is None or message.from_user is None:
            return web.Response()
        chat, user = str(message.chat.id), str(message.from_user.id)
        message_id = f"telegram:update:{update.update_id}"
        inbound = Inbound(id=message_id, channel="telegram", chat=chat, user=user, text=message.text)
        for reply in state.handle(inbound):
            await bot.send_message(message.chat.id, reply.text)
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

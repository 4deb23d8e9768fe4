"""Baselines of the HTTP benchmark: the bot the aiogram documentation teaches, with its state in a dict or
in Redis through aiogram's own ``RedisStorage``.

One process; aiogram's ``Dispatcher`` with a message handler and a button (callback query) handler behind
``SimpleRequestHandler`` (the webhook answers after the handler ran: ``handle_in_background=False``), the
same story engine, the replies sent inline, the turn's emails written, a button press answered with
``callback.answer()``. This is what "a naive bot" usually is; bench/naive_bot.py is a leaner one,
hand-written without the Dispatcher.

With a Redis URL the conversation's session and the user's attributes are the handler's FSM data
(``FSMContext.get_data`` / ``set_data`` on ``RedisStorage``, the Dispatcher reading the FSM state of every
update as it always does): the idiomatic aiogram bot whose state survives a restart, though nothing else
does (an update in the middle of its handler when the process dies is lost; replies may go twice).

    python bench/aiogram_bot.py PORT STORIES_FOLDER TELEGRAM_API_URL TOKEN SECRET OUTBOX [REDIS_URL PREFIX]
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage
from aiogram.types import CallbackQuery, Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dict_state import DictStories, Effects, from_button, from_message
from gateway.core.schema import Inbound
from gateway.core.store.redis import decode_session, encode_session


def main() -> None:
    port, stories, api_url, token, secret = (
        int(sys.argv[1]),
        Path(sys.argv[2]),
        sys.argv[3],
        sys.argv[4],
        sys.argv[5],
    )
    outbox = Path(sys.argv[6])
    redis_url, prefix = (sys.argv[7], sys.argv[8]) if len(sys.argv) > 8 else (None, "")
    state = DictStories(stories)
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))
    effects = Effects(bot, outbox)
    storage: BaseStorage = MemoryStorage()
    if redis_url is not None:
        # redis-py's default pool raises MaxConnectionsError past its size under 200 users; a blocking
        # pool waits for a connection instead, as a deployed bot would be configured once it hit that.
        pool = BlockingConnectionPool.from_url(redis_url, max_connections=64, timeout=10)
        storage = RedisStorage(Redis(connection_pool=pool), key_builder=DefaultKeyBuilder(prefix=prefix))
    dispatcher = Dispatcher(storage=storage)
    numbers = itertools.count(1)  # aiogram hands a handler the message or the query, not the update's id

    async def in_dict(inbound: Inbound, _: FSMContext) -> None:
        await effects.run(*state.handle(inbound))

    async def in_redis(inbound: Inbound, context: FSMContext) -> None:
        data = await context.get_data()
        session = decode_session(data["session"].encode()) if data.get("session") else None
        attributes: dict[str, str] = data.get("attributes", {})
        session, replies, emails = state.turn(session, attributes, inbound)
        encoded = encode_session(session).decode() if session is not None else None
        await context.set_data({"session": encoded, "attributes": attributes})
        await effects.run(replies, emails)

    run: Callable[[Inbound, FSMContext], Awaitable[None]] = in_dict if redis_url is None else in_redis

    @dispatcher.message(F.text)
    async def on_text(message: Message, state: FSMContext) -> None:
        inbound = from_message(next(numbers), message)
        if inbound is not None:
            await run(inbound, state)

    @dispatcher.callback_query(F.data)
    async def on_button(callback: CallbackQuery, state: FSMContext) -> None:
        inbound = from_button(next(numbers), callback)
        if inbound is not None:
            await run(inbound, state)
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

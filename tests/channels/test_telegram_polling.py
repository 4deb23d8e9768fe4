"""Long polling against the fake Bot API (``gateway telegram set-webhook`` is in tests/app)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from channels.telegram import ALLOWED_UPDATES, TelegramChannel
from channels.telegram_polling import TelegramPoller
from gateway.core.errors import BusUnavailable
from gateway.core.schema import Inbound
from tests.support.fakes import FakeTelegram, telegram_callback_update, telegram_text_update


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def channel(tg: FakeTelegram) -> AsyncIterator[TelegramChannel]:
    channel = TelegramChannel(tg.token, api_url=tg.url, serve_webhook=False)
    yield channel
    await channel.close()


class Collector:
    """An ``accept`` callback that can be told to fail, and signals each batch it took."""

    def __init__(self, failures: int = 0) -> None:
        self.messages: list[Inbound] = []
        self.failures = failures
        self.calls = 0
        self.took = asyncio.Event()

    async def __call__(self, messages: Sequence[Inbound]) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise BusUnavailable("broker away")
        self.messages.extend(messages)
        self.took.set()

    async def wait(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.messages) < count:
                self.took.clear()
                await self.took.wait()


async def test_polling_feeds_the_same_parse_path_and_answers_presses(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    assert channel.endpoints() == ()
    tg.webhook = {"url": "https://old.example.com/hook"}
    tg.push_update(telegram_text_update(1, 42, "hi"))
    tg.push_update(telegram_callback_update(2, 42, "Paris", title="Paris"))
    accept = Collector()
    poller = TelegramPoller(channel, poll_timeout=1)
    task = asyncio.create_task(poller.run(accept))
    await accept.wait(2)
    await tg.wait_for_calls(1, method="answerCallbackQuery")
    tg.push_update(telegram_text_update(3, 42, "again"))
    await accept.wait(3)
    poller.stop()
    await asyncio.wait_for(task, 5)
    assert [m.id for m in accept.messages] == ["telegram:update:1", "telegram:update:2", "telegram:update:3"]
    assert accept.messages[1].button is not None
    assert poller.offset == 4
    assert tg.webhook == {}  # deleted first: Telegram refuses getUpdates while a webhook is set
    [first_poll, *_] = tg.calls_to("getUpdates", ok=True)
    assert first_poll.params["allowed_updates"] == list(ALLOWED_UPDATES)


async def test_a_batch_the_broker_refused_is_fetched_again(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    tg.push_update(telegram_text_update(10, 7, "one"))
    accept = Collector(failures=2)
    poller = TelegramPoller(channel, poll_timeout=1, backoff_base=0.01)
    task = asyncio.create_task(poller.run(accept))
    await accept.wait(1)
    poller.stop()
    await asyncio.wait_for(task, 5)
    assert [m.id for m in accept.messages] == ["telegram:update:10"]
    assert accept.calls == 3
    assert poller.offset == 11


async def test_polling_waits_out_flood_control_and_server_errors(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    tg.fail_next(1, 500, method="getUpdates")
    tg.fail_next(1, 429, method="getUpdates", retry_after=1)
    tg.push_update(telegram_text_update(20, 7, "late"))
    accept = Collector()
    poller = TelegramPoller(channel, poll_timeout=1, backoff_base=0.01, delete_webhook=False)
    task = asyncio.create_task(poller.run(accept))
    await accept.wait(1)
    poller.stop()
    await asyncio.wait_for(task, 5)
    assert [c.status for c in tg.calls_to("getUpdates")][:3] == [500, 429, 200]


async def test_stop_interrupts_a_long_poll(channel: TelegramChannel, tg: FakeTelegram) -> None:
    poller = TelegramPoller(channel, poll_timeout=30, delete_webhook=False)
    task = asyncio.create_task(poller.run(Collector()))
    assert tg.long_polling is not None
    async with asyncio.timeout(5):  # far less than the 30 s poll
        await tg.long_polling.wait()
        poller.stop()
        await task

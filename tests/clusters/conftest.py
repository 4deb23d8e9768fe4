"""The cluster fixtures live in tests/conftest.py, so that other folders' tests (the store and bus
contracts) can run on the clusters too. Here: the fake Telegram API and the SMTP sink the whole-gateway
tests on the clusters share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.fakes import FakeTelegram
from tests.support.smtp_sink import SmtpSink


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = await SmtpSink().start()
    yield sink
    await sink.stop()

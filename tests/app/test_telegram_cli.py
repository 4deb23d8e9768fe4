"""``gateway telegram set-webhook`` against the fake Bot API: the public URL and secret registered, or a
refusal in one line."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from channels.telegram import ALLOWED_UPDATES
from gateway.app.telegram_cli import TelegramSetupError, set_webhook
from gateway.core.settings import Settings
from tests.support.fakes import FakeTelegram


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


async def test_set_webhook_registers_public_url_and_secret(tg: FakeTelegram) -> None:
    settings = Settings(
        telegram_bot_token=tg.token,
        telegram_webhook_secret="s3cret",
        telegram_api_url=tg.url,
        public_url="https://bot.example.com",
    )
    url = await set_webhook(settings)
    assert url == "https://bot.example.com/webhooks/telegram"
    assert tg.webhook["url"] == url
    assert tg.webhook["secret_token"] == "s3cret"
    assert tg.webhook["allowed_updates"] == list(ALLOWED_UPDATES)


async def test_set_webhook_reports_refusals_in_one_line(tg: FakeTelegram) -> None:
    settings = Settings(
        telegram_bot_token=tg.token, telegram_api_url=tg.url, public_url="http://127.0.0.1:8080"
    )
    tg.fail_next(1, 400, description="Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
    with pytest.raises(TelegramSetupError, match="HTTPS URL must be provided"):
        await set_webhook(settings)
    with pytest.raises(TelegramSetupError, match="TELEGRAM_BOT_TOKEN"):
        await set_webhook(Settings(telegram_bot_token="not-a-token", telegram_api_url=tg.url))
    with pytest.raises(TelegramSetupError, match="TELEGRAM_BOT_TOKEN is not set"):
        await set_webhook(Settings())

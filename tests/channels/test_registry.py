"""Which channels the settings switch on, and the settings a channel refuses with a clear line."""

from __future__ import annotations

import pytest

from channels.ratelimit import BROADCAST_PACE, SMS_LIMIT, TELEGRAM_LIMIT
from channels.registry import CHANNEL_USER_IDS, build_channels
from channels.slack import SlackChannel
from channels.sms import SmsChannel
from channels.telegram import TelegramChannel
from channels.webchat import WebChatChannel
from gateway.core.errors import SettingsError
from gateway.core.settings import Settings
from gateway.core.store.memory import MemoryStore

TOKEN = "123456789:AAFakeTokenForTests_abcdefghijklmnop"
FULL = {
    "telegram_bot_token": TOKEN,
    "telegram_webhook_secret": "s3cret",
    "telegram_api_url": "http://127.0.0.1:1",
    "slack_bot_token": "xoxb-1",
    "slack_signing_secret": "secret",
    "slack_api_url": "http://127.0.0.1:2/api/",
    "twilio_account_sid": "AC1",
    "twilio_auth_token": "token",
    "twilio_from_number": "+15005550006",
    "twilio_api_url": "http://127.0.0.1:3",
}


async def close_all(channels: list) -> None:  # type: ignore[type-arg]
    for channel in channels:
        await channel.close()


async def test_no_settings_no_channels() -> None:
    assert build_channels(Settings(), MemoryStore()) == []


async def test_every_channel_with_its_endpoints_and_limits() -> None:
    channels = build_channels(Settings(**FULL), MemoryStore())  # type: ignore[arg-type]
    try:
        telegram, slack, sms = channels
        assert isinstance(telegram, TelegramChannel) and telegram.api_url == "http://127.0.0.1:1"
        assert isinstance(slack, SlackChannel) and slack.api_url == "http://127.0.0.1:2/api/"
        assert isinstance(sms, SmsChannel) and sms.api_url == "http://127.0.0.1:3"
        paths = [e.path for c in channels for e in c.endpoints()]
        assert paths == [
            "/webhooks/telegram",
            "/webhooks/slack/events",
            "/webhooks/slack/interactions",
            "/webhooks/sms",
        ]
        assert (telegram.rate_limit.per_second, telegram.rate_limit.per_chat_interval) == (30.0, 1.0)
        assert slack.rate_limit.per_chat_interval == 1.0
        assert sms.rate_limit.per_second == 1.0
    finally:
        await close_all(channels)


@pytest.mark.parametrize("missing", ["slack_signing_secret", "twilio_from_number"])
async def test_a_channel_needs_all_its_settings(missing: str) -> None:
    settings = Settings(**{**FULL, missing: None})  # type: ignore[arg-type]
    channels = build_channels(settings, MemoryStore())
    try:
        assert len(channels) == 2
    finally:
        await close_all(channels)


async def test_polling_mode_serves_no_telegram_webhook() -> None:
    [telegram] = build_channels(Settings(telegram_bot_token=TOKEN, telegram_mode="polling"), MemoryStore())
    try:
        assert telegram.endpoints() == ()
        assert "long polling" in telegram.describe()
    finally:
        await telegram.close()


@pytest.mark.parametrize(
    ("settings", "variable"),
    [
        ({"telegram_bot_token": "nonsense"}, "TELEGRAM_BOT_TOKEN"),
        ({"telegram_bot_token": TOKEN, "telegram_webhook_secret": "has space"}, "TELEGRAM_WEBHOOK_SECRET"),
    ],
)
async def test_unusable_values_name_their_variable(settings: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}: "):
        build_channels(Settings(**settings), MemoryStore())  # type: ignore[arg-type]


def test_every_channel_has_a_user_id_form_and_a_broadcast_pace() -> None:
    """The admin API checks user ids and broadcasts pace by channel name: every channel must have both."""
    names = {TelegramChannel.name, SlackChannel.name, SmsChannel.name, WebChatChannel.name}
    assert set(CHANNEL_USER_IDS) == names == set(BROADCAST_PACE)
    assert BROADCAST_PACE["telegram"] == TELEGRAM_LIMIT.per_second
    assert BROADCAST_PACE["sms"] == SMS_LIMIT.per_second
    for name, example in (("telegram", "4711"), ("slack", "U0123ABC"), ("sms", "+447700900123")):
        assert CHANNEL_USER_IDS[name].fullmatch(example)
    assert CHANNEL_USER_IDS["webchat"].fullmatch("Xg1u_fX9RnSNnjHwwsjSw")
    assert not CHANNEL_USER_IDS["sms"].fullmatch("07700900123")

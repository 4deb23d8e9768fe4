"""The channels the settings switch on, built from them in one place (and the pollers some of them need)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from channels.base import Channel
from gateway.core.errors import SettingsError
from gateway.core.settings import Settings
from gateway.core.store.base import Store

if TYPE_CHECKING:
    from channels.telegram import TelegramChannel
    from channels.telegram_polling import TelegramPoller

log = logging.getLogger("gateway.channels")

# Every channel the gateway has, by name, with the form of a user id on it (the admin API checks ids
# with it): Telegram's numeric ids, Slack's user ids, E.164 numbers, the web chat's random ids.
CHANNEL_USER_IDS: dict[str, re.Pattern[str]] = {
    "telegram": re.compile(r"[0-9]{1,20}"),
    "slack": re.compile(r"[A-Za-z0-9]{1,32}"),
    "sms": re.compile(r"\+[1-9][0-9]{5,14}"),
    "webchat": re.compile(r"[A-Za-z0-9_-]{8,64}"),
}

# Bot API setWebhook: secret_token is 1-256 characters of A-Z, a-z, 0-9, _ and -.
_TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


def build_channels(settings: Settings, store: Store, *, web_chat: bool = False) -> list[Channel]:
    """Telegram when its token is set, Slack when token and signing secret are, SMS when all three Twilio
    settings are, the web chat when ``web_chat`` (the process serves HTTP) and ``GATEWAY_WEBCHAT`` are on.
    A value the channel cannot use raises :class:`SettingsError` naming the variable."""
    channels: list[Channel] = []
    if settings.telegram_enabled:
        channels.append(telegram_channel(settings))
    if settings.slack_enabled:
        from channels.slack import SlackChannel

        assert settings.slack_bot_token is not None and settings.slack_signing_secret is not None
        channels.append(
            SlackChannel(
                settings.slack_bot_token,
                settings.slack_signing_secret,
                api_url=settings.slack_api_url,
                store=store,  # support desks: a thread's links
                secret_key=settings.secret_key,  # support desks: the conversation tokens
            )
        )
    if settings.sms_enabled:
        from channels.sms import SmsChannel

        assert settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from_number
        channels.append(
            SmsChannel(
                settings.twilio_account_sid,
                settings.twilio_auth_token,
                settings.twilio_from_number,
                store,
                api_url=settings.twilio_api_url,
            )
        )
    if web_chat and settings.webchat:
        from channels.webchat import WebChatChannel

        channels.append(WebChatChannel(settings.instance_id))
    return channels


def build_pollers(settings: Settings, channels: Sequence[Channel]) -> list[TelegramPoller]:
    """The long-polling loops the settings ask for (``TELEGRAM_MODE=polling``), one per such channel."""
    if settings.telegram_mode != "polling":
        return []
    from channels.telegram import TelegramChannel
    from channels.telegram_polling import TelegramPoller

    return [TelegramPoller(channel) for channel in channels if isinstance(channel, TelegramChannel)]


def telegram_channel(settings: Settings) -> TelegramChannel:
    """The Telegram channel of ``TELEGRAM_BOT_TOKEN`` and its secret; :class:`SettingsError` if unusable."""
    from aiogram.utils.token import TokenValidationError  # aiogram takes 2 s to import: only when used

    from channels.telegram import TelegramChannel

    if settings.telegram_bot_token is None:
        raise SettingsError("TELEGRAM_BOT_TOKEN: not set")
    secret = settings.telegram_webhook_secret
    if secret is not None and not _TELEGRAM_SECRET.fullmatch(secret):
        raise SettingsError(
            "TELEGRAM_WEBHOOK_SECRET: use 1 to 256 letters, digits, '_' or '-' (Telegram's rule)"
        )
    webhook = settings.telegram_mode == "webhook"
    if webhook and secret is None:
        log.warning("TELEGRAM_WEBHOOK_SECRET is not set: anyone who knows the URL can post Telegram updates")
    try:
        return TelegramChannel(
            settings.telegram_bot_token,
            api_url=settings.telegram_api_url,
            webhook_secret=secret,
            serve_webhook=webhook,
        )
    except TokenValidationError:
        raise SettingsError(
            "TELEGRAM_BOT_TOKEN: not a bot token (expected digits, ':', then the secret)"
        ) from None

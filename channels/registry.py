"""The channels the settings switch on, built from them in one place."""

from __future__ import annotations

import logging
import re

from channels.base import Channel
from gateway.settings import Settings, SettingsError
from gateway.store.base import Store

log = logging.getLogger("gateway.channels")

# Bot API setWebhook: secret_token is 1-256 characters of A-Z, a-z, 0-9, _ and -.
_TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


def build_channels(settings: Settings, store: Store) -> list[Channel]:
    """Telegram when its token is set, Slack when token and signing secret are, SMS when all three Twilio
    settings are. A value the channel cannot use raises :class:`SettingsError` naming the variable."""
    channels: list[Channel] = []
    if settings.telegram_enabled:
        channels.append(_telegram(settings))
    if settings.slack_enabled:
        from channels.slack import SlackChannel

        assert settings.slack_bot_token is not None and settings.slack_signing_secret is not None
        channels.append(
            SlackChannel(
                settings.slack_bot_token, settings.slack_signing_secret, api_url=settings.slack_api_url
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
    return channels


def _telegram(settings: Settings) -> Channel:
    from aiogram.utils.token import TokenValidationError  # aiogram takes 2 s to import: only when used

    from channels.telegram import TelegramChannel

    assert settings.telegram_bot_token is not None
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

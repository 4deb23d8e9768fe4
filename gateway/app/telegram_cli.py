"""``gateway telegram set-webhook``: tell Telegram where the gateway's webhook is, and its secret."""

from __future__ import annotations

from aiogram.exceptions import ClientDecodeError, TelegramAPIError

from channels.registry import telegram_channel
from channels.telegram import ALLOWED_UPDATES, WEBHOOK_PATH
from gateway.core.errors import SettingsError
from gateway.core.settings import Settings


class TelegramSetupError(Exception):
    """A problem to print as one line (exit status 1)."""


def webhook_url(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + WEBHOOK_PATH


async def set_webhook(settings: Settings, *, drop_pending_updates: bool = False) -> str:
    """Register ``GATEWAY_PUBLIC_URL/webhooks/telegram`` (with ``TELEGRAM_WEBHOOK_SECRET`` as the secret
    token, when set) through aiogram's ``Bot.set_webhook`` on ``TELEGRAM_API_URL``; return the URL."""
    if not settings.telegram_bot_token:
        raise TelegramSetupError("TELEGRAM_BOT_TOKEN is not set")
    url = webhook_url(settings)
    try:
        channel = telegram_channel(settings)
    except SettingsError as exc:
        raise TelegramSetupError(str(exc)) from None
    try:
        await channel.bot.set_webhook(
            url,
            secret_token=settings.telegram_webhook_secret,
            allowed_updates=list(ALLOWED_UPDATES),
            drop_pending_updates=drop_pending_updates or None,
        )
    except (TelegramAPIError, ClientDecodeError) as exc:
        raise TelegramSetupError(f"Telegram refused the webhook {url}: {exc}") from None
    finally:
        await channel.close()
    return url

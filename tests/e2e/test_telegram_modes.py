"""`gateway telegram set-webhook` and the long-polling mode, as operators and developers run them."""

from __future__ import annotations

from tests.support.deployment import SECRET, sent_texts
from tests.support.fakes import FakeTelegram, telegram_text_update
from tests.support.processes import GatewayProcess, Start


async def test_set_webhook_registers_the_public_url_and_secret(
    telegram: FakeTelegram, role_env: dict[str, str]
) -> None:
    env = {**role_env, "GATEWAY_PUBLIC_URL": "https://bot.example.com"}
    command = await GatewayProcess("telegram", "set-webhook", env=env).start()
    assert await command.wait(30) == 0, command.output()
    assert "Telegram will post updates to https://bot.example.com/webhooks/telegram" in command.output()
    assert telegram.webhook["url"] == "https://bot.example.com/webhooks/telegram"
    assert telegram.webhook["secret_token"] == SECRET


async def test_set_webhook_refused_is_one_line(telegram: FakeTelegram, role_env: dict[str, str]) -> None:
    telegram.fail_next(
        1, 400, method="setWebhook", description="Bad Request: bad webhook: HTTPS url must be provided"
    )
    command = await GatewayProcess("telegram", "set-webhook", env=role_env).start()
    assert await command.wait(30) == 1
    assert command.lines[-1].startswith("error: Telegram refused the webhook")
    assert "Traceback" not in command.output()


async def test_polling_mode_needs_no_public_url(start_role: Start, telegram: FakeTelegram) -> None:
    await start_role("serve", TELEGRAM_MODE="polling")
    await start_role("worker")
    telegram.push_update(telegram_text_update(900, 71, "n1"))
    telegram.push_update(telegram_text_update(901, 71, "n2"))
    await telegram.wait_for_calls(2, method="sendMessage", ok=True, timeout=20)
    assert sent_texts(telegram, 71) == ["got n1", "got n2"]

"""Separate `serve`, `worker` and `mailer` processes on the real RabbitMQ and Redis carry a conversation end
to end: Telegram webhook in, reply out through aiogram to the fake Bot API, email out over SMTP."""

from __future__ import annotations

import asyncio
import signal

import aiohttp

from tests.support.deployment import TelegramUser, sent_texts
from tests.support.fakes import FakeTelegram
from tests.support.processes import Start
from tests.support.smtp_sink import SmtpSink


async def test_conversation_through_separate_processes(
    start_role: Start, telegram: FakeTelegram, smtp: SmtpSink
) -> None:
    serve = await start_role("serve")
    worker = await start_role("worker")
    mailer = await start_role("mailer")
    address = (await serve.wait_for(r"listening on (http://\S+)")).group(1)
    assert "channels: telegram" in serve.output()

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{address}/readyz") as response:
            assert response.status == 200
        user = TelegramUser(http, address, chat_id=4242, first_update=100)
        assert await user.say("hi") == 200
        (question,) = await telegram.wait_for_calls(1, method="sendMessage", ok=True)
        assert question.params["text"] == "What's your name?"
        keyboard = question.params["reply_markup"]["inline_keyboard"]
        buttons = [button for row in keyboard for button in row]
        assert [b["text"] for b in buttons] == ["Ada", "Grace"]

        assert await user.press(buttons[1]["callback_data"], "Grace") == 200
        await telegram.wait_for_calls(2, method="sendMessage", ok=True)
        await telegram.wait_for_calls(1, method="answerCallbackQuery", ok=True)

        assert await user.say("help") == 200
        await telegram.wait_for_calls(3, method="sendMessage", ok=True)
        assert await user.say("my printer is on {{fire}}") == 200
        await telegram.wait_for_calls(4, method="sendMessage", ok=True)
        (email,) = await smtp.wait_for(1)

        # A forged secret is refused and publishes nothing.
        assert await user.post({"update_id": 1, "message": {}}, secret="wrong") == 401
        async with http.get(f"{address}/metrics") as response:
            metrics = await response.text()

    assert sent_texts(telegram, 4242) == [
        "What's your name?",
        "Nice to meet you, Grace.",
        "What is the problem?",
        "Ticket sent.",
    ]
    assert email["Subject"] == "Ticket from Grace" and email["To"] == "support@example.com"
    assert "The user wrote: my printer is on {{fire}}" in email.get_content()
    assert 'gateway_webhook_requests_total{channel="telegram",outcome="accepted"} 4.0' in metrics
    assert 'gateway_webhook_requests_total{channel="telegram",outcome="refused_401"} 1.0' in metrics

    for process in (serve, worker, mailer):
        process.signal(signal.SIGTERM)
    codes = await asyncio.gather(serve.wait(12), worker.wait(12), mailer.wait(12))
    assert codes == [0, 0, 0], [p.output() for p in (serve, worker, mailer)]


async def test_duplicate_webhook_delivery_is_handled_once(start_role: Start, telegram: FakeTelegram) -> None:
    serve = await start_role("serve")
    await start_role("worker")
    address = (await serve.wait_for(r"listening on (http://\S+)")).group(1)
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, address, chat_id=77, first_update=500)
        from tests.support.fakes import telegram_text_update

        update = telegram_text_update(501, 77, "n1")
        assert [await user.post(update) for _ in range(3)] == [200, 200, 200]
        user.next_update = 501
        assert await user.say("n2") == 200
        await telegram.wait_for_calls(2, method="sendMessage", ok=True)
    assert sent_texts(telegram, 77) == ["got n1", "got n2"]


async def test_many_conversations_keep_their_order_across_workers(
    start_role: Start, telegram: FakeTelegram
) -> None:
    """Three workers share four partitions; every chat sees its replies in the order it wrote."""
    serve = await start_role("serve")
    for _ in range(3):
        await start_role("worker")
    address = (await serve.wait_for(r"listening on (http://\S+)")).group(1)
    chats, per_chat = 12, 5
    async with aiohttp.ClientSession() as http:
        users = [
            TelegramUser(http, address, chat_id=1000 + c, first_update=10_000 * (c + 1)) for c in range(chats)
        ]

        async def chat(user: TelegramUser) -> None:
            for n in range(per_chat):
                assert await user.say(f"n{n}") == 200

        await asyncio.gather(*(chat(u) for u in users))
        await telegram.wait_for_calls(chats * per_chat, method="sendMessage", ok=True, timeout=30)
    for user in users:
        assert sent_texts(telegram, user.chat_id) == [f"got n{n}" for n in range(per_chat)]


async def test_serve_alone_draws_the_map_from_the_stories_folder(
    start_role: Start, role_env: dict[str, str]
) -> None:
    serve = await start_role("serve")
    address = (await serve.wait_for(r"listening on (http://\S+)")).group(1)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{address}/map") as response:
            assert response.status == 200 and "greet" in await response.text()
        from pathlib import Path

        (Path(role_env["GATEWAY_STORIES"]) / "broken.yml").write_text("stories:\n  x:\n    steps: []\n")
        async with http.get(f"{address}/map") as response:
            assert response.status == 500 and "broken.yml:" in await response.text()

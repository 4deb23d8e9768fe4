"""Hot reload: a changed stories folder is checked and swapped in while the gateway runs."""

from __future__ import annotations

import signal
from pathlib import Path

import aiohttp

from tests.support.deployment import TelegramUser, sent_texts
from tests.support.fakes import FakeTelegram
from tests.support.processes import Start

NEW_STORIES = """\
bot:
  fallback: fallback
stories:
  greet:
    triggers: [hi]
    steps:
      - id: hello
        actions:
          - message: Hello again!
  fallback:
    steps:
      - id: sorry
        actions:
          - message: "Sorry, try hi or help."
"""


async def test_run_watches_the_folder_keeps_old_stories_on_a_broken_edit(
    start_role: Start, telegram: FakeTelegram, role_env: dict[str, str]
) -> None:
    stories = Path(role_env["GATEWAY_STORIES"]) / "main.yml"
    gateway = await start_role("run", GATEWAY_AMQP_URL="", GATEWAY_REDIS_URL="")
    address = (await gateway.wait_for(r"listening on (http://\S+)")).group(1)
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, address, chat_id=61, first_update=100)
        assert await user.say("hi") == 200  # now waiting on greet/save
        await telegram.wait_for_calls(1, method="sendMessage", ok=True)

        stories.write_text(NEW_STORIES)  # greet/save is gone
        await gateway.wait_for(r"stories reloaded")
        assert await user.say("Ada") == 200  # nothing waits any more: the fallback answers
        assert await user.say("hi") == 200
        await telegram.wait_for_calls(3, method="sendMessage", ok=True)

        stories.write_text(NEW_STORIES + "  broken:\n    steps: [{id: a, next: nowhere}]\n")
        await gateway.wait_for(r"keeping the previous stories")
        assert await user.say("hi") == 200
        await telegram.wait_for_calls(4, method="sendMessage", ok=True)

    assert sent_texts(telegram, 61) == [
        "What's your name?",
        "Sorry, try hi or help.",
        "Hello again!",
        "Hello again!",
    ]
    assert any(line.startswith(f"{stories}:") or f" {stories}:" in line for line in gateway.lines), (
        gateway.output()
    )
    assert gateway.process is not None and gateway.process.returncode is None


async def test_worker_reloads_on_sighup(
    start_role: Start, telegram: FakeTelegram, role_env: dict[str, str]
) -> None:
    serve = await start_role("serve")
    worker = await start_role("worker")
    address = (await serve.wait_for(r"listening on (http://\S+)")).group(1)
    (Path(role_env["GATEWAY_STORIES"]) / "main.yml").write_text(NEW_STORIES)
    worker.signal(signal.SIGHUP)
    await worker.wait_for(r"stories reloaded")
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, address, chat_id=62, first_update=200)
        assert await user.say("hi") == 200
        await telegram.wait_for_calls(1, method="sendMessage", ok=True)
    assert sent_texts(telegram, 62) == ["Hello again!"]
    assert "the stories changed on disk" not in worker.output(), "a worker does not watch unless asked"

"""A Telegram user handed over to a Slack desk and back, through separate `serve` and `worker` processes on
the real RabbitMQ and Redis, with the fake Telegram and Slack APIs: the thread opens with the ticket and a
Hand back button, the user's messages are thread replies, a person's thread replies reach the user once,
the bot's own posts are never taken for a person's, and the button hands back to the `resume` story."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.core.desk import HANDBACK_PREFIX
from tests.support.deployment import SECRET, TelegramUser, address_of, sent_texts
from tests.support.fakes import (
    FakeSlack,
    FakeTelegram,
    slack_block_action,
    slack_event_callback,
    slack_event_request,
    slack_interaction_request,
    slack_message_event,
)
from tests.support.processes import GatewayProcess, Start

SLACK_SECRET = "e2e-slack-signing-secret"
DESK = "C0DESK"
AGENT = "U0AGENT"
STORIES = f"""\
bot:
  fallback: fallback
stories:
  fallback:
    steps:
      - id: sorry
        actions:
          - message: Sorry?
  human:
    triggers: [human]
    steps:
      - id: ask
        actions:
          - message: What is the problem?
        next: hand
      - id: hand
        actions:
          - set_session: {{Problem: "{{{{@message}}}}"}}
          - message: Passing you to a person.
          - handoff:
              desk: slack
              to: {DESK}
              summary: "Problem: {{{{@session.Problem}}}}"
              until: 2h
              resume: csat
  csat:
    steps:
      - id: rate
        actions:
          - message: "Back with the bot. Was {{{{@session.Problem}}}} solved?"
"""


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def desk_env(slack: FakeSlack, tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "desk-stories"
    folder.mkdir()
    (folder / "main.yml").write_text(STORIES)
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SLACK_SECRET,
        "SLACK_API_URL": slack.url,
        "GATEWAY_SECRET_KEY": "e2e-desk-key",
        "GATEWAY_STORIES": str(folder),
        "GATEWAY_RATE_LIMITS": "false",
    }


async def post_event(
    http: aiohttp.ClientSession, address: str, payload: dict[str, Any], retry: int | None = None
) -> int:
    request = slack_event_request(payload, SLACK_SECRET, retry_num=retry)
    async with http.post(address + request.path, data=request.body, headers=request.headers) as response:
        return response.status


async def click(http: aiohttp.ClientSession, address: str, value: str, thread_ts: str) -> int:
    action = slack_block_action("trigger-e2e-1", DESK, AGENT, value, title="Hand back", thread_ts=thread_ts)
    request = slack_interaction_request(action, SLACK_SECRET)
    async with http.post(address + request.path, data=request.body, headers=request.headers) as response:
        return response.status


def shown(post: dict[str, Any]) -> str:
    """What a post shows: its text and the text of its blocks."""
    texts = [str(post.get("text", ""))]
    texts += [str(block.get("text", {}).get("text", "")) for block in post.get("blocks", [])]
    return "\n".join(texts)


def desk_posts(slack: FakeSlack) -> list[dict[str, Any]]:
    return [post for post in slack.posted if post["channel"] == DESK]


async def test_a_slack_desk_answers_a_telegram_user_and_hands_back(
    start_role: Start, telegram: FakeTelegram, slack: FakeSlack, desk_env: dict[str, str]
) -> None:
    serve = await start_role("serve", **desk_env)
    await start_role("worker", **desk_env)
    address = await address_of(serve)
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, address, chat_id=4242, first_update=9000)
        assert await user.say("human") == 200
        assert await user.say("the printer is on fire") == 200
        await telegram.wait_for_calls(2, method="sendMessage", ok=True)
        await slack.wait_for_calls(1, method="chat.postMessage", ok=True)
        [root] = desk_posts(slack)
        assert "Problem: the printer is on fire" in shown(root)
        assert "bot: What is the problem?" in shown(root) and "user: human" in shown(root)
        buttons = [e for block in root["blocks"] if block["type"] == "actions" for e in block["elements"]]
        [button] = [b for b in buttons if b["value"].startswith(HANDBACK_PREFIX)]
        assert button["value"].startswith(HANDBACK_PREFIX)

        # The user goes on writing: a reply in the thread; the bot says nothing.
        assert await user.say("hello? anyone?") == 200
        await slack.wait_for_calls(2, method="chat.postMessage", ok=True)
        thread_post = desk_posts(slack)[1]
        assert thread_post["thread_ts"] == root["ts"] and "hello? anyone?" in shown(thread_post)

        # Slack sends the bot its own posts back as events: never taken for a person's answer.
        for n, own in enumerate(desk_posts(slack)):
            assert await post_event(http, address, slack_event_callback(f"EvOwn{n}", slack.echo(own))) == 200
        # A person answers in the thread (and Slack, not hearing back in time, sends the event again).
        answer = slack_message_event(
            "EvAnswer1", DESK, AGENT, "Hi, Ann here. Unplug it.", thread_ts=root["ts"], channel_type="channel"
        )
        assert await post_event(http, address, answer) == 200
        assert await post_event(http, address, answer, retry=1) == 200
        await telegram.wait_for_calls(3, method="sendMessage", ok=True)

        assert await click(http, address, button["value"], root["ts"]) == 200
        await telegram.wait_for_calls(4, method="sendMessage", ok=True)
        # Handed back: a person's late answer reaches nobody; the bot has the conversation again.
        late = slack_message_event(
            "EvLate1", DESK, AGENT, "one more thing", thread_ts=root["ts"], channel_type="channel"
        )
        assert await post_event(http, address, late) == 200
        assert await user.say("human") == 200
        await telegram.wait_for_calls(5, method="sendMessage", ok=True)

    assert sent_texts(telegram, 4242) == [
        "What is the problem?",
        "Passing you to a person.",
        "Hi, Ann here. Unplug it.",
        "Back with the bot. Was the printer is on fire solved?",
        "What is the problem?",
    ]
    assert any("Handed back to the bot" in shown(post) for post in desk_posts(slack))


async def test_a_forged_hand_back_button_hands_nothing_back(
    start_role: Start, telegram: FakeTelegram, slack: FakeSlack, desk_env: dict[str, str]
) -> None:
    serve = await start_role("serve", **desk_env)
    await start_role("worker", **desk_env)
    address = await address_of(serve)
    async with aiohttp.ClientSession() as http:
        user = TelegramUser(http, address, chat_id=4343, first_update=9100)
        assert await user.say("human") == 200
        assert await user.say("late parcel") == 200
        await slack.wait_for_calls(1, method="chat.postMessage", ok=True)
        [root] = desk_posts(slack)
        forged = HANDBACK_PREFIX + "mfrggzdfmztwq2lknnwg23tpobyxe43u"
        assert await click(http, address, forged, root["ts"]) == 200
        assert await user.say("still there?") == 200  # goes to the desk: still handed over
        await slack.wait_for_calls(2, method="chat.postMessage", ok=True)
    assert sent_texts(telegram, 4343) == ["What is the problem?", "Passing you to a person."]
    assert "still there?" in shown(desk_posts(slack)[1])
    assert "hand-back" in serve.output().lower() or "token" in serve.output().lower()


async def test_gateway_run_alone_hands_over_to_a_slack_desk_and_back(
    tmp_path: Path, telegram: FakeTelegram, slack: FakeSlack, desk_env: dict[str, str]
) -> None:
    """Embedded: one `gateway run` (in-process bus and store) does the whole loop with a Slack desk."""
    env = {
        **desk_env,
        "GATEWAY_AMQP_URL": "",
        "GATEWAY_REDIS_URL": "",
        "GATEWAY_PORT": "0",
        "GATEWAY_OUTBOX": str(tmp_path / "outbox"),
        "TELEGRAM_BOT_TOKEN": telegram.token,
        "TELEGRAM_API_URL": telegram.url,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
    }
    gateway = await GatewayProcess("run", env=env).start()
    try:
        await gateway.wait_for(r"INFO .*: ready$")
        address = await address_of(gateway)
        async with aiohttp.ClientSession() as http:
            user = TelegramUser(http, address, chat_id=4444, first_update=9900)
            assert await user.say("human") == 200
            assert await user.say("no signal") == 200
            await slack.wait_for_calls(1, method="chat.postMessage", ok=True)
            [root] = desk_posts(slack)
            answer = slack_message_event(
                "EvRun1",
                DESK,
                AGENT,
                "Restart the router.\n#bot",
                thread_ts=root["ts"],
                channel_type="channel",
            )
            assert await post_event(http, address, answer) == 200
            await telegram.wait_for_calls(4, method="sendMessage", ok=True)
    finally:
        await gateway.stop()
    assert sent_texts(telegram, 4444) == [
        "What is the problem?",
        "Passing you to a person.",
        "Restart the router.",
        "Back with the bot. Was no signal solved?",
    ]

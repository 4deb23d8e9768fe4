"""The Slack support desk: a conversation's thread in the desk channel (posted to the fake Web API), people's
answers in it and its "Hand back" button (signed Events API and interaction requests), through the shared
ingress and deliverer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from channels.base import Refused
from channels.registry import build_channels
from channels.slack import SlackChannel
from channels.slack_desk import HANDBACK_ACTION, THREAD_MISSING
from gateway.core.desk import (
    DESK_OF,
    DESK_POST,
    DESK_TOKEN,
    DESK_TTL,
    HANDBACK_PREFIX,
    THREAD_OF_TS,
    TS_OF_THREAD,
    sign,
)
from gateway.core.errors import StoreUnavailable
from gateway.core.schema import ConversationKey, Inbound, Reply
from gateway.core.settings import Settings
from gateway.core.store.memory import MemoryStore
from tests.support.channels import SpyBus, delivering, post, publish_reply, signed, webhook_client
from tests.support.fakes import (
    FakeSlack,
    slack_block_action,
    slack_event_callback,
    slack_event_request,
    slack_interaction_request,
    slack_message_event,
)
from tests.support.fakes.slack import BOT_USER_ID

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
KEY = "desk-secret-key-for-tests"
DESK = "C0DESK"
STAFF = "U0STAFF"
USER = ConversationKey("telegram", "1111", "1111")
TOKEN = sign(KEY, USER)


class FlakyLinks(MemoryStore):
    """The embedded store whose first ``failures`` link writes fail as if Redis were away (injected)."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures
        self.refused = 0

    async def put_link(self, namespace: str, item: str, value: str, ttl: float) -> None:
        if self.failures > 0:
            self.failures -= 1
            self.refused += 1
            raise StoreUnavailable("redis away (injected)")
        await super().put_link(namespace, item, value, ttl)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def store() -> FlakyLinks:
    return FlakyLinks()


@pytest.fixture
async def channel(slack: FakeSlack, store: FlakyLinks) -> AsyncIterator[SlackChannel]:
    channel = SlackChannel(slack.token, SIGNING_SECRET, api_url=slack.url, store=store, secret_key=KEY)
    assert channel.desk is not None
    channel.desk.backoff_base = 0.001
    yield channel
    await channel.close()


def root(text: str = "Summary: printer on fire\nUser: help!", **meta: str) -> Reply:
    fields = {DESK_OF: str(USER), DESK_POST: "root", DESK_TOKEN: TOKEN, DESK_TTL: "86400", **meta}
    return Reply(
        id="telegram:update:7/r0", channel="slack", chat=DESK, user=USER.user, text=text, meta=fields
    )


def in_thread(text: str = "User: still burning", n: int = 8) -> Reply:
    fields = {DESK_OF: str(USER), DESK_POST: "thread", DESK_TOKEN: TOKEN}
    return Reply(
        id=f"telegram:update:{n}/r0", channel="slack", chat=DESK, user=USER.user, text=text, meta=fields
    )


async def event(
    channel: SlackChannel, event: dict[str, Any], event_id: str = "EvDesk1"
) -> tuple[Inbound, ...]:
    payload = slack_event_callback(event_id, event)
    payload["authorizations"] = [{"team_id": "T0FAKE", "user_id": BOT_USER_ID, "is_bot": True}]
    accepted = await channel.handle_event(signed(slack_event_request(payload, SIGNING_SECRET)))
    return tuple(accepted.messages)


def staff_event(text: str, thread_ts: str, *, user: str = STAFF, **extra: Any) -> dict[str, Any]:
    message = slack_message_event("unused", DESK, user, text, thread_ts=thread_ts, channel_type="channel")
    return {**message["event"], **extra}


async def click(channel: SlackChannel, value: str, trigger: str = "trig-1") -> tuple[Inbound, ...]:
    payload = slack_block_action(trigger, DESK, STAFF, value, title="Hand back", thread_ts=None)
    accepted = await channel.handle_interaction(signed(slack_interaction_request(payload, SIGNING_SECRET)))
    return tuple(accepted.messages)


# Outbound: the thread's first post, and the user's messages in it


async def test_root_is_the_ticket_with_a_hand_back_button_and_links_its_thread(
    channel: SlackChannel, slack: FakeSlack, store: FlakyLinks
) -> None:
    await channel.send(root())
    [call] = slack.calls_to("chat.postMessage", ok=True)
    assert call.headers["Authorization"] == f"Bearer {slack.token}"  # the bot's token
    assert call.params["channel"] == DESK and "thread_ts" not in call.params
    section, actions = call.params["blocks"]
    assert section["text"]["type"] == "plain_text"
    assert section["text"]["text"] == "Summary: printer on fire\nUser: help!"
    [button] = actions["elements"]
    assert (button["text"]["text"], button["value"]) == ("Hand back", HANDBACK_PREFIX + TOKEN)
    assert button["action_id"] == HANDBACK_ACTION
    assert call.params["text"] == "Summary: printer on fire"  # the notification: the first line
    [posted] = slack.posted
    assert await store.get_link(THREAD_OF_TS, f"{DESK}:{posted['ts']}") == TOKEN
    assert await store.get_link(TS_OF_THREAD, f"{DESK}:{TOKEN}") == posted["ts"]


async def test_user_message_goes_in_the_thread(channel: SlackChannel, slack: FakeSlack) -> None:
    await channel.send(root())
    await channel.send(in_thread("User: <b> & more"))
    _, second = slack.calls_to("chat.postMessage", ok=True)
    assert second.params["thread_ts"] == slack.posted[0]["ts"]
    assert second.params["blocks"] == [
        {"type": "section", "text": {"type": "plain_text", "text": "User: <b> & more", "emoji": True}}
    ]
    assert second.params["text"] == "User: &lt;b&gt; &amp; more"


async def test_message_of_a_conversation_without_a_thread_is_posted_plain_saying_so(
    channel: SlackChannel, slack: FakeSlack
) -> None:
    await channel.send(in_thread("User: anyone?"))
    [call] = slack.calls_to("chat.postMessage", ok=True)
    assert "thread_ts" not in call.params and call.params["channel"] == DESK
    [missing, text] = call.params["blocks"]
    assert missing["text"]["text"] == THREAD_MISSING
    assert text["text"]["text"] == "User: anyone?"


async def test_root_and_thread_delivered_in_order_and_threaded(
    channel: SlackChannel, slack: FakeSlack, store: FlakyLinks
) -> None:
    bus = SpyBus()
    async with delivering(bus, store, channel):
        await publish_reply(bus, root())
        for n in range(8, 10):
            await publish_reply(bus, in_thread(f"User: message {n}", n))
        calls = await slack.wait_for_calls(3, method="chat.postMessage", ok=True)
    first, *rest = calls
    assert "thread_ts" not in first.params
    assert [c.params["blocks"][0]["text"]["text"] for c in rest] == [
        f"User: message {n}" for n in range(8, 10)
    ]
    assert {c.params["thread_ts"] for c in rest} == {slack.posted[0]["ts"]}
    assert bus.buried == []


async def test_links_refused_for_a_while_the_root_is_posted_once(
    channel: SlackChannel, slack: FakeSlack, store: FlakyLinks
) -> None:
    store.failures = 5  # within the desk's wait: tried again in place
    bus = SpyBus()
    async with delivering(bus, store, channel):
        await publish_reply(bus, root())
        await publish_reply(bus, in_thread())
        calls = await slack.wait_for_calls(2, method="chat.postMessage")
    assert store.refused == 5
    assert [c.ok for c in calls] == [True, True]
    assert calls[1].params["thread_ts"] == slack.posted[0]["ts"]


async def test_links_refused_beyond_the_wait_the_bus_retries_the_links_not_the_post(
    channel: SlackChannel, slack: FakeSlack, store: FlakyLinks
) -> None:
    assert channel.desk is not None
    channel.desk.link_wait = 0.0  # the first failure gives up: the bus's retries take over
    store.failures = 3
    bus = SpyBus()
    async with delivering(bus, store, channel) as deliverer:
        await publish_reply(bus, root())
        await publish_reply(bus, in_thread())
        calls = await slack.wait_for_calls(2, method="chat.postMessage")
        assert await deliverer.sent.was_sent(root().id)
    assert store.refused == 3
    assert "thread_ts" not in calls[0].params
    assert calls[1].params["thread_ts"] == slack.posted[0]["ts"]
    assert len(slack.calls_to("chat.postMessage")) == 2
    assert channel.desk.pending == {}


async def test_send_again_after_the_links_failed_writes_them_without_posting(
    channel: SlackChannel, slack: FakeSlack, store: FlakyLinks
) -> None:
    assert channel.desk is not None
    channel.desk.link_wait = 0.01
    store.failures = 1_000
    with pytest.raises(StoreUnavailable):
        await channel.send(root())
    assert list(channel.desk.pending) == [root().id]
    store.failures = 0
    await channel.send(root())  # what the bus's next try of the reply does
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert await store.get_link(TS_OF_THREAD, f"{DESK}:{TOKEN}") == slack.posted[0]["ts"]
    assert channel.desk.pending == {}


async def test_root_without_token_and_desk_without_store_are_refused(slack: FakeSlack) -> None:
    bare = SlackChannel(slack.token, SIGNING_SECRET, api_url=slack.url)
    try:
        with pytest.raises(Refused, match="no store"):
            await bare.send(root())
    finally:
        await bare.close()
    desk = SlackChannel(slack.token, SIGNING_SECRET, api_url=slack.url, store=MemoryStore(), secret_key=KEY)
    try:
        with pytest.raises(Refused, match="desk_token"):
            await desk.send(root(**{DESK_TOKEN: ""}))
    finally:
        await desk.close()
    assert slack.calls == []


async def test_root_without_a_usable_ttl_keeps_its_links_a_week(
    channel: SlackChannel, store: FlakyLinks
) -> None:
    await channel.send(root(**{DESK_TTL: "soon"}))
    assert await store.get_link(TS_OF_THREAD, f"{DESK}:{TOKEN}") is not None


async def test_huge_ticket_is_cut_to_fit_one_message(channel: SlackChannel, slack: FakeSlack) -> None:
    await channel.send(root("x" * 3000 * 60))
    [call] = slack.calls_to("chat.postMessage", ok=True)
    blocks = call.params["blocks"]
    assert len(blocks) == 50 and blocks[-1]["type"] == "actions"
    assert blocks[-2]["text"]["text"].startswith("… (")


# Inbound: people's answers in the thread


async def opened(channel: SlackChannel, slack: FakeSlack) -> str:
    """Open the conversation's thread; its ts."""
    await channel.send(root())
    return str(slack.posted[-1]["ts"])


async def test_answer_in_the_thread_is_a_staff_message_of_the_users_conversation(
    channel: SlackChannel, slack: FakeSlack
) -> None:
    thread = await opened(channel, slack)
    files = [
        {
            "id": "F1",
            "name": "shot.png",
            "mimetype": "image/png",
            "url_private": "https://files.slack.com/files-pri/T1-F1/shot.png",
        }
    ]
    answer = staff_event("Try &lt;off&gt; &amp; on", thread, ts="1700000001.000200", files=files)
    [message] = await event(channel, answer, "EvStaff1")
    assert message.kind == "staff"
    assert message.id == "slack:event:EvStaff1"
    assert message.conversation == USER
    assert message.text == "Try <off> & on"
    assert message.user_name == STAFF
    assert message.meta == {}
    assert message.channel_message_id == "1700000001.000200"
    [picture] = message.attachments
    assert (picture.kind, picture.mime, picture.name) == ("image", "image/png", "shot.png")


async def test_answer_with_a_file_share_subtype_is_an_answer(channel: SlackChannel, slack: FakeSlack) -> None:
    thread = await opened(channel, slack)
    files = [{"id": "F2", "name": "a.pdf", "mimetype": "application/pdf", "url_private": "https://f/a.pdf"}]
    [message] = await event(channel, staff_event("see file", thread, subtype="file_share", files=files))
    assert message.kind == "staff" and message.attachments[0].kind == "file"


async def test_our_own_posts_in_the_thread_are_never_echoed(channel: SlackChannel, slack: FakeSlack) -> None:
    thread = await opened(channel, slack)
    await channel.send(in_thread("User: hello"))
    root_echo, thread_echo = (slack.echo(posted) for posted in slack.posted)
    assert thread_echo["thread_ts"] == thread and thread_echo["bot_id"]
    assert await event(channel, root_echo, "EvEcho1") == ()
    assert await event(channel, thread_echo, "EvEcho2") == ()
    as_our_user = {k: v for k, v in thread_echo.items() if k not in ("bot_id", "bot_profile")}
    assert await event(channel, as_our_user, "EvEcho3") == ()  # authorizations name our bot user


async def test_edits_deletions_and_joins_in_the_thread_are_ignored(
    channel: SlackChannel, slack: FakeSlack
) -> None:
    thread = await opened(channel, slack)
    for n, subtype in enumerate(("message_changed", "message_deleted", "channel_join")):
        assert await event(channel, staff_event("x", thread, subtype=subtype), f"EvSub{n}") == ()


async def test_other_threads_and_channel_chatter_are_ignored(channel: SlackChannel, slack: FakeSlack) -> None:
    await opened(channel, slack)
    assert await event(channel, staff_event("not a desk thread", "1600000000.000100")) == ()
    chatter = slack_message_event("EvC", DESK, STAFF, "hi all", channel_type="channel")["event"]
    assert await event(channel, chatter, "EvC") == ()


async def test_mention_in_a_desk_thread_is_only_the_answer(channel: SlackChannel, slack: FakeSlack) -> None:
    thread = await opened(channel, slack)
    mention = {
        "type": "app_mention",
        "user": STAFF,
        "text": f"<@{BOT_USER_ID}> done",
        "ts": "1700000002.000100",
        "channel": DESK,
        "event_ts": "1700000002.000100",
        "thread_ts": thread,
    }
    assert await event(channel, mention, "EvMention1") == ()
    elsewhere = {**mention, "thread_ts": "1600000000.000100"}
    [message] = await event(channel, elsewhere, "EvMention2")  # an ordinary mention: the bot's as before
    assert message.kind == "message" and message.chat == DESK and message.text == "done"


async def test_thread_whose_token_does_not_verify_is_ignored(
    channel: SlackChannel, slack: FakeSlack, store: FlakyLinks
) -> None:
    await store.put_link(THREAD_OF_TS, f"{DESK}:1500000000.000100", sign("another-key", USER), 60)
    assert await event(channel, staff_event("hello?", "1500000000.000100")) == ()


async def test_direct_messages_are_unchanged_with_a_desk(channel: SlackChannel) -> None:
    [message] = await event(channel, slack_message_event("EvDM", "D1", "U1", "hi")["event"], "EvDM")
    assert (message.kind, message.chat, message.user) == ("message", "D1", "U1")


# Inbound: the Hand back button


async def test_hand_back_click_is_a_handback_of_the_users_conversation(channel: SlackChannel) -> None:
    [message] = await click(channel, HANDBACK_PREFIX + TOKEN, "trig-42")
    assert message.kind == "handback"
    assert message.id == "slack:action:trig-42"
    assert message.conversation == USER
    assert message.user_name == STAFF
    assert message.button is None and message.meta == {}


@pytest.mark.parametrize(
    "token",
    [
        sign("another-key", USER),
        TOKEN[:-2] + ("aa" if not TOKEN.endswith("aa") else "bb"),
        "not-a-token",
        "",
    ],
)
async def test_forged_hand_back_is_ignored(channel: SlackChannel, token: str) -> None:
    assert await click(channel, HANDBACK_PREFIX + token) == ()


# Through the shared ingress: signature check and dedup apply


async def test_answer_and_hand_back_through_the_ingress(
    channel: SlackChannel, slack: FakeSlack, store: FlakyLinks
) -> None:
    thread = await opened(channel, slack)
    bus = SpyBus()
    async with webhook_client([channel], bus, store) as (client, _):
        payload = slack_event_callback("EvI1", staff_event("On it", thread))
        first = slack_event_request(payload, SIGNING_SECRET)
        retry = slack_event_request(payload, SIGNING_SECRET, retry_num=1)
        forged = slack_event_request(slack_event_callback("EvI2", staff_event("x", thread)), "wrong")
        assert (await post(client, first))[0] == 200
        assert (await post(client, retry))[0] == 200
        assert (await post(client, forged))[0] == 401
        bad_click = slack_block_action("trig-bad", DESK, STAFF, HANDBACK_PREFIX + "forged")
        good_click = slack_block_action("trig-good", DESK, STAFF, HANDBACK_PREFIX + TOKEN)
        assert (await post(client, slack_interaction_request(bad_click, SIGNING_SECRET)))[0] == 200
        assert (await post(client, slack_interaction_request(good_click, SIGNING_SECRET)))[0] == 200
    assert [(m.id, m.kind) for m in bus.inbound()] == [
        ("slack:event:EvI1", "staff"),
        ("slack:action:trig-good", "handback"),
    ]
    assert {m.conversation for m in bus.inbound()} == {USER}


async def test_store_away_while_reading_a_thread_answers_503(slack: FakeSlack) -> None:
    class LinksAway(MemoryStore):
        async def get_link(self, namespace: str, item: str) -> str | None:
            raise StoreUnavailable("redis away (injected)")

    store = LinksAway()
    channel = SlackChannel(slack.token, SIGNING_SECRET, api_url=slack.url, store=store, secret_key=KEY)
    bus = SpyBus()
    try:
        async with webhook_client([channel], bus, store) as (client, _):
            payload = slack_event_callback("EvAway", staff_event("hello", "1700000000.000100"))
            status, _ = await post(client, slack_event_request(payload, SIGNING_SECRET))
    finally:
        await channel.close()
    assert status == 503  # Slack delivers it again
    assert bus.published == []


async def test_post_answer_is_slacks_wire_format(channel: SlackChannel) -> None:
    """What the desk reads from chat.postMessage: ``channel`` and ``ts`` beside ``ok`` and ``message``."""
    answer = await channel._post(channel=DESK, text="hi", blocks=[])
    assert answer["ok"] is True and answer["channel"] == DESK
    assert answer["message"]["ts"] == answer["ts"] and answer["message"]["bot_id"]


async def test_the_registry_gives_slack_the_store_and_the_secret_key() -> None:
    store = MemoryStore()
    settings = Settings(slack_bot_token="xoxb-1", slack_signing_secret=SIGNING_SECRET, secret_key=KEY)
    [channel] = build_channels(settings, store)
    assert isinstance(channel, SlackChannel) and channel.desk is not None
    assert (channel.desk.store, channel.desk.secret_key) == (store, KEY)

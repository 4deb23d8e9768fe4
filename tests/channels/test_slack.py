"""Slack: verify and parse (doc fixtures), render and send (fake Web API), through ingress and delivery."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from channels.base import Malformed, Refused, RetryLater, Unauthorized
from channels.slack import SlackChannel
from gateway.core.schema import Button, Image, Reply
from gateway.core.store.memory import MemoryStore
from tests.support.channels import (
    SpyBus,
    delivering,
    fixture,
    post,
    publish_reply,
    signed,
    webhook_client,
    webhook_request,
)
from tests.support.fakes import (
    FakeSlack,
    slack_block_action,
    slack_event_callback,
    slack_event_request,
    slack_interaction_request,
    slack_message_event,
    slack_request,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def channel(slack: FakeSlack) -> AsyncIterator[SlackChannel]:
    channel = SlackChannel(slack.token, SECRET, api_url=slack.url)
    yield channel
    await channel.close()


def reply(text: str = "", *, chat: str = "D024BE91L", **fields: Any) -> Reply:
    return Reply(id="slack:event:Ev1/r0", channel="slack", chat=chat, user="U2147483697", text=text, **fields)


async def event(channel: SlackChannel, payload: dict[str, Any], **kwargs: Any) -> Any:
    return await channel.handle_event(signed(slack_event_request(payload, SECRET, **kwargs)))


# Verify and parse


async def test_url_verification_is_answered_with_the_challenge(channel: SlackChannel) -> None:
    accepted = await event(channel, fixture("slack_url_verification.json"))
    assert accepted.messages == ()
    assert accepted.content_type == "application/json"
    assert json.loads(accepted.body) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


async def test_direct_message_from_the_docs(channel: SlackChannel) -> None:
    accepted = await event(channel, fixture("slack_message_im.json"))
    [message] = accepted.messages
    assert message.id == "slack:event:Ev0PV52K21"
    assert (message.channel, message.chat, message.user) == ("slack", "D024BE91L", "U2147483697")
    assert message.text == "Hello hello can you hear me?"
    assert message.channel_message_id == "1355517523.000005"
    assert message.meta == {}


async def test_mention_from_the_docs_loses_the_leading_mention(channel: SlackChannel) -> None:
    [message] = (await event(channel, fixture("slack_app_mention.json"))).messages
    assert message.id == "slack:event:Ev08MFMKH6"
    assert (message.chat, message.user) == ("C123ABC456", "U061F7AUR")
    assert message.text == "is it everything a river should be?"


async def test_message_in_a_thread_carries_its_thread(channel: SlackChannel) -> None:
    payload = slack_message_event("Ev9", "D1", "U1", "a &lt;b&gt; &amp; c", thread_ts="1355517523.000005")
    [message] = (await event(channel, payload)).messages
    assert message.meta == {"thread_ts": "1355517523.000005"}
    assert message.text == "a <b> & c"  # Slack's escaping undone


@pytest.mark.parametrize("name", ["slack_message_changed.json", "slack_bot_message.json"])
async def test_edits_and_bot_messages_are_ignored(channel: SlackChannel, name: str) -> None:
    assert (await event(channel, fixture(name))).messages == ()


async def test_our_own_messages_are_ignored(channel: SlackChannel) -> None:
    payload = slack_message_event("Ev10", "D1", "UOURBOT", "echo")
    payload["authorizations"] = [{"team_id": "T1", "user_id": "UOURBOT", "is_bot": True}]
    assert (await event(channel, payload)).messages == ()
    assert len((await event(channel, slack_message_event("Ev11", "D1", "U1", "hi"))).messages) == 1


async def test_channel_messages_without_a_mention_are_ignored(channel: SlackChannel) -> None:
    payload = slack_message_event("Ev12", "C1", "U1", "chatter")
    payload["event"]["channel_type"] = "channel"
    assert (await event(channel, payload)).messages == ()


async def test_other_events_are_acknowledged(channel: SlackChannel) -> None:
    payload = slack_event_callback("Ev13", {"type": "reaction_added", "user": "U1", "reaction": "thumbsup"})
    assert (await event(channel, payload)).messages == ()


async def test_a_retry_is_handled_like_a_first_delivery(channel: SlackChannel) -> None:
    """The retry header never drops an event: the shared dedup by event id does (see the ingress test)."""
    accepted = await event(channel, fixture("slack_message_im.json"), retry_num=1)
    assert [m.id for m in accepted.messages] == ["slack:event:Ev0PV52K21"]


async def test_forged_signature_is_refused(channel: SlackChannel) -> None:
    request = slack_event_request(fixture("slack_message_im.json"), "another-secret")
    with pytest.raises(Unauthorized):
        await channel.handle_event(signed(request))


async def test_tampered_body_is_refused(channel: SlackChannel) -> None:
    request = slack_event_request(fixture("slack_message_im.json"), SECRET)
    tampered = webhook_request(
        request.path, request.body.replace(b"Hello hello", b"Goodbye"), request.headers
    )
    with pytest.raises(Unauthorized):
        await channel.handle_event(tampered)


@pytest.mark.parametrize("age", [301, 3600, -301])
async def test_stale_or_future_timestamp_is_refused(channel: SlackChannel, age: int) -> None:
    request = slack_event_request(fixture("slack_message_im.json"), SECRET, timestamp=int(time.time()) - age)
    with pytest.raises(Unauthorized, match="replay window"):
        await channel.handle_event(signed(request))


@pytest.mark.parametrize("headers", [{}, {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=1"}])
async def test_missing_or_garbled_signature_headers_are_refused(
    channel: SlackChannel, headers: dict[str, str]
) -> None:
    request = slack_event_request(fixture("slack_message_im.json"), SECRET)
    with pytest.raises(Unauthorized):
        await channel.handle_event(webhook_request(request.path, request.body, headers))


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", json.dumps({"type": "event_callback", "event": {"type": "message"}}).encode()],
)
async def test_malformed_signed_bodies_are_refused(channel: SlackChannel, body: bytes) -> None:
    with pytest.raises(Malformed):
        await channel.handle_event(signed(slack_request(body, SECRET, path="/webhooks/slack/events")))


async def test_block_actions_click_from_the_docs(channel: SlackChannel) -> None:
    request = slack_interaction_request(fixture("slack_block_actions.json"), SECRET)
    [message] = (await channel.handle_interaction(signed(request))).messages
    assert message.id == "slack:action:12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3"
    assert (message.chat, message.user) == ("CBR2V3XEX", "UA8RXUSPL")
    assert message.button is not None
    assert (message.button.payload, message.button.title) == ("click_me_123", "View")
    assert message.text == "View"
    assert message.channel_message_id == "1548261231.000200"


async def test_click_in_a_thread_carries_its_thread(channel: SlackChannel) -> None:
    payload = slack_block_action("trig1", "C1", "U1", "Paris", title="Paris", thread_ts="1500.000001")
    [message] = (
        await channel.handle_interaction(signed(slack_interaction_request(payload, SECRET)))
    ).messages
    assert message.meta == {"thread_ts": "1500.000001"}


async def test_interaction_forged_or_malformed_is_refused(channel: SlackChannel) -> None:
    forged = slack_interaction_request(fixture("slack_block_actions.json"), "wrong")
    with pytest.raises(Unauthorized):
        await channel.handle_interaction(signed(forged))
    for body in (b"payload=not-json", b"nothing=here", b"payload=%FF", b"payload=%5B%5D"):
        request = slack_request(body, SECRET, path="/webhooks/slack/interactions")
        with pytest.raises(Malformed):
            await channel.handle_interaction(signed(request))


async def test_other_interactions_are_acknowledged(channel: SlackChannel) -> None:
    payload = {"type": "view_submission", "user": {"id": "U1"}, "view": {"id": "V1"}}
    accepted = await channel.handle_interaction(signed(slack_interaction_request(payload, SECRET)))
    assert accepted.messages == ()


# Render and send


async def test_text_buttons_and_image_become_block_kit(channel: SlackChannel, slack: FakeSlack) -> None:
    buttons = (Button(title="Paris", payload="Paris"), Button(title="Elsewhere", payload="goto:other"))
    image = Image(url="https://example.com/map.png", caption="The map")
    await channel.send(reply("Where <@U1> & *you*?", buttons=buttons, image=image))
    [call] = slack.calls_to("chat.postMessage", ok=True)
    params = call.params
    assert call.headers["Authorization"] == f"Bearer {slack.token}"
    assert params["channel"] == "D024BE91L"
    assert params["text"] == "Where &lt;@U1&gt; &amp; *you*?"
    assert params["mrkdwn"] is False
    assert "thread_ts" not in params
    section, picture, actions = params["blocks"]
    assert section["type"] == "section"
    assert section["text"] == {"type": "plain_text", "text": "Where <@U1> & *you*?", "emoji": True}
    assert picture == {
        "type": "image",
        "image_url": "https://example.com/map.png",
        "alt_text": "The map",
        "title": {"type": "plain_text", "text": "The map"},
    }
    assert [(e["text"]["text"], e["value"], e["action_id"]) for e in actions["elements"]] == [
        ("Paris", "Paris", "button-0"),
        ("Elsewhere", "goto:other", "button-1"),
    ]


async def test_reply_to_a_thread_stays_in_the_thread(channel: SlackChannel, slack: FakeSlack) -> None:
    await channel.send(reply("in thread", meta={"thread_ts": "1355517523.000005"}))
    [call] = slack.calls_to("chat.postMessage", ok=True)
    assert call.params["thread_ts"] == "1355517523.000005"


async def test_long_texts_and_titles_fit_slack_limits(channel: SlackChannel, slack: FakeSlack) -> None:
    await channel.send(reply("x" * 7000, buttons=(Button(title="t" * 100, payload="p"),)))
    [call] = slack.calls_to("chat.postMessage", ok=True)
    sections = [b for b in call.params["blocks"] if b["type"] == "section"]
    assert [len(s["text"]["text"]) for s in sections] == [3000, 3000, 1000]


async def test_rate_limit_is_retry_later_with_its_retry_after(
    channel: SlackChannel, slack: FakeSlack
) -> None:
    slack.fail_next(1, 429, retry_after=3)
    with pytest.raises(RetryLater) as caught:
        await channel.send(reply("hi"))
    assert caught.value.after == 3


async def test_server_and_network_errors_are_retry_later(channel: SlackChannel, slack: FakeSlack) -> None:
    slack.fail_next(1, 503)
    with pytest.raises(RetryLater) as caught:
        await channel.send(reply("hi"))
    assert caught.value.after is None
    slack.drop_next(1)
    with pytest.raises(RetryLater):
        await channel.send(reply("hi"))


async def test_unknown_channel_and_oversized_value_are_refused(
    channel: SlackChannel, slack: FakeSlack
) -> None:
    slack.unknown_channels.add("CGONE")
    with pytest.raises(Refused, match="channel_not_found"):
        await channel.send(reply("hi", chat="CGONE"))
    with pytest.raises(Refused, match="cannot render"):
        await channel.send(reply("hi", buttons=(Button(title="t", payload="v" * 2001),)))


async def test_wrong_token_is_refused(slack: FakeSlack) -> None:
    channel = SlackChannel("xoxb-wrong", SECRET, api_url=slack.url)
    try:
        with pytest.raises(Refused, match="invalid_auth"):
            await channel.send(reply("hi"))
    finally:
        await channel.close()


# Through the shared ingress


async def test_event_and_its_retry_publish_once(channel: SlackChannel) -> None:
    bus, store = SpyBus(), MemoryStore()
    async with webhook_client([channel], bus, store) as (client, _):
        first = slack_event_request(fixture("slack_message_im.json"), SECRET)
        retry = slack_event_request(fixture("slack_message_im.json"), SECRET, retry_num=1)
        assert (await post(client, first))[0] == 200
        assert (await post(client, retry))[0] == 200
    assert [m.id for m in bus.inbound()] == ["slack:event:Ev0PV52K21"]


async def test_retry_whose_first_delivery_never_arrived_is_handled(channel: SlackChannel) -> None:
    bus, store = SpyBus(), MemoryStore()
    async with webhook_client([channel], bus, store) as (client, _):
        retry = slack_event_request(fixture("slack_message_im.json"), SECRET, retry_num=2)
        assert (await post(client, retry))[0] == 200
    assert [m.id for m in bus.inbound()] == ["slack:event:Ev0PV52K21"]


async def test_challenge_forged_stale_and_oversized_requests(channel: SlackChannel) -> None:
    bus, store = SpyBus(), MemoryStore()
    async with webhook_client([channel], bus, store) as (client, _):
        status, body = await post(client, slack_event_request(fixture("slack_url_verification.json"), SECRET))
        assert status == 200 and json.loads(body)["challenge"].startswith("3eZbrw1a")
        forged = slack_event_request(fixture("slack_message_im.json"), "not-the-secret")
        assert (await post(client, forged))[0] == 401
        stale = slack_event_request(
            fixture("slack_message_im.json"), SECRET, timestamp=int(time.time()) - 600
        )
        assert (await post(client, stale))[0] == 401
        bad = slack_request(b"{not json", SECRET, path="/webhooks/slack/events")
        assert (await post(client, bad))[0] == 400
        huge = slack_event_request(slack_message_event("EvBig", "D1", "U1", "x" * (1024 * 1024)), SECRET)
        assert (await post(client, huge))[0] == 413
    assert bus.published == []


async def test_click_through_the_ingress_is_published(channel: SlackChannel) -> None:
    bus, store = SpyBus(), MemoryStore()
    async with webhook_client([channel], bus, store) as (client, _):
        request = slack_interaction_request(fixture("slack_block_actions.json"), SECRET)
        assert (await post(client, request))[0] == 200
        assert (await post(client, request))[0] == 200
    [message] = bus.inbound()
    assert message.button is not None and message.button.payload == "click_me_123"


# Through the shared deliverer


async def test_rate_limited_then_sent_after_retry_after(channel: SlackChannel, slack: FakeSlack) -> None:
    bus, store = SpyBus(), MemoryStore()
    slack.fail_next(1, 429, retry_after=1)
    async with delivering(bus, store, channel):
        started = time.monotonic()
        await publish_reply(bus, reply("hello"))
        calls = await slack.wait_for_calls(2, method="chat.postMessage")
        elapsed = time.monotonic() - started
    assert [c.status for c in calls] == [429, 200]
    assert elapsed >= 0.95
    assert bus.buried == []


async def test_unknown_channel_is_dead_lettered(channel: SlackChannel, slack: FakeSlack) -> None:
    bus, store = SpyBus(), MemoryStore()
    slack.unknown_channels.add("D024BE91L")
    async with delivering(bus, store, channel):
        await publish_reply(bus, reply("hello"))
        letter = await bus.wait_buried()
    assert "channel_not_found" in letter.reason
    assert len(slack.calls_to("chat.postMessage")) == 1

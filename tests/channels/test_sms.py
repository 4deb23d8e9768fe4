"""SMS: verify and parse (doc fixtures), keywords, render and send (fake Twilio), ingress and delivery."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from channels.base import Malformed, Refused, RetryLater, Unauthorized
from channels.sms import LEGACY_OPT_OUT_NAMESPACE, OptOuts, SmsChannel, body_of
from gateway.core.schema import Button, Image, Reply
from gateway.core.store.memory import MemoryStore
from tests.support.channels import (
    PUBLIC_URL,
    SpyBus,
    delivering,
    fixture,
    post,
    publish_reply,
    signed,
    webhook_client,
    webhook_request,
)
from tests.support.fakes import FakeTwilio, SignedRequest, twilio_request, twilio_sms_params

USER = "+14017122661"


@pytest.fixture
async def tw() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def channel(tw: FakeTwilio, store: MemoryStore) -> AsyncIterator[SmsChannel]:
    channel = SmsChannel(tw.account_sid, tw.auth_token, tw.from_number, store, api_url=tw.url)
    yield channel
    await channel.close()


def reply(text: str = "", *, chat: str = USER, **fields: Any) -> Reply:
    return Reply(id="sms:SM1/r0", channel="sms", chat=chat, user=chat, text=text, **fields)


def inbound(params: Any, token: str, url: str = PUBLIC_URL) -> Any:
    return signed(twilio_request(params, token, url))


def sms(sid: str, body: str) -> list[tuple[str, str]]:
    return twilio_sms_params(sid, USER, body)


# Verify and parse


async def test_sms_from_the_docs(channel: SmsChannel, tw: FakeTwilio) -> None:
    accepted = await channel.handle_webhook(inbound(fixture("twilio_sms.json"), tw.auth_token))
    [message] = accepted.messages
    assert message.id == "sms:SM1234567890abcdef1234567890abcdef"
    assert (message.channel, message.chat, message.user) == ("sms", "+14017122661", "+14017122661")
    assert message.text == "Ahoy! We can't wait to see what you build."
    assert message.attachments == ()
    assert accepted.content_type == "application/xml"
    assert accepted.body == b'<?xml version="1.0" encoding="UTF-8"?><Response />'


async def test_mms_media_become_attachments(channel: SmsChannel, tw: FakeTwilio) -> None:
    [message] = (await channel.handle_webhook(inbound(fixture("twilio_mms.json"), tw.auth_token))).messages
    [attachment] = message.attachments
    assert attachment.kind == "image"
    assert attachment.mime == "image/jpeg"
    assert attachment.url.startswith("https://api.twilio.com/2010-04-01/Accounts/")
    assert message.text == "Look at this"


async def test_signature_is_checked_against_the_public_url(channel: SmsChannel, tw: FakeTwilio) -> None:
    params = fixture("twilio_sms.json")
    with pytest.raises(Unauthorized):  # signed for another host: Twilio called someone else
        await channel.handle_webhook(inbound(params, tw.auth_token, "https://elsewhere.example.com"))
    with pytest.raises(Unauthorized):  # signed with another token
        await channel.handle_webhook(inbound(params, "not-the-token"))
    request = twilio_request(params, tw.auth_token, PUBLIC_URL)
    with pytest.raises(Unauthorized):  # a parameter changed after signing
        await channel.handle_webhook(
            webhook_request(request.path, request.body.replace(b"Ahoy", b"Hey"), request.headers)
        )
    with pytest.raises(Unauthorized):  # no signature
        await channel.handle_webhook(webhook_request(request.path, request.body, {}))


async def test_malformed_forms_are_refused(channel: SmsChannel, tw: FakeTwilio) -> None:
    with pytest.raises(Malformed):  # signed, but no MessageSid
        await channel.handle_webhook(inbound([("From", USER), ("Body", "hi")], tw.auth_token))
    bad = twilio_request([("x", "1")], tw.auth_token, PUBLIC_URL)
    with pytest.raises(Malformed):  # not form-encoded
        await channel.handle_webhook(webhook_request(bad.path, b"\xff\xfe==&&", bad.headers))


# Keywords


async def test_stop_opts_out_until_start(channel: SmsChannel, tw: FakeTwilio, store: MemoryStore) -> None:
    stop = await channel.handle_webhook(inbound(sms("SM01", "  stop "), tw.auth_token))
    assert stop.messages == ()
    assert b"<Message>You are unsubscribed" in stop.body
    assert await OptOuts(store).opted_out(USER)

    with pytest.raises(Refused, match="recipient opted out"):
        await channel.send(reply("still there?"))
    assert tw.calls == []
    ignored = await channel.handle_webhook(inbound(sms("SM02", "hello?"), tw.auth_token))
    assert ignored.messages == ()

    start = await channel.handle_webhook(inbound(sms("SM03", "START"), tw.auth_token))
    assert start.messages == ()
    assert b"<Message>You are subscribed again" in start.body
    await channel.send(reply("welcome back"))
    assert len(tw.calls_to("Messages.create", ok=True)) == 1
    [message] = (await channel.handle_webhook(inbound(sms("SM04", "hello"), tw.auth_token))).messages
    assert message.text == "hello"


async def test_help_answers_with_the_help_text(tw: FakeTwilio, store: MemoryStore) -> None:
    channel = SmsChannel(tw.account_sid, tw.auth_token, tw.from_number, store, help_text="Acme: call 555")
    accepted = await channel.handle_webhook(inbound(sms("SM05", "Help"), tw.auth_token))
    assert accepted.messages == ()
    assert b"<Message>Acme: call 555</Message>" in accepted.body


async def test_keyword_answers_can_be_left_to_twilio(tw: FakeTwilio, store: MemoryStore) -> None:
    channel = SmsChannel(tw.account_sid, tw.auth_token, tw.from_number, store, keyword_replies=False)
    accepted = await channel.handle_webhook(inbound(sms("SM06", "UNSUBSCRIBE"), tw.auth_token))
    assert accepted.body == b'<?xml version="1.0" encoding="UTF-8"?><Response />'
    assert await OptOuts(store).opted_out(USER)


async def test_opt_outs_survive_many_toggles(store: MemoryStore) -> None:
    opt_outs = OptOuts(store)
    for _ in range(3):
        await opt_outs.opt_out(USER)
        await opt_outs.opt_out(USER)  # twice in a row changes nothing
        assert await opt_outs.opted_out(USER)
        await opt_outs.opt_in(USER)
        assert not await opt_outs.opted_out(USER)
    assert not await opt_outs.opted_out("+15550000000")


async def test_stop_is_kept_as_a_fact_about_the_user_not_a_duplicate_marker(
    channel: SmsChannel, tw: FakeTwilio, store: MemoryStore
) -> None:
    """Issue 11, point 5: exported and erased with the user's data, never expiring like a marker."""
    await channel.handle_webhook(inbound(sms("SM10", "STOP"), tw.auth_token))
    assert await store.opted_out("sms", USER)
    assert not await store.is_seen(LEGACY_OPT_OUT_NAMESPACE, USER)
    await channel.handle_webhook(inbound(sms("SM11", "START"), tw.auth_token))
    assert not await store.opted_out("sms", USER)


async def test_an_opt_out_kept_the_old_way_is_honoured_and_moved(
    channel: SmsChannel, tw: FakeTwilio, store: MemoryStore
) -> None:
    await store.mark_seen(LEGACY_OPT_OUT_NAMESPACE, USER, 100 * 365 * 86400.0)  # before the upgrade
    with pytest.raises(Refused, match="recipient opted out"):
        await channel.send(reply("still there?"))
    assert await store.opted_out("sms", USER) and not await store.is_seen(LEGACY_OPT_OUT_NAMESPACE, USER)


# Render and send


def test_buttons_become_a_numbered_list() -> None:
    buttons = (Button(title="Paris", payload="Paris"), Button(title="London", payload="London"))
    assert body_of(reply("Where do you live?", buttons=buttons)) == "Where do you live?\n1. Paris 2. London"


async def test_text_and_buttons_are_one_sms(channel: SmsChannel, tw: FakeTwilio) -> None:
    buttons = (Button(title="Paris", payload="Paris"), Button(title="Somewhere else", payload="goto:other"))
    await channel.send(reply("Where do you live?", buttons=buttons))
    [call] = tw.calls_to("Messages.create", ok=True)
    assert call.params["To"] == USER
    assert call.params["From"] == tw.from_number
    assert call.params["Body"] == "Where do you live?\n1. Paris 2. Somewhere else"
    assert call.params["MediaUrl"] == []


async def test_image_goes_as_media_url(channel: SmsChannel, tw: FakeTwilio) -> None:
    await channel.send(reply(image=Image(url="https://example.com/cat.jpg", caption="A cat")))
    [call] = tw.calls_to("Messages.create", ok=True)
    assert call.params["MediaUrl"] == ["https://example.com/cat.jpg"]
    assert call.params["Body"] == "A cat"


async def test_rate_limit_and_server_errors_are_retry_later(channel: SmsChannel, tw: FakeTwilio) -> None:
    tw.fail_next(1, 429, retry_after=2)
    with pytest.raises(RetryLater) as caught:
        await channel.send(reply("hi"))
    assert caught.value.after == 2
    tw.fail_next(1, 429)
    with pytest.raises(RetryLater) as caught:
        await channel.send(reply("hi"))
    assert caught.value.after is None
    tw.fail_next(1, 503)
    with pytest.raises(RetryLater):
        await channel.send(reply("hi"))
    tw.drop_next(1)
    with pytest.raises(RetryLater):
        await channel.send(reply("hi"))


async def test_invalid_number_is_refused(channel: SmsChannel, tw: FakeTwilio) -> None:
    with pytest.raises(Refused, match="21211"):
        await channel.send(reply("hi", chat="12345"))


async def test_twilio_unsubscribed_is_refused_and_remembered(
    channel: SmsChannel, tw: FakeTwilio, store: MemoryStore
) -> None:
    tw.unsubscribed.add(USER)
    with pytest.raises(Refused, match="21610"):
        await channel.send(reply("hi"))
    assert await OptOuts(store).opted_out(USER)


async def test_wrong_credentials_are_refused(tw: FakeTwilio, store: MemoryStore) -> None:
    channel = SmsChannel(tw.account_sid, "wrong-token", tw.from_number, store, api_url=tw.url)
    try:
        with pytest.raises(Refused, match="20003"):
            await channel.send(reply("hi"))
    finally:
        await channel.close()


# Through the shared ingress


async def test_webhook_publishes_once_and_answers_empty_twiml(channel: SmsChannel, tw: FakeTwilio) -> None:
    bus = SpyBus()
    async with webhook_client([channel], bus, MemoryStore()) as (client, _):
        request = twilio_request(fixture("twilio_sms.json"), tw.auth_token, PUBLIC_URL)
        status, body = await post(client, request)
        assert status == 200 and body == b'<?xml version="1.0" encoding="UTF-8"?><Response />'
        assert (await post(client, request))[0] == 200
    assert [m.id for m in bus.inbound()] == ["sms:SM1234567890abcdef1234567890abcdef"]


async def test_webhook_forged_malformed_and_oversized_publish_nothing(
    channel: SmsChannel, tw: FakeTwilio
) -> None:
    bus = SpyBus()
    async with webhook_client([channel], bus, MemoryStore()) as (client, _):
        forged = twilio_request(fixture("twilio_sms.json"), "forged-token", PUBLIC_URL)
        assert (await post(client, forged))[0] == 401
        malformed = twilio_request([("Body", "no sid")], tw.auth_token, PUBLIC_URL)
        assert (await post(client, malformed))[0] == 400
        huge = twilio_request(sms("SMbig", "x" * (1024 * 1024)), tw.auth_token, PUBLIC_URL)
        assert (await post(client, huge))[0] == 413
    assert bus.published == []


async def test_query_string_is_part_of_the_signed_url(channel: SmsChannel, tw: FakeTwilio) -> None:
    bus = SpyBus()
    async with webhook_client([channel], bus, MemoryStore()) as (client, _):
        params = sms("SMq", "hi")
        request = twilio_request(params, tw.auth_token, PUBLIC_URL, path="/webhooks/sms?tenant=a")
        assert (await post(client, request))[0] == 200
        unsigned_query = twilio_request(params, tw.auth_token, PUBLIC_URL)
        moved = webhook_request("/webhooks/sms?tenant=a", unsigned_query.body, unsigned_query.headers)
        assert (await post(client, SignedRequest(moved.path, moved.body, dict(moved.headers))))[0] == 401
    assert len(bus.inbound()) == 1


# Through the shared deliverer


async def test_rate_limited_then_sent(channel: SmsChannel, tw: FakeTwilio, store: MemoryStore) -> None:
    bus = SpyBus()
    tw.fail_next(1, 429, retry_after=1)
    async with delivering(bus, store, channel):
        started = time.monotonic()
        await publish_reply(bus, reply("hello"))
        calls = await tw.wait_for_calls(2)
        elapsed = time.monotonic() - started
    assert [c.status for c in calls] == [429, 201]
    assert elapsed >= 0.95
    assert bus.buried == []


async def test_opted_out_recipient_is_dead_lettered(
    channel: SmsChannel, tw: FakeTwilio, store: MemoryStore
) -> None:
    bus = SpyBus()
    await OptOuts(store).opt_out(USER)
    async with delivering(bus, store, channel):
        await publish_reply(bus, reply("hello"))
        letter = await bus.wait_buried()
    assert "recipient opted out" in letter.reason
    assert tw.calls == []


async def test_invalid_number_is_dead_lettered(
    channel: SmsChannel, tw: FakeTwilio, store: MemoryStore
) -> None:
    bus = SpyBus()
    async with delivering(bus, store, channel):
        await publish_reply(bus, reply("hello", chat="not-a-number"))
        letter = await bus.wait_buried()
    assert "21211" in letter.reason
    assert len(tw.calls) == 1

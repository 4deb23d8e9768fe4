"""Slack and SMS conversations through separate `serve`, `worker` and `mailer` processes on the real
RabbitMQ and Redis: signed webhooks in, replies out through slack-sdk and twilio to the local fake APIs.

Each test proves what only the whole deployment can: buttons rendered by one process come back through
another as presses, duplicates and retries are dropped across processes, refused requests publish nothing
(the serve's own ``inbound_published`` counter says so), a 429 waits for its Retry-After and a permanent
refusal lands in the RabbitMQ dead-letter queue with its reason.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.core.bus.base import DeadLetter, Delivery, Topic
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.schema import Inbound, parse_inbound, parse_reply
from tests.support.deployment import STORIES, address_of
from tests.support.fakes import (
    FakeSlack,
    FakeTwilio,
    SignedRequest,
    slack_block_action,
    slack_event_callback,
    slack_event_request,
    slack_interaction_request,
    slack_message_event,
    twilio_request,
    twilio_sms_params,
)
from tests.support.processes import Start
from tests.support.smtp_sink import SmtpSink

SLACK_SECRET = "e2e-slack-signing-secret"
PUBLIC_URL = "https://gateway.example.com"  # what Twilio signs; not where serve listens
IMAGE_URL = "https://example.com/cat.png"
PHOTO_STORY = f"""\
  photo:
    triggers: [photo]
    steps:
      - id: show
        actions:
          - image: "{IMAGE_URL}"
            caption: A cat
"""


class TimedSlack(FakeSlack):
    """The fake Slack Web API, also noting when each call arrived (``times[i]`` is ``calls[i]``'s)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def record(
        self, method: str, params: dict[str, Any], request: web.Request, status: int, error: str | None = None
    ) -> None:
        self.times.append(time.monotonic())
        await super().record(method, params, request, status, error)


class TimedTwilio(FakeTwilio):
    """The fake Twilio REST API, also noting when each call arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def record(
        self, method: str, params: dict[str, Any], request: web.Request, status: int, error: str | None = None
    ) -> None:
        self.times.append(time.monotonic())
        await super().record(method, params, request, status, error)


@pytest.fixture
async def slack() -> AsyncIterator[TimedSlack]:
    async with TimedSlack() as fake:
        yield fake


@pytest.fixture
async def twilio() -> AsyncIterator[TimedTwilio]:
    async with TimedTwilio() as fake:
        yield fake


@pytest.fixture
def stories(tmp_path: Path) -> Path:
    """The e2e stories plus one that sends an image."""
    folder = tmp_path / "slack-sms-stories"
    folder.mkdir()
    (folder / "main.yml").write_text(STORIES + PHOTO_STORY)
    return folder


@pytest.fixture
def slack_env(slack: TimedSlack, stories: Path) -> dict[str, str]:
    """Slack only (Telegram off), no send-side rate limits: no test here is about them."""
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SLACK_SECRET,
        "SLACK_API_URL": slack.url,
        "TELEGRAM_BOT_TOKEN": "",
        "GATEWAY_RATE_LIMITS": "false",
        "GATEWAY_STORIES": str(stories),
    }


@pytest.fixture
def sms_env(twilio: TimedTwilio, stories: Path) -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM_NUMBER": twilio.from_number,
        "TWILIO_API_URL": twilio.url,
        "GATEWAY_PUBLIC_URL": PUBLIC_URL,
        "TELEGRAM_BOT_TOKEN": "",
        "GATEWAY_RATE_LIMITS": "false",
        "GATEWAY_STORIES": str(stories),
    }


@pytest.fixture
async def bus(amqp_url: str, queue_prefix: str) -> AsyncIterator[RabbitBus]:
    """A client of the test deployment's own queues (same prefix and partitions as its roles)."""
    client = RabbitBus(amqp_url, prefix=queue_prefix, partitions=4)
    await client.start()
    yield client
    await client.close()


async def post(http: aiohttp.ClientSession, address: str, request: SignedRequest) -> tuple[int, str]:
    async with http.post(address + request.path, data=request.body, headers=request.headers) as response:
        return response.status, await response.text()


async def metrics_of(http: aiohttp.ClientSession, address: str) -> str:
    async with http.get(f"{address}/metrics") as response:
        return await response.text()


async def dead_replies(bus: RabbitBus, count: int, timeout: float = 15.0) -> list[DeadLetter]:
    """The outbound dead letters, once there are ``count`` of them."""
    async with asyncio.timeout(timeout):
        while len(letters := await bus.dead_letters(Topic.OUTBOUND)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # the dead-letter queue offers no event to wait on
    return letters


# Slack


class SlackUser:
    """Posts signed Events API and interaction requests to a `serve` process, as Slack would."""

    def __init__(self, http: aiohttp.ClientSession, address: str, channel: str, user: str) -> None:
        self.http, self.address, self.channel, self.user = http, address, channel, user
        self.events = 0

    def next_event_id(self) -> str:
        self.events += 1
        return f"Ev{self.channel}{self.events:04d}"

    def message(self, text: str, *, thread_ts: str | None = None) -> dict[str, Any]:
        return slack_message_event(self.next_event_id(), self.channel, self.user, text, thread_ts=thread_ts)

    async def post(
        self,
        payload: dict[str, Any],
        *,
        secret: str = SLACK_SECRET,
        timestamp: int | None = None,
        retry_num: int | None = None,
    ) -> int:
        request = slack_event_request(payload, secret, timestamp=timestamp, retry_num=retry_num)
        return (await post(self.http, self.address, request))[0]

    async def say(self, text: str, *, thread_ts: str | None = None) -> int:
        return await self.post(self.message(text, thread_ts=thread_ts))

    async def click(self, value: str, title: str, *, thread_ts: str | None = None) -> int:
        action = slack_block_action(
            f"trigger-{uuid.uuid4().hex}", self.channel, self.user, value, title=title, thread_ts=thread_ts
        )
        return (await post(self.http, self.address, slack_interaction_request(action, SLACK_SECRET)))[0]


def posted(slack: FakeSlack, channel: str) -> list[dict[str, Any]]:
    """The parameters of the messages Slack accepted for ``channel``."""
    return [
        c.params for c in slack.calls_to("chat.postMessage", ok=True) if c.params.get("channel") == channel
    ]


def posted_texts(slack: FakeSlack, channel: str) -> list[str]:
    return [str(p.get("text")) for p in posted(slack, channel)]


def buttons_of(message: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, value) of every button in a posted message's Block Kit blocks."""
    return [
        (element["text"]["text"], element["value"])
        for block in message.get("blocks") or ()
        if block["type"] == "actions"
        for element in block["elements"]
    ]


async def test_slack_conversation_with_buttons_threads_image_and_email(
    start_role: Start, slack: TimedSlack, smtp: SmtpSink, slack_env: dict[str, str]
) -> None:
    serve = await start_role("serve", **slack_env)
    await start_role("worker", **slack_env)
    await start_role("mailer", **slack_env)
    address = await address_of(serve)
    assert "channels: slack" in serve.output()

    async with aiohttp.ClientSession() as http:
        user = SlackUser(http, address, channel="D0E2ECHAT", user="U0E2EUSER")
        assert await user.say("hi") == 200
        await slack.wait_for_calls(1, method="chat.postMessage", ok=True)
        [question] = posted(slack, "D0E2ECHAT")
        assert question["text"] == "What's your name?"
        assert question["blocks"][0] == {
            "type": "section",
            "text": {"type": "plain_text", "text": "What's your name?", "emoji": True},
        }
        buttons = buttons_of(question)
        assert [title for title, _ in buttons] == ["Ada", "Grace"]
        assert not question.get("thread_ts")

        title, value = buttons[1]
        assert await user.click(value, title) == 200
        await slack.wait_for_calls(2, method="chat.postMessage", ok=True)

        # A conversation in a thread: every reply goes to that thread, a click in it too.
        thread = "1700000000.000100"
        assert await user.say("help", thread_ts=thread) == 200
        await slack.wait_for_calls(3, method="chat.postMessage", ok=True)
        assert await user.say("my <printer> & {{fire}}", thread_ts=thread) == 200
        await slack.wait_for_calls(4, method="chat.postMessage", ok=True)
        (email,) = await smtp.wait_for(1)
        assert await user.say("hi", thread_ts=thread) == 200
        await slack.wait_for_calls(5, method="chat.postMessage", ok=True)
        title, value = buttons_of(posted(slack, "D0E2ECHAT")[-1])[0]
        assert await user.click(value, title, thread_ts=thread) == 200
        await slack.wait_for_calls(6, method="chat.postMessage", ok=True)

        assert await user.say("photo") == 200
        await slack.wait_for_calls(7, method="chat.postMessage", ok=True)

    messages = posted(slack, "D0E2ECHAT")
    assert [m["text"] for m in messages] == [
        "What's your name?",
        "Nice to meet you, Grace.",
        "What is the problem?",
        "Ticket sent.",
        "What's your name?",
        "Nice to meet you, Ada.",
        "A cat",
    ]
    assert [m.get("thread_ts") for m in messages] == [None, None, thread, thread, thread, thread, None]
    assert email["Subject"] == "Ticket from Grace"
    assert "The user wrote: my <printer> & {{fire}}" in email.get_content()
    [image] = [b for b in messages[-1]["blocks"] if b["type"] == "image"]
    assert (image["image_url"], image["alt_text"], image["title"]["text"]) == (IMAGE_URL, "A cat", "A cat")


async def test_slack_retries_bots_and_refused_requests_are_not_handled(
    start_role: Start, slack: TimedSlack, slack_env: dict[str, str]
) -> None:
    serve = await start_role("serve", **slack_env)
    await start_role("worker", **slack_env)
    address = await address_of(serve)
    channel = "D0RETRIES"

    async with aiohttp.ClientSession() as http:
        user = SlackUser(http, address, channel=channel, user="U0HUMAN")
        challenge = {
            "token": "t",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
        request = slack_event_request(challenge, SLACK_SECRET)
        status, body = await post(http, address, request)
        assert status == 200 and challenge["challenge"] in body

        # Delivered, then retried by Slack (our answer was "too slow"): handled once.
        first = user.message("n1")
        assert await user.post(first) == 200
        assert await user.post(first, retry_num=1) == 200
        assert await user.post(first, retry_num=2) == 200
        # Its first delivery never reached us: the retry is the only copy, and it is handled.
        assert await user.post(user.message("n2"), retry_num=1) == 200

        # Messages from bots: another app's, and our own echoed back (known from the authorizations).
        other_bot = {
            "type": "message",
            "subtype": "bot_message",
            "bot_id": "B0OTHERBOT",
            "text": "n91",
            "channel": channel,
            "channel_type": "im",
            "ts": "1700000001.000100",
        }
        assert await user.post(slack_event_callback(user.next_event_id(), other_bot)) == 200
        ours = slack_message_event(user.next_event_id(), channel, "U0FAKEBOT", "n92")
        ours["authorizations"] = [{"team_id": "T123ABC456", "user_id": "U0FAKEBOT", "is_bot": True}]
        assert await user.post(ours) == 200
        ours_with_bot_id = slack_message_event(user.next_event_id(), channel, "U0HUMAN", "n93")
        ours_with_bot_id["event"]["bot_id"] = "B0FAKEBOT"
        assert await user.post(ours_with_bot_id) == 200

        # Forged and stale requests: 401, nothing published.
        assert await user.post(user.message("n94"), secret="not-the-signing-secret") == 401
        assert await user.post(user.message("n95"), timestamp=int(time.time()) - 6 * 60) == 401
        assert await user.post(user.message("n96"), timestamp=int(time.time()) + 6 * 60) == 401
        forged_click = slack_block_action("trigger-forged", channel, "U0HUMAN", "x", title="Ada")
        request = slack_interaction_request(forged_click, "not-the-signing-secret")
        assert (await post(http, address, request))[0] == 401

        # Replies of one conversation leave in order: once "got n3" is there, any duplicate would be too.
        assert await user.say("n3") == 200
        await slack.wait_for_calls(3, method="chat.postMessage", ok=True)
        metrics = await metrics_of(http, address)

    assert posted_texts(slack, channel) == ["got n1", "got n2", "got n3"]
    assert len(slack.calls_to("chat.postMessage")) == 3
    assert 'gateway_inbound_published_total{channel="slack"} 3.0' in metrics
    assert 'gateway_webhook_requests_total{channel="slack",outcome="refused_401"} 4.0' in metrics
    assert 'gateway_webhook_requests_total{channel="slack",outcome="accepted"} 9.0' in metrics


async def test_slack_rate_limited_reply_waits_and_unknown_channel_is_dead_lettered(
    start_role: Start, slack: TimedSlack, slack_env: dict[str, str], bus: RabbitBus
) -> None:
    serve = await start_role("serve", **slack_env)
    await start_role("worker", **slack_env)
    address = await address_of(serve)
    slack.fail_next(1, 429, method="chat.postMessage", retry_after=1)
    slack.unknown_channels.add("D0GONE")

    async with aiohttp.ClientSession() as http:
        user = SlackUser(http, address, channel="D0LIMITED", user="U0HUMAN")
        assert await user.say("n1") == 200
        await slack.wait_for_calls(1, method="chat.postMessage", ok=True)
        assert await user.say("n2") == 200
        await slack.wait_for_calls(2, method="chat.postMessage", ok=True)

        gone = SlackUser(http, address, channel="D0GONE", user="U0HUMAN")
        assert await gone.say("n3") == 200
        [letter] = await dead_replies(bus, 1)
        metrics = await metrics_of(http, address)

    calls = [(c, t) for c, t in zip(slack.calls, slack.times, strict=True) if c.method == "chat.postMessage"]
    limited = [(c, t) for c, t in calls if c.params.get("channel") == "D0LIMITED"]
    assert [(c.status, c.params["text"]) for c, _ in limited] == [
        (429, "got n1"),
        (200, "got n1"),
        (200, "got n2"),
    ]
    waited = limited[1][1] - limited[0][1]
    assert 0.95 <= waited < 5, f"the 429's Retry-After is 1 s; the retry came after {waited:.2f} s"

    assert [c.error for c, _ in calls if c.params.get("channel") == "D0GONE"] == ["channel_not_found"]
    assert "channel_not_found" in letter.reason and letter.topic == Topic.OUTBOUND
    reply = parse_reply(letter.envelope.body)
    assert (reply.channel, reply.chat, reply.text) == ("slack", "D0GONE", "got n3")
    assert 'gateway_replies_total{channel="slack",outcome="retried"} 1.0' in metrics
    assert 'gateway_replies_total{channel="slack",outcome="failed"} 1.0' in metrics
    assert 'gateway_replies_total{channel="slack",outcome="sent"} 2.0' in metrics


# SMS


class SmsUser:
    """Posts Twilio-signed form requests to a `serve` process, as Twilio would, for one phone number."""

    def __init__(self, http: aiohttp.ClientSession, address: str, number: str, twilio: FakeTwilio) -> None:
        self.http, self.address, self.number, self.twilio = http, address, number, twilio

    def params(self, text: str, *, media: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        sid = ("MM" if media else "SM") + uuid.uuid4().hex
        return twilio_sms_params(
            sid,
            self.number,
            text,
            to_number=self.twilio.from_number,
            account_sid=self.twilio.account_sid,
            media=media,
        )

    async def post(
        self, params: list[tuple[str, str]], *, token: str | None = None, public_url: str = PUBLIC_URL
    ) -> tuple[int, str]:
        request = twilio_request(params, token or self.twilio.auth_token, public_url)
        return await post(self.http, self.address, request)

    async def say(self, text: str, *, media: Sequence[tuple[str, str]] = ()) -> int:
        return (await self.post(self.params(text, media=media)))[0]


def texted(twilio: FakeTwilio, number: str) -> list[dict[str, Any]]:
    """The parameters of the messages Twilio accepted for ``number``."""
    return [c.params for c in twilio.calls_to("Messages.create", ok=True) if c.params.get("To") == number]


def bodies(twilio: FakeTwilio, number: str) -> list[str]:
    return [str(p.get("Body")) for p in texted(twilio, number)]


EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


async def test_sms_conversation_with_numbered_buttons_mms_and_image(
    start_role: Start, twilio: TimedTwilio, sms_env: dict[str, str]
) -> None:
    serve = await start_role("serve", **sms_env)
    await start_role("worker", **sms_env)
    address = await address_of(serve)
    assert "channels: sms" in serve.output()
    number = "+15551230001"

    async with aiohttp.ClientSession() as http:
        user = SmsUser(http, address, number, twilio)
        status, twiml = await user.post(user.params("hi"))
        assert (status, twiml) == (200, EMPTY_TWIML)
        await twilio.wait_for_calls(1, method="Messages.create", ok=True)
        assert bodies(twilio, number) == ["What's your name?\n1. Ada 2. Grace"]

        assert await user.say(" 2 ") == 200  # a bare number is that button
        await twilio.wait_for_calls(2, method="Messages.create", ok=True)
        assert await user.say("n7", media=[("https://api.twilio.com/media/ME1", "image/jpeg")]) == 200
        await twilio.wait_for_calls(3, method="Messages.create", ok=True)
        assert await user.say("photo") == 200
        await twilio.wait_for_calls(4, method="Messages.create", ok=True)

    sent = texted(twilio, number)
    assert [p["Body"] for p in sent] == [
        "What's your name?\n1. Ada 2. Grace",
        "Nice to meet you, Grace.",
        "got n7",
        "A cat",
    ]
    assert [p["MediaUrl"] for p in sent] == [[], [], [], [IMAGE_URL]]
    assert {p["From"] for p in sent} == {twilio.from_number}


async def test_sms_duplicates_opt_out_mms_and_forged_requests(
    start_role: Start, twilio: TimedTwilio, sms_env: dict[str, str], bus: RabbitBus
) -> None:
    serve = await start_role("serve", **sms_env)
    address = await address_of(serve)
    number = "+15551230002"

    async with aiohttp.ClientSession() as http:
        user = SmsUser(http, address, number, twilio)

        # Before any worker runs, read what serve put on the inbound queues: the MMS media as attachments.
        arrived: asyncio.Future[Inbound] = asyncio.get_running_loop().create_future()

        async def take(delivery: Delivery) -> None:
            arrived.set_result(parse_inbound(delivery.envelope.body))

        subscription = await bus.subscribe(Topic.INBOUND, take, concurrency=1)
        media = [
            ("https://api.twilio.com/media/ME1", "image/jpeg"),
            ("https://api.twilio.com/media/ME2", "video/mp4"),
        ]
        assert await user.say("look", media=media) == 200
        mms = await asyncio.wait_for(arrived, 10)
        await subscription.stop()
        assert (mms.channel, mms.chat, mms.user, mms.text) == ("sms", number, number, "look")
        assert [(a.kind, a.url, a.mime) for a in mms.attachments] == [
            ("image", media[0][0], "image/jpeg"),
            ("video", media[1][0], "video/mp4"),
        ]
        await start_role("worker", **sms_env)

        # The same MessageSid three times: handled once.
        first = user.params("n1")
        assert [(await user.post(first))[0] for _ in range(3)] == [200, 200, 200]
        await twilio.wait_for_calls(1, method="Messages.create", ok=True)  # answered before the STOP

        # STOP: confirmed in the TwiML answer, then nothing for this number until START.
        status, twiml = await user.post(user.params("stop"))
        assert status == 200 and "unsubscribed" in twiml
        status, twiml = await user.post(user.params("hi"))
        assert (status, twiml) == (200, EMPTY_TWIML)
        status, twiml = await user.post(user.params("HELP"))
        assert status == 200 and "Reply STOP to unsubscribe" in twiml
        status, twiml = await user.post(user.params("START"))
        assert status == 200 and "subscribed again" in twiml

        # Forged: the wrong auth token, or signed over the address serve listens on, not the public URL.
        assert (await user.post(user.params("n98"), token="not-the-auth-token"))[0] == 401
        assert (await user.post(user.params("n99"), public_url=address))[0] == 401

        assert await user.say("n2") == 200
        await twilio.wait_for_calls(2, method="Messages.create", ok=True)
        metrics = await metrics_of(http, address)
        assert await bus.dead_letters(Topic.OUTBOUND) == []

    assert bodies(twilio, number) == ["got n1", "got n2"]
    assert len(twilio.calls_to("Messages.create")) == 2
    assert 'gateway_inbound_published_total{channel="sms"} 3.0' in metrics  # the MMS, n1 and n2
    assert 'gateway_webhook_requests_total{channel="sms",outcome="refused_401"} 2.0' in metrics


async def test_sms_rate_limited_reply_waits_and_invalid_number_is_dead_lettered(
    start_role: Start, twilio: TimedTwilio, sms_env: dict[str, str], bus: RabbitBus
) -> None:
    serve = await start_role("serve", **sms_env)
    await start_role("worker", **sms_env)
    address = await address_of(serve)
    twilio.fail_next(1, 429, method="Messages.create", retry_after=1)
    number = "+15551230003"

    async with aiohttp.ClientSession() as http:
        user = SmsUser(http, address, number, twilio)
        assert await user.say("n1") == 200
        await twilio.wait_for_calls(1, method="Messages.create", ok=True)
        assert await user.say("n2") == 200
        await twilio.wait_for_calls(2, method="Messages.create", ok=True)

        short_code = SmsUser(http, address, "12345", twilio)  # not E.164: Twilio answers 21211
        assert await short_code.say("n3") == 200
        [letter] = await dead_replies(bus, 1)
        metrics = await metrics_of(http, address)

    calls = list(zip(twilio.calls, twilio.times, strict=True))
    limited = [(c, t) for c, t in calls if c.params.get("To") == number]
    assert [(c.status, c.params["Body"]) for c, _ in limited] == [
        (429, "got n1"),
        (201, "got n1"),
        (201, "got n2"),
    ]
    waited = limited[1][1] - limited[0][1]
    assert 0.95 <= waited < 5, f"the 429's Retry-After is 1 s; the retry came after {waited:.2f} s"

    assert [c.status for c, _ in calls if c.params.get("To") == "12345"] == [400]
    assert "21211" in letter.reason and letter.topic == Topic.OUTBOUND
    reply = parse_reply(letter.envelope.body)
    assert (reply.channel, reply.chat, reply.text) == ("sms", "12345", "got n3")
    assert 'gateway_replies_total{channel="sms",outcome="retried"} 1.0' in metrics
    assert 'gateway_replies_total{channel="sms",outcome="failed"} 1.0' in metrics

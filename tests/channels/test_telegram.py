"""Telegram: parse and verify (doc fixtures), render and send (fake Bot API), through ingress and delivery."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from aiogram.types import BufferedInputFile, Update

from channels.base import Malformed, Refused, RetryLater, Unauthorized, WebhookRequest
from channels.delivery import SENT_NAMESPACE
from channels.telegram import CALLBACK_DATA_LIMIT, TelegramChannel, callback_data
from gateway.core.bus.base import REPLAY_HEADER, Envelope, Topic
from gateway.core.errors import StoreUnavailable
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
    FakeTelegram,
    telegram_callback_update,
    telegram_text_update,
    telegram_update_request,
)

SECRET = "s3cret_Token-1"


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def channel(tg: FakeTelegram) -> AsyncIterator[TelegramChannel]:
    channel = TelegramChannel(tg.token, api_url=tg.url, webhook_secret=SECRET)
    yield channel
    await channel.close()


def reply(text: str = "", *, chat: str = "1111111", n: int = 0, **fields: object) -> Reply:
    return Reply(id=f"telegram:update:1/r{n}", channel="telegram", chat=chat, user=chat, text=text, **fields)


def update_request(name: str, secret: str | None = SECRET) -> WebhookRequest:
    return signed(telegram_update_request(fixture(name), secret))


# Parse and verify


async def test_text_message_from_the_docs(channel: TelegramChannel) -> None:
    accepted = await channel.handle_webhook(update_request("telegram_text.json"))
    [message] = accepted.messages
    assert message.id == "telegram:update:10000"
    assert (message.channel, message.chat, message.user) == ("telegram", "1111111", "1111111")
    assert message.text == "/start"
    assert message.channel_message_id == "1365"
    assert message.user_name == "Test Firstname Test Lastname"
    assert message.sent_at == 1441645532
    assert accepted.after is None


async def test_command_addressed_to_the_bot_by_name_loses_the_name(channel: TelegramChannel) -> None:
    update = telegram_text_update(5, -100, "/start@fake_bot now", user_id=42)
    [message] = channel.accept_update(_update(update)).messages
    assert message.text == "/start now"
    assert (message.chat, message.user) == ("-100", "42")


async def test_photo_with_caption_becomes_an_image_attachment(channel: TelegramChannel) -> None:
    accepted = await channel.handle_webhook(update_request("telegram_photo.json"))
    [message] = accepted.messages
    assert message.text == "My street"
    [attachment] = message.attachments
    assert attachment.kind == "image"
    assert attachment.url == "telegram-file:AgADBAADlarge"  # the largest size, by file id
    assert attachment.mime == "image/jpeg"


async def test_document_becomes_a_file_attachment(channel: TelegramChannel) -> None:
    [message] = (await channel.handle_webhook(update_request("telegram_document.json"))).messages
    [attachment] = message.attachments
    assert (attachment.kind, attachment.name, attachment.mime) == ("file", "Testfile.pdf", "application/pdf")


@pytest.mark.parametrize(
    "name", ["telegram_edited.json", "telegram_voice.json", "telegram_inline_query.json"]
)
async def test_other_update_kinds_are_acknowledged_and_ignored(channel: TelegramChannel, name: str) -> None:
    accepted = await channel.handle_webhook(update_request(name))
    assert accepted.messages == ()
    assert accepted.after is None


async def test_button_press_is_the_button_with_its_title_and_is_answered(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    accepted = await channel.handle_webhook(update_request("telegram_callback_message.json"))
    [message] = accepted.messages
    assert message.id == "telegram:update:10001"
    assert message.button is not None
    assert message.button.payload == "Data from button callback"
    assert message.button.title == "Somewhere else"
    assert message.text == "Somewhere else"
    assert (message.chat, message.user, message.channel_message_id) == ("1111111", "1111111", "1366")
    assert accepted.after is not None
    await accepted.after()
    [call] = tg.calls_to("answerCallbackQuery", ok=True)
    assert call.params["callback_query_id"] == "4382bfdwdsb323b2d9"


async def test_press_on_an_inline_message_is_only_answered(channel: TelegramChannel) -> None:
    accepted = await channel.handle_webhook(update_request("telegram_callback_inline.json"))
    assert accepted.messages == ()
    assert accepted.after is not None


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET[:-1]])
async def test_missing_or_wrong_secret_is_refused(channel: TelegramChannel, secret: str | None) -> None:
    with pytest.raises(Unauthorized):
        await channel.handle_webhook(update_request("telegram_text.json", secret))


async def test_no_secret_configured_accepts_updates_without_the_header(tg: FakeTelegram) -> None:
    channel = TelegramChannel(tg.token, api_url=tg.url)
    try:
        accepted = await channel.handle_webhook(update_request("telegram_text.json", None))
        assert len(accepted.messages) == 1
    finally:
        await channel.close()


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b'{"message": {"text": "hi"}}', b'{"update_id": "x"}']
)
async def test_malformed_bodies_are_refused(channel: TelegramChannel, body: bytes) -> None:
    request = webhook_request("/webhooks/telegram", body, {"X-Telegram-Bot-Api-Secret-Token": SECRET})
    with pytest.raises(Malformed):
        await channel.handle_webhook(request)


# Render and send


def test_callback_data_is_the_payload_when_it_fits_else_a_stable_digest() -> None:
    assert callback_data("Paris") == "Paris"
    assert callback_data("é" * 32) == "é" * 32  # 64 bytes exactly
    long = "goto:" + "x" * 100
    digest = callback_data(long)
    assert len(digest.encode()) <= CALLBACK_DATA_LIMIT
    assert digest == callback_data(long) != callback_data(long + "y")
    assert digest.startswith("#")


async def test_press_on_a_digest_button_comes_back_with_its_title(channel: TelegramChannel) -> None:
    data = callback_data("p" * 80)
    update = telegram_callback_update(7, 55, data, title="A long choice")
    [message] = channel.accept_update(_update(update)).messages
    assert message.button is not None
    assert (message.button.payload, message.button.title, message.text) == (
        data,
        "A long choice",
        "A long choice",
    )


async def test_text_is_sent_plain_so_user_text_cannot_break_formatting(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    text = "<b>bold?</b> *not* _italic_ [link](http://x) & `code`"
    await channel.send(reply(text))
    [call] = tg.calls_to("sendMessage", ok=True)
    assert call.params["chat_id"] == 1111111  # a number: the call went as a JSON body, not a form
    assert call.params["text"] == text
    assert "parse_mode" not in call.params
    assert "reply_markup" not in call.params


async def test_a_file_upload_still_goes_as_a_multipart_form(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    photo = BufferedInputFile(b"\x89PNG...", filename="chart.png")
    await channel.bot.send_photo(1111111, photo, caption="here")
    [call] = tg.calls_to("sendPhoto", ok=True)
    assert call.params["chat_id"] == "1111111"  # a form field: text
    assert call.params["caption"] == "here"
    assert str(call.params["photo"]).startswith("attach://")


async def test_buttons_become_an_inline_keyboard(channel: TelegramChannel, tg: FakeTelegram) -> None:
    long_payload = "jump:" + "z" * 90
    buttons = (Button(title="Paris", payload="Paris"), Button(title="Elsewhere", payload=long_payload))
    await channel.send(reply("Where do you live?", buttons=buttons))
    [call] = tg.calls_to("sendMessage", ok=True)
    assert call.params["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "Paris", "callback_data": "Paris"}],
            [{"text": "Elsewhere", "callback_data": callback_data(long_payload)}],
        ]
    }


async def test_image_is_sent_as_a_photo_with_caption_and_buttons(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    image = Image(url="https://example.com/cat.jpg", caption="A cat")
    await channel.send(reply("Like it?", image=image, buttons=(Button(title="Yes", payload="yes"),)))
    [call] = tg.calls_to("sendPhoto", ok=True)
    assert call.params["photo"] == "https://example.com/cat.jpg"
    assert call.params["caption"] == "A cat\n\nLike it?"
    assert call.params["reply_markup"]["inline_keyboard"] == [[{"text": "Yes", "callback_data": "yes"}]]
    assert tg.calls_to("sendMessage") == []


async def test_text_over_telegram_limit_is_split(channel: TelegramChannel, tg: FakeTelegram) -> None:
    await channel.send(reply("a" * 5000, buttons=(Button(title="OK", payload="ok"),)))
    first, second = tg.calls_to("sendMessage", ok=True)
    assert (len(first.params["text"]), len(second.params["text"])) == (4096, 904)
    assert "reply_markup" not in first.params and "reply_markup" in second.params


async def test_flood_control_is_retry_later_with_its_wait(channel: TelegramChannel, tg: FakeTelegram) -> None:
    tg.fail_next(1, 429, retry_after=7)
    with pytest.raises(RetryLater) as caught:
        await channel.send(reply("hi"))
    assert caught.value.after == 7


@pytest.mark.parametrize("status", [500, 502])
async def test_server_errors_are_retry_later_with_backoff(
    channel: TelegramChannel, tg: FakeTelegram, status: int
) -> None:
    tg.fail_next(1, status)
    with pytest.raises(RetryLater) as caught:
        await channel.send(reply("hi"))
    assert caught.value.after is None


async def test_network_error_is_retry_later(channel: TelegramChannel, tg: FakeTelegram) -> None:
    tg.drop_next(1)
    with pytest.raises(RetryLater):
        await channel.send(reply("hi"))


async def test_blocked_bot_and_unknown_chat_are_refused(channel: TelegramChannel, tg: FakeTelegram) -> None:
    tg.blocked_chats.add("1111111")
    with pytest.raises(Refused, match="bot was blocked by the user"):
        await channel.send(reply("hi"))
    tg.fail_next(1, 400, description="Bad Request: chat not found")
    with pytest.raises(Refused, match="chat not found"):
        await channel.send(reply("hi", chat="999"))


# Through the shared ingress


async def test_webhook_publishes_once_and_drops_the_duplicate(channel: TelegramChannel) -> None:
    bus, store = SpyBus(), MemoryStore()
    async with webhook_client([channel], bus, store) as (client, _):
        request = telegram_update_request(fixture("telegram_text.json"), SECRET)
        assert (await post(client, request))[0] == 200
        assert (await post(client, request))[0] == 200
    [message] = bus.inbound()
    assert message.id == "telegram:update:10000"


async def test_webhook_forged_malformed_and_oversized_publish_nothing(channel: TelegramChannel) -> None:
    bus, store = SpyBus(), MemoryStore()
    async with webhook_client([channel], bus, store) as (client, _):
        forged = telegram_update_request(fixture("telegram_text.json"), "forged")
        assert (await post(client, forged))[0] == 401
        malformed = telegram_update_request({"update_id": "nope"}, SECRET)
        assert (await post(client, malformed))[0] == 400
        huge = telegram_text_update(1, 1, "x" * (1024 * 1024 + 10))
        assert (await post(client, telegram_update_request(huge, SECRET)))[0] == 413
    assert bus.published == []


async def test_webhook_answers_the_button_press_after_publishing(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    bus, store = SpyBus(), MemoryStore()
    async with webhook_client([channel], bus, store) as (client, _):
        status, _ = await post(
            client, telegram_update_request(fixture("telegram_callback_message.json"), SECRET)
        )
        assert status == 200
        [call] = await tg.wait_for_calls(1, method="answerCallbackQuery")
    assert call.ok
    [message] = bus.inbound()
    assert message.button is not None


# Through the shared deliverer


async def test_flood_control_then_success_waits_the_retry_after(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    bus, store = SpyBus(), MemoryStore()
    tg.fail_next(1, 429, method="sendMessage", retry_after=1)
    async with delivering(bus, store, channel):
        started = time.monotonic()
        await publish_reply(bus, reply("hello"))
        calls = await tg.wait_for_calls(2, method="sendMessage")
        elapsed = time.monotonic() - started
    assert [c.status for c in calls] == [429, 200]
    assert elapsed >= 0.95
    assert bus.buried == []


async def test_permanent_refusal_is_dead_lettered_with_its_reason(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    bus, store = SpyBus(), MemoryStore()
    tg.blocked_chats.add("1111111")
    async with delivering(bus, store, channel):
        await publish_reply(bus, reply("hello"))
        letter = await bus.wait_buried()
    assert "bot was blocked by the user" in letter.reason
    assert len(tg.calls_to("sendMessage")) == 1  # not retried


async def test_a_failed_later_call_is_tried_again_without_repeating_the_ones_that_went_out(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    bus, store = SpyBus(), MemoryStore()
    image = Image(url="https://example.com/cat.jpg", caption="A cat")
    long = reply("t" * 2000, image=image)  # too long for a caption: sendPhoto, then sendMessage
    tg.fail_next(1, 500, method="sendMessage")
    async with delivering(bus, store, channel):
        await publish_reply(bus, long)
        await tg.wait_for_calls(1, method="sendMessage", ok=True)
    assert [c.status for c in tg.calls_to("sendPhoto")] == [200]
    assert [c.status for c in tg.calls_to("sendMessage")] == [500, 200]
    assert await store.is_seen(SENT_NAMESPACE, f"{long.id}#0")  # the photo's own record, for a redelivery
    assert bus.buried == []


async def test_a_text_in_parts_resumes_at_the_part_that_failed(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    bus, store = SpyBus(), MemoryStore()
    text = "a" * 4096 + "b" * 4096 + "c" * 10
    tg.fail_next(1, 502, method="sendMessage", after=1)
    async with delivering(bus, store, channel):
        await publish_reply(bus, reply(text))
        await tg.wait_for_calls(4, method="sendMessage")
    sent = [(c.status, str(c.params["text"])[0]) for c in tg.calls_to("sendMessage")]
    assert sent == [(200, "a"), (502, "b"), (200, "b"), (200, "c")]


async def test_a_reply_delivered_again_skips_the_calls_recorded_as_sent(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    bus, store = SpyBus(), MemoryStore()
    image = Image(url="https://example.com/cat.jpg", caption="A cat")
    long = reply("t" * 2000, image=image)
    await store.mark_seen(SENT_NAMESPACE, f"{long.id}#0", 60)  # the photo went out, then the process died
    async with delivering(bus, store, channel):
        await bus.publish(
            Topic.OUTBOUND,
            [Envelope(long.to_json(), long.id, str(long.conversation), headers={REPLAY_HEADER: "1"})],
        )
        await tg.wait_for_calls(1, method="sendMessage", ok=True)
    assert tg.calls_to("sendPhoto") == []


class RecordsFailAtFirst(MemoryStore):
    """Redis away at the moment a record is written: the first ``failures`` ``mark_seen`` calls fail."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.recorded: list[str] = []
        self.changed = asyncio.Event()

    async def mark_seen(self, namespace: str, item: str, ttl: float) -> bool:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("redis: ConnectionError: the test cut it")
        self.recorded.append(item)
        self.changed.set()
        return await super().mark_seen(namespace, item, ttl)

    async def wait_recorded(self, item: str) -> None:
        async with asyncio.timeout(10):
            while item not in self.recorded:
                self.changed.clear()
                await self.changed.wait()


async def test_a_reply_whose_record_fails_is_recorded_later_never_sent_again(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    """Issue 11: the record is retried until the store answers, never the send."""
    bus, store = SpyBus(), RecordsFailAtFirst(failures=3)
    async with delivering(bus, store, channel) as deliverer:
        hello = reply("hello")
        await publish_reply(bus, hello)
        await store.wait_recorded(hello.id)
        assert len(deliverer.sent) == 0, "nothing left waiting for its record"
    assert [c.status for c in tg.calls_to("sendMessage")] == [200]
    assert bus.buried == []


async def test_a_part_whose_record_fails_is_not_sent_again_with_the_rest(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    bus, store = SpyBus(), RecordsFailAtFirst(failures=2)
    long = reply("t" * 2000, image=Image(url="https://example.com/cat.jpg", caption="A cat"))
    async with delivering(bus, store, channel):
        await publish_reply(bus, long)
        await store.wait_recorded(long.id)
    assert [c.status for c in tg.calls_to("sendPhoto")] == [200]
    assert [c.status for c in tg.calls_to("sendMessage")] == [200]
    assert store.recorded == [f"{long.id}#0", long.id]


def turn(count: int) -> list[Reply]:
    return [reply(f"reply {n}", n=n) for n in range(count)]


async def publish_turn(bus: SpyBus, replies: list[Reply]) -> None:
    """A turn's replies, published together as the worker publishes them."""
    envelopes = [Envelope(r.to_json(), r.id, str(r.conversation)) for r in replies]
    await bus.publish(Topic.OUTBOUND, envelopes)


class RecordsWaitForGate(MemoryStore):
    """Each ``mark_seen`` waits until the gate opens: shows what is sent while a record is under way."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting: list[str] = []
        self._arrived = asyncio.Event()

    async def mark_seen(self, namespace: str, item: str, ttl: float) -> bool:
        self.waiting.append(item)
        self._arrived.set()
        await self.gate.wait()
        return await super().mark_seen(namespace, item, ttl)

    async def wait_waiting(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.waiting) < count:
                self._arrived.clear()
                await self._arrived.wait()


async def test_a_turns_replies_go_out_back_to_back_and_are_acknowledged_once_recorded(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    """Issue 18: no Redis round trip between two replies of a turn; each still goes out after the one
    before it has, and none is acknowledged before its record is written."""
    bus, store = SpyBus(), RecordsWaitForGate()
    replies = turn(3)
    async with delivering(bus, store, channel):
        await publish_turn(bus, replies)
        await store.wait_waiting(3)  # all three went out, while no record could be written yet
        assert store.waiting == [r.id for r in replies]
        assert len(tg.calls_to("sendMessage")) == 3
        unacknowledged = [c.in_flight for q in bus.queues(Topic.OUTBOUND) for c in q.consumers]
        assert sum(unacknowledged) == 3
        store.gate.set()
        await bus.join()
    assert [c.params["text"] for c in tg.calls_to("sendMessage")] == ["reply 0", "reply 1", "reply 2"]
    assert [await store.is_seen(SENT_NAMESPACE, r.id) for r in replies] == [True, True, True]
    assert bus.buried == []


async def test_a_reply_re_published_right_behind_itself_goes_out_once(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    """A worker's replay arriving in the same run as the original (a duplicate message handled right after
    the first): the copy waits for the original's record and is dropped."""
    bus, store = SpyBus(), RecordsWaitForGate()
    first, second = turn(2)
    original = Envelope(first.to_json(), first.id, str(first.conversation))
    replay = Envelope(first.to_json(), first.id, str(first.conversation), headers={REPLAY_HEADER: "1"})
    after = Envelope(second.to_json(), second.id, str(second.conversation))
    async with delivering(bus, store, channel):
        await bus.publish(Topic.OUTBOUND, [original, replay, after])
        await store.wait_waiting(1)
        store.gate.set()
        await bus.join()
    assert [c.params["text"] for c in tg.calls_to("sendMessage")] == ["reply 0", "reply 1"]
    assert bus.buried == []


@pytest.mark.parametrize("failures", [1, 2, 3])
async def test_a_record_failing_in_a_turn_sends_no_reply_twice(
    channel: TelegramChannel, tg: FakeTelegram, failures: int
) -> None:
    """Records fail while a turn's replies go out: the run stops at the first reply not recorded, and
    when the store answers every reply is recorded, none sent again."""
    bus, store = SpyBus(), RecordsFailAtFirst(failures=failures)
    replies = turn(3)
    async with delivering(bus, store, channel) as deliverer:
        await publish_turn(bus, replies)
        await store.wait_recorded(replies[2].id)
        await bus.join()
        assert len(deliverer.sent) == 0, "nothing left waiting for its record"
    assert [c.params["text"] for c in tg.calls_to("sendMessage")] == ["reply 0", "reply 1", "reply 2"]
    assert sorted(store.recorded) == sorted(r.id for r in replies)
    assert bus.buried == []


def _update(data: dict[str, object]) -> Update:
    return Update.model_validate(json.loads(json.dumps(data)))


async def test_image_with_text_too_long_for_a_caption_is_photo_then_text(
    channel: TelegramChannel, tg: FakeTelegram
) -> None:
    image = Image(url="https://example.com/cat.jpg", caption="A cat")
    await channel.send(reply("t" * 2000, image=image, buttons=(Button(title="Yes", payload="yes"),)))
    [photo] = tg.calls_to("sendPhoto", ok=True)
    [text] = tg.calls_to("sendMessage", ok=True)
    assert photo.params["caption"] == "A cat" and "reply_markup" not in photo.params
    assert text.params["text"] == "t" * 2000 and "reply_markup" in text.params

"""Images in ``data:`` URLs (a person's answer by email) on every channel: decoded and checked once,
uploaded by Telegram (multipart sendPhoto at the fake Bot API), passed as they are by the web chat, said as
``[image]`` by Slack and SMS; one that does not decode is a permanent refusal with its reason."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest

from channels.base import Refused
from channels.data_url import MAX_IMAGE_BYTES, decode_image
from channels.slack import SlackChannel
from channels.sms import SmsChannel
from channels.telegram import TelegramChannel
from channels.webchat import WebChatChannel, render_reply
from gateway.core.schema import Image, Reply
from gateway.core.store.memory import MemoryStore
from tests.support.fakes import FakeSlack, FakeTelegram, FakeTwilio

# A real 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
BAD_URLS = [
    ("data:image/png;base64,not*base64!", "does not decode"),
    ("data:text/plain;base64,aGVsbG8=", "not an image"),
    ("data:image/png,rawbytes", "not in base64"),
    ("data:image/png;base64", "','"),
    ("data:image/png;base64," + "A" * ((MAX_IMAGE_BYTES // 3 + 2) * 4), "over 5 MiB"),
]


def reply(
    channel: str, chat: str, image_url: str, text: str = "", caption: str | None = "Screenshot"
) -> Reply:
    return Reply(
        id=f"{channel}:staff:1/r0",
        channel=channel,
        chat=chat,
        user=chat,
        text=text,
        image=Image(url=image_url, caption=caption),
        author="Anna",
    )


# Decoding


def test_data_url_decodes_to_its_image() -> None:
    image = decode_image(DATA_URL)
    assert (image.mime, image.data, image.filename) == ("image/png", PNG, "image.png")
    encoded = DATA_URL.split(",")[1]
    folded = "\r\n".join(encoded[i : i + 20] for i in range(0, len(encoded), 20))
    wrapped = "data:image/jpeg;name=a.jpg;base64," + folded
    assert decode_image(wrapped).data == PNG  # base64 folded over lines, as in a MIME part


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_bad_data_urls_are_refused_saying_why(url: str, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        decode_image(url)


# Telegram: the bytes, uploaded


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


@pytest.fixture
async def telegram(tg: FakeTelegram) -> AsyncIterator[TelegramChannel]:
    channel = TelegramChannel(tg.token, api_url=tg.url)
    yield channel
    await channel.close()


async def test_telegram_uploads_the_image_as_a_multipart_send_photo(
    telegram: TelegramChannel, tg: FakeTelegram
) -> None:
    await telegram.send(reply("telegram", "1111111", DATA_URL, "Here is how"))
    [call] = tg.calls_to("sendPhoto", ok=True)
    assert call.headers["Content-Type"].startswith("multipart/form-data")
    assert call.params["caption"] == "Screenshot\n\nHere is how"
    assert str(call.params["photo"]).startswith("attach://")
    [upload] = tg.uploads
    assert (upload.method, upload.filename, upload.data) == ("sendPhoto", "image.png", PNG)
    assert call.params["photo"] == "attach://" + upload.field


async def test_telegram_image_and_long_text_upload_once_then_text(
    telegram: TelegramChannel, tg: FakeTelegram
) -> None:
    await telegram.send(reply("telegram", "1111111", DATA_URL, "t" * 2000))
    assert [c.method for c in tg.calls if c.ok] == ["sendPhoto", "sendMessage"]
    assert [u.data for u in tg.uploads] == [PNG]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS[:2])
async def test_telegram_refuses_a_bad_data_url_without_calling(
    telegram: TelegramChannel, tg: FakeTelegram, url: str, reason: str
) -> None:
    with pytest.raises(Refused, match=reason):
        await telegram.send(reply("telegram", "1111111", url))
    assert tg.calls == []


# Web chat: the URL as it is, with the author's label


def test_web_chat_frame_carries_the_data_url_and_the_author() -> None:
    frame = json.loads(render_reply(reply("webchat", "u1234567", DATA_URL, "Hi, Anna here")))
    assert frame["image"] == {"url": DATA_URL, "caption": "Screenshot"}
    assert frame["author"] == "Anna"
    assert frame["text"] == "Hi, Anna here"
    nameless = reply("webchat", "u1234567", DATA_URL).model_copy(update={"author": ""})
    assert json.loads(render_reply(nameless))["author"] == "Support"


async def test_web_chat_refuses_a_bad_data_url() -> None:
    channel = WebChatChannel("instance-1")
    with pytest.raises(Refused, match="does not decode"):
        await channel.send(reply("webchat", "u1234567", BAD_URLS[0][0]))
    assert len(channel.held) == 0


def test_web_chat_page_shows_data_images_and_labels_authors() -> None:
    from tests.support.paths import ROOT

    script = (ROOT / "channels" / "static" / "webchat.js").read_text()
    css = (ROOT / "channels" / "static" / "webchat.css").read_text()
    assert "data:image" in script and "frame.author" in script and '"Support"' in script
    assert ".author" in css


# Slack and SMS: "[image]"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


async def test_slack_says_image_instead_of_an_image_block(slack: FakeSlack) -> None:
    channel = SlackChannel(slack.token, "secret", api_url=slack.url)
    try:
        await channel.send(reply("slack", "D1", DATA_URL, "Look"))
        with pytest.raises(Refused, match="not an image"):
            await channel.send(reply("slack", "D1", BAD_URLS[1][0]))
    finally:
        await channel.close()
    [call] = slack.calls_to("chat.postMessage", ok=True)
    assert [b["type"] for b in call.params["blocks"]] == ["section"]
    assert call.params["blocks"][0]["text"]["text"] == "Look\nScreenshot\n[image]"


@pytest.fixture
async def tw() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


async def test_sms_sends_the_caption_and_image_as_text(tw: FakeTwilio) -> None:
    channel = SmsChannel(tw.account_sid, tw.auth_token, tw.from_number, MemoryStore(), api_url=tw.url)
    number = "+14017122661"
    try:
        await channel.send(reply("sms", number, DATA_URL, "Look"))
        with pytest.raises(Refused, match="over 5 MiB"):
            await channel.send(reply("sms", number, BAD_URLS[4][0]))
    finally:
        await channel.close()
    [call] = tw.calls_to("Messages.create", ok=True)
    assert call.params["Body"] == "Look\nScreenshot\n[image]"
    assert call.params["MediaUrl"] == []

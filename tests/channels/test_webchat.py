"""The web chat channel over a real WebSocket, in a whole in-process gateway (embedded bus and store) with
the example stories of config/stories."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from channels import webchat
from channels.webchat import (
    MAX_FRAME_BYTES,
    MAX_TEXT_BYTES,
    RATE_BURST,
    REFUSALS_BURST,
    HeldReplies,
    WebChatChannel,
    render_reply,
)
from gateway.app.process import Gateway
from gateway.app.roles.base import RoleName
from gateway.core.bus.memory import MemoryBus
from gateway.core.errors import BusUnavailable
from gateway.core.schema import Button, Image, Inbound, Reply
from gateway.core.store.memory import MemoryStore
from tests.support.paths import ROOT
from tests.support.webchat import Browser, settings_for

WELCOME = ["Hello there! 👋", "I'm the demo bot of this gateway. What's your first name?"]


async def settle(gateway: Gateway, browser: Browser) -> None:
    """Everything published is handled and every frame it caused has reached the browser."""
    assert isinstance(gateway.bus, MemoryBus)
    await gateway.bus.join()
    await browser.barrier()


def web_chat(gateway: Gateway) -> WebChatChannel:
    return next(c for c in gateway.channels or () if isinstance(c, WebChatChannel))


async def test_a_whole_conversation_with_the_example_stories(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    assert gateway.address is not None and f"web chat: {gateway.address}/" in gateway.describe()
    browser = Browser(http, gateway.address)
    await browser.open()
    hi = await browser.say("hi")
    assert await browser.next_replies(2) == WELCOME
    await browser.say("Ada")
    assert await browser.next_replies(2) == ["Nice to meet you, Ada!", "Where do you live?"]
    assert [b["title"] for b in browser.last_buttons()] == ["Paris", "London", "Somewhere else"]
    await browser.press("Paris")
    assert await browser.next_replies(2) == [
        "Ada, we are really glad you live in Paris, such a great city!",
        "What would you like to do next?",
    ]
    await browser.press("Take the quiz")
    [question] = await browser.next_replies(1)
    assert question.startswith("Three questions, let's go! 1)")
    assert [b["title"] for b in browser.last_buttons()] == ["Lyon", "Paris", "Marseille"]
    await browser.press("Paris")
    assert await browser.next_replies(2) == ["Right, Paris!", "2) How many legs does a spider have?"]
    await settle(gateway, browser)
    assert browser.unread_replies() == []
    reply = browser.of_type("reply")[0]
    assert reply["id"] == f"webchat:{browser.user}:{hi}/r0" and reply["image"] is None


async def test_a_click_sends_the_buttons_payload_which_wins_over_its_title(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    assert gateway.address is not None
    browser = Browser(http, gateway.address)
    await browser.open()
    await browser.say("hi")
    await browser.say("Grace")
    await browser.next_replies(4)
    elsewhere = next(b for b in browser.last_buttons() if b["title"] == "Somewhere else")
    # The title says London; the payload is the "Somewhere else" button's, whose goto asks where.
    await browser.press("London", payload=elsewhere["payload"])
    assert await browser.next_replies(1) == ["Tell us where, then."]


async def test_the_user_is_kept_across_reconnects_and_its_attributes_with_it(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    assert gateway.address is not None
    first = Browser(http, gateway.address)
    user = await first.open()
    assert re.fullmatch(r"[A-Za-z0-9_-]{8,64}", user)
    await first.say("hi")
    await first.say("Ada")
    await first.next_replies(4)
    await first.close()

    again = Browser(http, gateway.address)
    assert await again.open(user) == user
    await again.say("hi")
    assert await again.next_replies(2) == ["Hello Ada! 👋", "Where do you live?"]

    stranger = Browser(http, gateway.address)
    assert await stranger.open("no!") != user  # not a valid id: a new user is made
    await stranger.say("hi")
    assert await stranger.next_replies(2) == WELCOME


async def test_a_message_sent_again_after_a_reconnect_is_handled_once(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    assert gateway.address is not None
    browser = Browser(http, gateway.address)
    user = await browser.open()
    await browser.say("hi", id="page1-1")
    assert await browser.next_replies(2) == WELCOME
    await browser.close()

    await browser.open(user)
    await browser.say("hi", id="page1-1")  # acknowledged again: the page may forget it
    await browser.say("Ada", id="page1-2")
    assert await browser.next_replies(2) == ["Nice to meet you, Ada!", "Where do you live?"]
    await settle(gateway, browser)
    assert browser.unread_replies() == []


async def test_an_oversized_message_is_refused_with_an_error_frame_and_not_published(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    assert gateway.address is not None
    browser = Browser(http, gateway.address)
    await browser.open()
    too_long = await browser.send({"type": "message", "text": "é" * (MAX_TEXT_BYTES // 2 + 1)})
    error = await browser.answered(too_long)
    assert (error["type"], error["code"]) == ("error", "too_large")
    assert "4096 bytes" in error["message"]
    title = await browser.send({"type": "button", "payload": "p", "title": "x" * (MAX_TEXT_BYTES + 1)})
    assert (await browser.answered(title))["code"] == "too_large"
    await browser.say("x" * MAX_TEXT_BYTES)  # the limit itself is accepted
    await settle(gateway, browser)
    assert [f["text"] for f in browser.unread_replies()][:1] == [
        "Sorry, I didn't understand that. Here is what I can do:"
    ]
    assert len(browser.unread_replies()) == 1, "the refused messages ran no story"


async def test_malformed_frames_get_a_bad_frame_error(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    assert gateway.address is not None
    browser = Browser(http, gateway.address)
    await browser.open()
    for raw in ["not json", "[1]", '{"type": "message", "text": "hi"}', '{"type": "message", "id": "a b"}']:
        await browser.send_raw(raw)
    await browser.send_raw(b"\x00binary")
    empty = await browser.send({"type": "message", "text": "   "})
    other = await browser.send({"type": "typing"})
    await browser.wait_for(lambda: len(browser.of_type("error")) == 7)
    assert {f["code"] for f in browser.of_type("error")} == {"bad_frame"}
    assert [f["id"] for f in browser.of_type("error")][-2:] == [empty, other]
    assert browser.closed is None


async def test_a_frame_over_the_hard_limit_closes_the_socket(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    assert gateway.address is not None
    browser = Browser(http, gateway.address)
    await browser.open()
    await browser.send_raw("x" * (MAX_FRAME_BYTES + 1))
    await browser.wait_for(lambda: browser.closed is not None)
    assert browser.closed == aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def test_messages_beyond_the_rate_are_refused_and_a_flood_closes_the_socket(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    assert gateway.address is not None
    browser = Browser(http, gateway.address)
    await browser.open()
    sent = [
        await browser.send({"type": "message", "text": f"n{n}"}) for n in range(RATE_BURST + REFUSALS_BURST)
    ]
    answers = [await browser.answered(client_id) for client_id in sent]
    acked = [a for a in answers if a["type"] == "ack"]
    limited = [a for a in answers if a.get("code") == "rate_limited"]
    # the burst passes, then (give or take the tokens refilled while sending) the rest is refused
    assert RATE_BURST <= len(acked) <= RATE_BURST + 2 and len(acked) + len(limited) == len(answers)
    assert answers[: len(acked)] == acked, "refusals come after the burst"
    assert "at most 5 a second" in limited[0]["message"]
    assert browser.closed is None, "a burst of refusals is answered, not punished"

    for n in range(200):
        try:
            await browser.send({"type": "message", "text": f"flood {n}"})
        except ConnectionError:
            break
    await browser.wait_for(lambda: browser.closed is not None)
    assert browser.closed == aiohttp.WSCloseCode.POLICY_VIOLATION

    newcomer = Browser(http, gateway.address)  # the limits are per connection
    await newcomer.open()
    await newcomer.say("hi")


async def test_a_reply_for_a_browser_that_is_away_waits_for_it_on_this_process(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    assert gateway.address is not None
    channel = web_chat(gateway)
    reply = Reply(
        id="m/r0", channel="webchat", chat="away-user-1", user="away-user-1", text="while you were out"
    )
    await channel.send(reply)
    assert len(channel.held) == 1
    browser = Browser(http, gateway.address)
    await browser.open("away-user-1")
    assert await browser.next_replies(1) == ["while you were out"]
    assert len(channel.held) == 0


def test_held_replies_expire_and_are_dropped_with_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    held = HeldReplies(60.0, per_user=2, users=2, clock=lambda: now[0])
    held.hold("a", "a1")
    held.hold("a", "a2")
    held.hold("a", "a3")  # over per_user: the oldest goes
    held.hold("b", "b1")
    now[0] += 30
    held.hold("c", "c1")  # over users: the least recently held user goes
    assert held.take("a") == []
    assert held.take("b") == ["b1"]
    now[0] += 61
    with caplog.at_level(logging.INFO, logger="gateway.channels.webchat"):
        assert held.take("c") == []
    assert "1 replies for c dropped: the browser did not come back within 60 s" in caplog.text


def test_a_reply_frame_carries_text_image_and_buttons_as_data() -> None:
    reply = Reply(
        id="w:u:1/r0",
        channel="webchat",
        chat="u",
        user="u",
        text="<b>not bold</b>",
        image=Image(url="https://example.com/cat.png", caption="a cat"),
        buttons=(Button(title="Yes <i>", payload="b:yes"),),
    )
    import json

    assert json.loads(render_reply(reply)) == {
        "type": "reply",
        "id": "w:u:1/r0",
        "text": "<b>not bold</b>",
        "image": {"url": "https://example.com/cat.png", "caption": "a cat"},
        "buttons": [{"title": "Yes <i>", "payload": "b:yes"}],
    }


async def test_the_page_and_its_assets_are_served_with_a_strict_policy(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    assert gateway.address is not None
    async with http.get(gateway.address + "/") as response:
        assert response.status == 200 and response.content_type == "text/html"
        page = await response.text()
        policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "'unsafe" not in policy
    assert re.findall(r'(?:src|href)="([^"]+)"', page) == [
        "webchat/bot.svg",
        "webchat/webchat.css",
        "webchat/webchat.js",
        "webchat/bot.svg",
    ], "every asset is the gateway's own, nothing from outside"
    for name, kind in [
        ("webchat.js", "text/javascript"),
        ("webchat.css", "text/css"),
        ("bot.svg", "image/svg+xml"),
    ]:
        async with http.get(f"{gateway.address}/webchat/{name}") as response:
            assert (response.status, response.content_type) == (200, kind)
    async with http.get(gateway.address + "/webchat/secrets.txt") as response:
        assert response.status == 404
    async with http.get(gateway.address + "/webchat/socket") as response:
        assert response.status == 400, "a plain GET of the socket is refused"


def test_the_page_script_renders_text_as_text() -> None:
    script = (ROOT / "channels" / "static" / "webchat.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script
    assert "textContent" in script


async def test_web_chat_off_serves_neither_page_nor_socket(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    gateway = Gateway(
        settings_for(tmp_path, webchat=False),
        frozenset(RoleName),
        bus=MemoryBus(partitions=4),
        store=MemoryStore(),
    )
    await gateway.start()
    try:
        assert gateway.address is not None
        for path in ("/", "/webchat/socket", "/webchat/webchat.js"):
            async with http.get(gateway.address + path) as response:
                assert response.status == 404, path
        assert not any(line.startswith("web chat:") for line in gateway.describe())
    finally:
        await gateway.stop()


async def test_stopping_the_gateway_closes_the_sockets_as_going_away(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    gateway = Gateway(
        settings_for(tmp_path), frozenset(RoleName), bus=MemoryBus(partitions=4), store=MemoryStore()
    )
    await gateway.start()
    assert gateway.address is not None
    browser = Browser(http, gateway.address)
    await browser.open()
    async with asyncio.timeout(5):
        await gateway.stop()
    await browser.wait_for(lambda: browser.closed is not None)
    assert browser.closed == aiohttp.WSCloseCode.GOING_AWAY


async def test_a_message_the_broker_does_not_take_is_answered_unavailable_and_can_be_sent_again(
    http: aiohttp.ClientSession,
) -> None:
    accepted: list[Inbound] = []

    async def accept(messages: Sequence[Inbound]) -> None:
        accepted.extend(messages)
        if len(accepted) == 1:
            raise BusUnavailable("the broker did not confirm")

    app = web.Application()
    WebChatChannel("serve-x").install(app, accept)
    async with TestServer(app) as server:
        browser = Browser(http, str(server.make_url("/")))
        user = await browser.open()
        client_id = await browser.send({"type": "message", "text": "hi"})
        assert (await browser.answered(client_id))["code"] == "unavailable"
        await browser.send({"type": "message", "text": "hi", "id": client_id})  # what the page does
        await browser.wait_for(lambda: {"type": "ack", "id": client_id} in browser.frames)
        await browser.close()
    assert [m.id for m in accepted] == [f"webchat:{user}:{client_id}"] * 2
    assert accepted[0].meta == {"instance": "serve-x"} and accepted[1].text == "hi"


async def test_a_browser_that_does_not_read_is_given_up_and_its_reply_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webchat, "SEND_TIMEOUT", 0.05)

    class StuckSocket:  # what a socket whose browser stopped reading looks like: send never returns
        closed = False

        async def send_str(self, data: str) -> None:
            await asyncio.Event().wait()

    class Transport:
        aborted = False

        def abort(self) -> None:
            self.aborted = True

    transport = Transport()
    connection = webchat._Connection(StuckSocket(), "stuck-user", transport)  # type: ignore[arg-type]
    channel = WebChatChannel("serve-x")
    channel._sockets["stuck-user"] = {connection}
    await channel.send(Reply(id="m/r0", channel="webchat", chat="stuck-user", user="stuck-user", text="hi"))
    assert transport.aborted
    assert len(channel.held) == 1, "kept for when the browser comes back"

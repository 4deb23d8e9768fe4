"""The admin API of a whole gateway (`run`'s roles in this process) on the real RabbitMQ and Redis, a user
talking to it over the fake Telegram: each endpoint, its errors, its tokens, its OpenAPI document."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from openapi_spec_validator import validate

import gateway.app.admin.auth as auth
from gateway.app.admin.api import PREFIX, AdminApi
from gateway.app.process import Gateway
from gateway.app.roles.base import RoleName
from gateway.app.roles.serve import admin_api as serve_admin_api
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.settings import AdminToken, Settings
from tests.support.admin import OTHER_TOKEN, TOKEN, Admin, Schemas, keys_naming
from tests.support.bus import delete_topology
from tests.support.deployment import SECRET, TelegramUser, sent_texts, write_stories
from tests.support.fakes import FakeTelegram


@dataclass
class Deployment:
    admin: Admin
    user: TelegramUser
    telegram: FakeTelegram
    gateway: Gateway
    redis_prefix: str


async def start(
    tmp_path: Path, amqp_url: str, queue_prefix: str, redis_url: str, redis_prefix: str,
    telegram: FakeTelegram, tokens: tuple[AdminToken, ...],
) -> Gateway:  # fmt: skip
    settings = Settings(
        amqp_url=amqp_url,
        redis_url=redis_url,
        queue_prefix=queue_prefix,
        redis_prefix=redis_prefix,
        partitions=4,
        stories=write_stories(tmp_path / "stories"),
        outbox=tmp_path / "outbox",
        port=0,
        telegram_bot_token=telegram.token,
        telegram_api_url=telegram.url,
        telegram_webhook_secret=SECRET,
        admin_tokens=tokens,
        instance_id="test-serve",
    )
    gateway = Gateway(settings, frozenset(RoleName))
    await gateway.start()
    return gateway


@pytest.fixture
async def deployment(
    tmp_path: Path, amqp_url: str, queue_prefix: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Deployment]:
    tokens = (AdminToken("ops", TOKEN), AdminToken("ci", OTHER_TOKEN))
    async with FakeTelegram() as telegram, aiohttp.ClientSession() as http:
        gateway = await start(tmp_path, amqp_url, queue_prefix, redis_url, redis_prefix, telegram, tokens)
        try:
            assert gateway.address is not None
            yield Deployment(
                Admin(http, gateway.address), TelegramUser(http, gateway.address, 4242, 100), telegram,
                gateway, redis_prefix,
            )  # fmt: skip
        finally:
            await gateway.stop()
            assert isinstance(gateway.bus, RabbitBus)
            await delete_topology(amqp_url, gateway.bus.topology)


async def meet(deployment: Deployment, name: str = "Ada") -> None:
    """The user says hi and presses their name: the bot now keeps Name."""
    user, telegram = deployment.user, deployment.telegram
    before = len(telegram.calls_to("sendMessage", ok=True))
    assert await user.say("hi") == 200
    (question, *_) = (await telegram.wait_for_calls(before + 1, method="sendMessage", ok=True))[before:]
    button = next(
        b for row in question.params["reply_markup"]["inline_keyboard"] for b in row if b["text"] == name
    )
    assert await user.press(button["callback_data"], name) == 200
    await telegram.wait_for_calls(before + 2, method="sendMessage", ok=True)


async def test_show_change_export_and_erase_one_user(deployment: Deployment) -> None:
    admin = deployment.admin
    status, document = await admin.call("GET", "/openapi.json")
    assert status == 200
    schemas = Schemas(document)
    await meet(deployment)

    status, shown = await admin.call("GET", "/users/telegram/4242")
    assert status == 200, shown
    schemas.check("User", shown)
    assert shown["attributes"] == {"Name": "Ada"} and shown["opted_out"] is False
    assert shown["known"]["broadcast_chat"] == "4242" and shown["known"]["last_seen"].endswith("Z")
    [conversation] = shown["conversations"]
    assert conversation["chat"] == "4242" and conversation["session"]["story"] == "greet"

    status, changed = await admin.call(
        "PATCH", "/users/telegram/4242", {"attributes": {"City": "Paris", "Name": None}}
    )
    assert status == 200, changed
    schemas.check("Attributes", changed)
    assert changed["attributes"] == {"City": "Paris"}
    status, shown = await admin.call("GET", "/users/telegram/4242")
    assert shown["attributes"] == {"City": "Paris"}

    status, exported = await admin.call("GET", "/users/telegram/4242/export")
    assert status == 200
    schemas.check("Export", exported)
    for key, value in shown.items():
        assert exported[key] == value, f"the export holds what show shows: {key}"
    texts = [reply["text"] for message in exported["messages"] for reply in message["replies"]]
    assert texts == ["What's your name?", "Nice to meet you, Ada."]

    status, erased = await admin.call("DELETE", "/users/telegram/4242")
    assert status == 200, erased
    schemas.check("Erased", erased)
    assert erased["erased"] == {
        "attributes": 1, "opted_out": False, "sessions": 1, "records": {}, "messages": 2,
        "index_entry": True, "email_jobs_cancelled": 0, "dead_letters": 0, "held_web_chat_replies": 0,
    }  # fmt: skip
    status, again = await admin.call("DELETE", "/users/telegram/4242")
    assert status == 200 and not any(again["erased"].values()), "a second erase finds nothing"
    assert await keys_naming(admin_redis(deployment), deployment.redis_prefix, "4242") == []
    status, shown = await admin.call("GET", "/users/telegram/4242")
    assert (shown["attributes"], shown["known"], shown["conversations"]) == ({}, None, [])

    before = len(sent_texts(deployment.telegram, 4242))
    assert await deployment.user.say("hi") == 200
    await deployment.telegram.wait_for_calls(before + 1, method="sendMessage", ok=True)
    assert sent_texts(deployment.telegram, 4242)[-1] == "What's your name?", "greeted as new"


def admin_redis(deployment: Deployment) -> str:
    url = deployment.gateway.settings.redis_url
    assert url is not None
    return url


async def test_every_call_needs_one_of_the_tokens_and_the_log_names_it(
    deployment: Deployment, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = deployment.admin
    compared: list[bytes] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for token in (None, "", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), f"{TOKEN} {OTHER_TOKEN}"):
        for method, path in (
            ("GET", "/users/telegram/1"),
            ("DELETE", "/users/telegram/1"),
            ("GET", "/openapi.json"),
        ):
            status, body = await Admin(admin.http, admin.address, token).call(method, path)
            assert status == 401 and body["error"]["code"] == "unauthorized", (token, path)
    async with admin.http.get(
        f"{admin.address}/api/users/telegram/1", headers={"Authorization": f"Basic {TOKEN}"}
    ) as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert compared and len(compared) % 2 == 0 and set(compared) == {TOKEN.encode(), OTHER_TOKEN.encode()}, (
        "every token is compared, with hmac.compare_digest, whichever matches"
    )
    compared.clear()
    with caplog.at_level(logging.INFO, logger="gateway.audit"):
        status, _ = await Admin(admin.http, admin.address, OTHER_TOKEN).call(
            "PATCH", "/users/telegram/77", {"attributes": {"Plan": "pro"}}
        )
        assert status == 200
        assert (await admin.call("GET", "/users/telegram/77"))[0] == 200
    assert compared == [TOKEN.encode(), OTHER_TOKEN.encode()] * 4, "guard and handler, each call"
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.audit"]
    assert lines == ["audit: ci changed telegram/77: set Plan; deleted -", "audit: ops read telegram/77"]
    assert TOKEN not in caplog.text and OTHER_TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/users/fax/123", None, 404, "unknown_channel"),
        ("GET", "/users/telegram/not-a-number", None, 400, "bad_user"),
        ("DELETE", "/users/sms/0044123", None, 400, "bad_user"),
        ("GET", "/users/webchat/short/export", None, 400, "bad_user"),
        ("PATCH", "/users/telegram/1", b"{not json", 400, "bad_json"),
        ("PATCH", "/users/telegram/1", b"[1, 2]", 400, "bad_body"),
        ("PATCH", "/users/telegram/1", {"attributes": {"A": "1"}, "extra": 1}, 400, "bad_body"),
        ("PATCH", "/users/telegram/1", {}, 400, "bad_body"),
        ("PATCH", "/users/telegram/1", {"attributes": {}}, 400, "bad_body"),
        ("PATCH", "/users/telegram/1", {"attributes": ["Name"]}, 400, "bad_body"),
        ("PATCH", "/users/telegram/1", {"attributes": {"First Name": "Ada"}}, 400, "bad_name"),
        ("PATCH", "/users/telegram/1", {"attributes": {"Age": 42}}, 400, "bad_value"),
        ("PATCH", "/users/telegram/1", {"attributes": {"Bio": "x" * 65537}}, 400, "bad_value"),
        ("PATCH", "/users/fax/1", {"attributes": {"A": "1"}}, 404, "unknown_channel"),
        ("POST", "/broadcasts", {"story": "greet"}, 400, "bad_body"),
        ("POST", "/broadcasts", {"story": "greet", "channel": "telegram", "dry": True}, 400, "bad_body"),
        ("POST", "/broadcasts", {"story": "greet", "channel": "telegram", "dry_run": "yes"}, 400, "bad_body"),
        ("POST", "/broadcasts", {"story": "nope", "channel": "telegram"}, 400, "unknown_story"),
        ("POST", "/broadcasts", {"story": "greet", "channel": "fax"}, 400, "unknown_channel"),
        (
            "POST",
            "/broadcasts",
            {"story": "greet", "channel": "telegram", "where": "@session.City"},
            400,
            "bad_condition",
        ),
        (
            "POST",
            "/broadcasts",
            {"story": "greet", "channel": "telegram", "where": "@user.A =="},
            400,
            "bad_condition",
        ),
        ("GET", "/broadcasts/no-such-one", None, 404, "unknown_broadcast"),
        ("GET", "/broadcasts/a:b", None, 404, "unknown_broadcast"),
        ("GET", "/nothing/here", None, 404, "not_found"),
        ("PUT", "/users/telegram/1", {"attributes": {"A": "1"}}, 405, "method_not_allowed"),
    ],
)
async def test_bad_requests_are_refused_with_the_reason(
    deployment: Deployment, method: str, path: str, body: object, status: int, code: str
) -> None:
    raw = body if isinstance(body, bytes) else None
    found_status, found = await deployment.admin.call(method, path, None if raw else body, raw=raw)
    assert (found_status, found["error"]["code"]) == (status, code), found
    assert found["error"]["message"]
    status, _ = await deployment.admin.call("GET", "/users/telegram/1")
    assert status == 200, "nothing was changed by a refused request"


async def test_a_body_of_two_mebibytes_is_refused(deployment: Deployment) -> None:
    big = json.dumps({"attributes": {"Bio": "x" * (2 * 1024 * 1024)}}).encode()
    status, found = await deployment.admin.call("PATCH", "/users/telegram/1", raw=big)
    assert (status, found["error"]["code"]) == (413, "too_large")
    admin = deployment.admin

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: refused as it arrives
        for _ in range(32):
            yield b"x" * 65536
        yield b"x"

    async with admin.http.patch(
        f"{admin.address}/api/users/telegram/1", data=chunks(), headers=admin.headers()
    ) as r:
        assert r.status == 413
    status, shown = await admin.call("GET", "/users/telegram/1")
    assert status == 200 and shown["attributes"] == {}


async def test_a_broadcast_is_made_run_and_followed(deployment: Deployment) -> None:
    admin = deployment.admin
    schemas = Schemas((await admin.call("GET", "/openapi.json"))[1])
    await meet(deployment, "Grace")
    status, made = await admin.call(
        "POST", "/broadcasts", {"story": "count", "channel": "telegram", "where": '@user.Name == "grace"'}
    )
    assert status == 202, made
    schemas.check("Broadcast", made)
    assert made["status"] == "running" and made["by"] == "ops"
    done = await admin.until_done(made["id"])
    schemas.check("Broadcast", done)
    assert (done["walked"], done["matched"], done["started"], done["failed"]) == (1, 1, 1, 0)
    await deployment.telegram.wait_for_calls(3, method="sendMessage", ok=True)
    assert sent_texts(deployment.telegram, 4242)[-1] == "got ", "the story ran, with no @message"

    status, dry = await admin.call(
        "POST", "/broadcasts", {"story": "count", "channel": "telegram", "dry_run": True}
    )
    done = await admin.until_done(dry["id"])
    assert (done["dry_run"], done["matched"], done["started"]) == (True, 1, 0)
    assert await deployment.user.say("n1") == 200  # after anything the dry run might have started
    await deployment.telegram.wait_for_calls(4, method="sendMessage", ok=True)
    assert sent_texts(deployment.telegram, 4242)[2:] == ["got ", "got n1"], "a dry run sends nothing"


async def test_the_openapi_document_is_valid_and_describes_every_route(deployment: Deployment) -> None:
    status, document = await deployment.admin.call("GET", "/openapi.json")
    assert status == 200
    validate(document)
    documented = {
        (method.upper(), "/api" + path) for path, item in document["paths"].items() for method in item
        if method != "parameters"
    }  # fmt: skip
    api = admin_api(deployment.gateway)
    served = {(route.method, PREFIX + route.path) for route in api.routes()}
    assert served == documented
    for method, path in served:  # each is served at that path, behind the token
        concrete = path.replace("{channel}", "telegram").replace("{user}", "5").replace("{id}", "x")
        status, _ = await Admin(deployment.admin.http, deployment.admin.address, None).call(
            method, concrete[4:]
        )
        assert status == 401, (method, path)


def admin_api(gateway: Gateway) -> AdminApi:
    assert gateway.serve is not None
    return serve_admin_api(gateway.serve.services, lambda: None, None, None)


async def test_the_api_is_off_without_tokens(
    tmp_path: Path, amqp_url: str, queue_prefix: str, redis_url: str, redis_prefix: str
) -> None:
    async with FakeTelegram() as telegram, aiohttp.ClientSession() as http:
        gateway = await start(tmp_path, amqp_url, queue_prefix, redis_url, redis_prefix, telegram, ())
        try:
            for path in ("/api/users/telegram/1", "/api/openapi.json", "/api/", "/api/broadcasts/x"):
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with http.get(f"{gateway.address}{path}", headers=headers) as response:
                    assert response.status == 404, path
            assert not any("admin API" in line for line in gateway.describe())
        finally:
            await gateway.stop()
            assert isinstance(gateway.bus, RabbitBus)
            await delete_topology(amqp_url, gateway.bus.topology)

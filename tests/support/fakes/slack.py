"""A fake Slack Web API: ``{url}chat.postMessage`` with ``Authorization: Bearer <token>``.

Real wire format (https://docs.slack.dev/apis/web-api/): JSON or form parameters; answers are HTTP 200
with ``{"ok": true, ...}`` or ``{"ok": false, "error": "channel_not_found"}``; a rate limit is HTTP 429
with a ``Retry-After`` header and ``{"ok": false, "error": "ratelimited"}``. Channels in
:attr:`FakeSlack.unknown_channels` answer ``channel_not_found``; Block Kit limits the sender can trip
over (button text 75, value 2000, section text 3000, 50 blocks) answer ``invalid_blocks``. Every message
posted is kept in :attr:`FakeSlack.posted` as the Events API would deliver it back to the app (a
``message`` event with the bot's ``bot_id``: see :meth:`FakeSlack.echo`).

    async with FakeSlack() as slack:
        channel = SlackChannel(slack.token, secret, api_url=slack.url)
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from tests.support.fakes.base import FakeApi, drop

DEFAULT_TOKEN = "xoxb-fake-token"
BOT_USER_ID = "U0FAKEBOT"
BOT_ID = "B0FAKEBOT"
_ERRORS = {429: "ratelimited", 500: "internal_error", 503: "service_unavailable"}


class FakeSlack(FakeApi):
    def __init__(self, token: str = DEFAULT_TOKEN) -> None:
        super().__init__()
        self.token = token
        self.unknown_channels: set[str] = set()
        self.posted: list[dict[str, Any]] = []  # the messages posted, with their channel
        self._ts = 0

    @property
    def url(self) -> str:
        """The value for ``SLACK_API_URL`` (ends with a slash, as Slack's does)."""
        return f"{self.address}/api/"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/{method}", self._handle)]

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            body = await request.json()
            return dict(body) if isinstance(body, dict) else {}
        params: dict[str, Any] = dict(request.query)
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, str):
                params[key] = json.loads(value) if key in ("blocks", "attachments") else value
        return params

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params = await self._params(request)
        failure = self.take_failure(method)
        if failure is not None:
            if failure.status == 0:
                await self.record(method, params, request, 0)
                return drop(request)
            error = failure.details.get("error") or _ERRORS.get(failure.status, "fatal_error")
            headers = {}
            retry_after = failure.details.get("retry_after", 1 if failure.status == 429 else None)
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            return await self._answer(
                request, method, params, {"ok": False, "error": error}, failure.status, headers
            )
        auth = request.headers.get("Authorization", "")
        if not auth:
            return await self._answer(request, method, params, {"ok": False, "error": "not_authed"})
        if auth != f"Bearer {self.token}":
            return await self._answer(request, method, params, {"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return await self._answer(request, method, params, {"ok": False, "error": "unknown_method"}, 404)
        return await self._answer(request, method, params, handler(params))

    async def _answer(
        self,
        request: web.Request,
        method: str,
        params: dict[str, Any],
        body: dict[str, Any],
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        error = None if body.get("ok") else str(body.get("error"))
        await self.record(method, params, request, status, error)
        return web.json_response(body, status=status, headers=headers)

    # Methods

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "fakebot",
            "team_id": "T0FAKE",
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
        }

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not channel or channel in self.unknown_channels:
            return {"ok": False, "error": "channel_not_found"}
        blocks = params.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not params.get("text") and not blocks:
            return {"ok": False, "error": "no_text"}
        if blocks is not None and not _valid_blocks(blocks):
            return {"ok": False, "error": "invalid_blocks"}
        self._ts += 1
        ts = f"{int(time.time())}.{self._ts:06d}"
        message: dict[str, Any] = {
            "type": "message",
            "text": params.get("text", ""),
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "ts": ts,
        }
        if blocks:
            message["blocks"] = blocks
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        self.posted.append({**message, "channel": channel})
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def echo(self, posted: dict[str, Any], channel_type: str = "channel") -> dict[str, Any]:
        """The ``message`` event the Events API sends the app for one of its own posts (``posted``, an
        item of :attr:`posted`): the bot's user, its ``bot_id`` and ``bot_profile``, the thread."""
        return {
            **posted,
            "app_id": "A0FAKEAPP",
            "bot_profile": {"id": BOT_ID, "app_id": "A0FAKEAPP", "name": "fakebot", "team_id": "T0FAKE"},
            "team": "T0FAKE",
            "event_ts": posted["ts"],
            "channel_type": channel_type,
        }


def _valid_blocks(blocks: Any) -> bool:
    if not isinstance(blocks, list) or len(blocks) > 50:
        return False
    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "section":
            if len(block.get("text", {}).get("text", "")) > 3000:
                return False
        elif kind == "actions":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 25:
                return False
            for element in elements:
                if len(element.get("text", {}).get("text", "")) > 75 or len(element.get("value", "")) > 2000:
                    return False
        elif kind == "image":
            if not block.get("image_url") or not block.get("alt_text"):
                return False
        else:
            return False
    return True

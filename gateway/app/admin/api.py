"""The admin API's routes, mounted under ``/api`` of the serve role's HTTP app when tokens are configured.

Every request needs a valid bearer token (401 otherwise, before anything else is looked at); JSON in and
out; every refusal is ``{"error": {"code", "message"}}`` with a 4xx status saying why: a body over
:data:`MAX_BODY_BYTES` (413), not JSON or not an object or with unknown fields (400), an unknown channel,
user or broadcast (404), a user id or attribute name of the wrong form (400). A store or broker that is
away answers 503 (try again).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gateway.app.admin.auth import Tokens
from gateway.app.admin.openapi import document
from gateway.app.userdata.broadcasts import StoriesSource, make_broadcast, read_broadcast
from gateway.app.userdata.checks import Refused, attribute_changes
from gateway.app.userdata.service import UserDataService
from gateway.core.errors import Unavailable
from gateway.core.store.broadcasts.base import Broadcasts

log = logging.getLogger("gateway.admin")

PREFIX = "/api"
MAX_BODY_BYTES = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


def answer(found: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    body = json.dumps(found, ensure_ascii=False)
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)


async def json_body(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object, at most :data:`MAX_BODY_BYTES`, with no field beyond ``allowed``."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise Refused(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except ValueError:
        raise Refused(400, "bad_json", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "bad_body", "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Refused(
            400, "bad_body", f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )
    return body


class AdminApi:
    def __init__(
        self,
        tokens: Tokens,
        users: UserDataService,
        broadcasts: Broadcasts,
        stories: StoriesSource,
        *,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.tokens = tokens
        self.users = users
        self.broadcasts = broadcasts
        self.stories = stories
        self.wake = wake  # tells a broadcast runner of this process that there is a new one

    def routes(self) -> list[web.RouteDef]:
        """Every route of the API (the OpenAPI document describes each), under :data:`PREFIX`."""
        return [
            web.get("/users/{channel}/{user}", self.show, allow_head=False),
            web.patch("/users/{channel}/{user}", self.change),
            web.delete("/users/{channel}/{user}", self.erase),
            web.get("/users/{channel}/{user}/export", self.export, allow_head=False),
            web.post("/broadcasts", self.broadcast),
            web.get("/broadcasts/{id}", self.progress, allow_head=False),
            web.get("/openapi.json", self.openapi, allow_head=False),
        ]

    def install(self, app: web.Application) -> None:
        admin = web.Application(middlewares=[self._guard])
        admin.add_routes(self.routes())
        app.add_subapp(PREFIX, admin)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        who = self.tokens.who(request.headers.get("Authorization"))
        if who is None:
            log.warning("admin API: %s %s refused: no valid bearer token", request.method, request.path)
            return error(
                401, "unauthorized", "a valid 'Authorization: Bearer <token>' is needed",
                {"WWW-Authenticate": 'Bearer realm="gateway admin"'},
            )  # fmt: skip
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return error(404, "not_found", f"no such path: {request.path} (see {PREFIX}/openapi.json)")
        except web.HTTPMethodNotAllowed as exc:
            return error(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed; use {', '.join(sorted(exc.allowed_methods))}",
            )
        except Refused as refused:
            return error(refused.status, refused.code, refused.message)
        except Unavailable as exc:
            log.warning("admin API: %s %s: %s", request.method, request.path, exc)
            return error(503, "unavailable", "the store or the broker is unavailable; try again shortly")
        except Exception:
            log.exception("admin API: %s %s failed", request.method, request.path)
            return error(500, "internal", "the gateway failed to answer; its log says why")

    def _who(self, request: web.Request) -> str:
        """The name of the request's token (checked by the guard before any handler runs)."""
        who = self.tokens.who(request.headers.get("Authorization"))
        assert who is not None
        return who

    async def show(self, request: web.Request) -> web.Response:
        channel, user = request.match_info["channel"], request.match_info["user"]
        return answer(await self.users.show(self._who(request), channel, user))

    async def export(self, request: web.Request) -> web.Response:
        channel, user = request.match_info["channel"], request.match_info["user"]
        found = await self.users.export(self._who(request), channel, user)
        disposition = f'attachment; filename="{channel}-{user.lstrip("+")}.json"'
        return answer(found, headers={"Content-Disposition": disposition})

    async def change(self, request: web.Request) -> web.Response:
        channel, user = request.match_info["channel"], request.match_info["user"]
        body = await json_body(request, frozenset({"attributes"}))
        if "attributes" not in body:
            raise Refused(400, "bad_body", 'the body needs "attributes": {"Name": "value" or null, ...}')
        changes = attribute_changes(body["attributes"])
        return answer(await self.users.change(self._who(request), channel, user, changes))

    async def erase(self, request: web.Request) -> web.Response:
        channel, user = request.match_info["channel"], request.match_info["user"]
        return answer(await self.users.erase(self._who(request), channel, user))

    async def broadcast(self, request: web.Request) -> web.Response:
        body = await json_body(request, frozenset({"story", "channel", "where", "dry_run"}))
        story, channel = body.get("story"), body.get("channel")
        where, dry_run = body.get("where", ""), body.get("dry_run", False)
        if not isinstance(story, str) or not isinstance(channel, str):
            raise Refused(400, "bad_body", '"story" and "channel" are needed, as text')
        if not isinstance(where, str) or not isinstance(dry_run, bool):
            raise Refused(400, "bad_body", '"where" is text (a condition) and "dry_run" true or false')
        made = await make_broadcast(
            self.broadcasts, self.stories,
            who=self._who(request), story=story, channel=channel, where=where, dry_run=dry_run,
        )  # fmt: skip
        if self.wake is not None:
            self.wake()
        return answer(made.as_json(), 202, {"Location": f"{PREFIX}/broadcasts/{made.id}"})

    async def progress(self, request: web.Request) -> web.Response:
        return answer((await read_broadcast(self.broadcasts, request.match_info["id"])).as_json())

    async def openapi(self, request: web.Request) -> web.Response:
        return answer(document())

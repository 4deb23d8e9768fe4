"""A fake JSON API on 127.0.0.1 for the stories' http action: scripted answers per path, every request kept.

``api.script("/orders/42", Answer(503), Answer(json={...}))`` answers the next calls to that path in turn,
then keeps giving the last answer. An answer can be held until the test releases it (``hold``), redirect,
drop the connection, stream a body without a length, or take its time. Tests await requests with
:meth:`FakeJsonApi.wait_for` instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web


@dataclass(frozen=True)
class Answer:
    status: int = 200
    json: Any = None  # sent as JSON when set
    body: bytes = b""  # sent as is otherwise
    headers: Mapping[str, str] = field(default_factory=dict)
    redirect: str | None = None  # a Location (with status 302 unless another 3xx is given)
    hold: asyncio.Event | None = None  # answer only once the event is set
    delay: float = 0.0  # seconds before answering (for a benchmark's "slow API", never to synchronise)
    drop: bool = False  # close the connection without answering
    stream: bool = False  # send the body in chunks, without Content-Length


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class FakeJsonApi:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests: list[Request] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._scripts: dict[str, list[Answer]] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def script(self, path: str, *answers: Answer) -> None:
        self._scripts[path] = list(answers)

    def to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, n: int, path: str | None = None, timeout: float = 10.0) -> list[Request]:
        """At least ``n`` requests (to ``path``) have arrived; returns them."""

        def matching() -> list[Request]:
            return [r for r in self.requests if path is None or r.path == path]

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(matching()) >= n)
        return matching()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            Request(request.method, request.path, dict(request.query), dict(request.headers), body)
        )
        async with self._changed:
            self._changed.notify_all()
        script = self._scripts.get(request.path) or [Answer()]
        answer = script.pop(0) if len(script) > 1 else script[0]
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if answer.hold is not None:
                await answer.hold.wait()
            if answer.delay:
                await asyncio.sleep(answer.delay)
            return await self._answer(request, answer)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, answer: Answer) -> web.StreamResponse:
        if answer.drop:
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        headers = dict(answer.headers)
        if answer.redirect is not None:
            headers["Location"] = answer.redirect
            return web.Response(status=answer.status if 300 <= answer.status < 400 else 302, headers=headers)
        body = answer.body
        if answer.json is not None:
            body = json.dumps(answer.json).encode()
            headers.setdefault("Content-Type", "application/json")
        if not answer.stream:
            return web.Response(status=answer.status, body=body, headers=headers)
        response = web.StreamResponse(status=answer.status, headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 64 * 1024):
            await response.write(body[start : start + 64 * 1024])
        await response.write_eof()
        return response

    async def start(self) -> Self:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

"""What every fake API server shares: an aiohttp app on 127.0.0.1, a call log, injected failures.

A fake records every call (failed ones too, with the status it answered) and can be told to fail the
next N calls with a given status (``fail_next``) or to drop the connection without answering
(``drop_next``), optionally only for one method. Tests await calls with :meth:`FakeApi.wait_for_calls`
instead of sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web


@dataclass(frozen=True)
class Call:
    """One request the fake received: the API method, its decoded parameters, and what it answered."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    status: int  # the HTTP status answered; 0 when the connection was dropped
    error: str | None = None  # an error answered with HTTP 200 (Slack's ``"ok": false``)
    at: float = field(default_factory=time.time)  # when it was received (wall clock)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300 and self.error is None


@dataclass
class Failure:
    """An injected failure: an HTTP status with channel-specific details, or a dropped connection."""

    status: int  # 0: drop the connection without answering
    method: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    passes: int = 0  # matching calls let through before this failure applies


class FakeApi:
    """Base of the fake servers; subclasses add their routes in :meth:`routes`."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._failures: deque[Failure] = deque()
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # Lifecycle

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Failures

    def fail_next(
        self, n: int = 1, status: int = 500, *, method: str | None = None, after: int = 0, **details: Any
    ) -> None:
        """Answer the next ``n`` calls (of ``method``, if given) with ``status`` and the channel's error body,
        after letting ``after`` of them through.

        Details are channel-specific: Telegram ``description=``, ``retry_after=``; Slack ``error=``,
        ``retry_after=``; Twilio ``code=``, ``message=``, ``retry_after=``.
        """
        self._failures.extend(Failure(status, method, dict(details)) for _ in range(n))
        if n and after:
            self._failures[-n].passes = after

    def drop_next(self, n: int = 1, *, method: str | None = None) -> None:
        """Close the connection of the next ``n`` calls without answering (a network error)."""
        self._failures.extend(Failure(0, method) for _ in range(n))

    def take_failure(self, method: str) -> Failure | None:
        for failure in self._failures:
            if failure.method is None or failure.method == method:
                if failure.passes:
                    failure.passes -= 1
                    return None
                self._failures.remove(failure)
                return failure
        return None

    # The call log

    async def record(
        self, method: str, params: dict[str, Any], request: web.Request, status: int, error: str | None = None
    ) -> None:
        self.calls.append(Call(method, params, dict(request.headers), status, error))
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]

    async def wait_for_calls(
        self, n: int, *, method: str | None = None, ok: bool | None = None, timeout: float = 10.0
    ) -> list[Call]:
        """Wait until at least ``n`` matching calls were received; return the matching calls."""

        def matching() -> list[Call]:
            return [
                c for c in self.calls if (method is None or c.method == method) and (ok is None or c.ok == ok)
            ]

        assert self._changed is not None
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(matching()) >= n)
        return matching()


def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection under the client: it sees a disconnect, never an answer."""
    if request.transport is not None:
        request.transport.close()
    return web.Response()

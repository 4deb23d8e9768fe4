"""What any process may run beside its roles: health and metrics over HTTP, and a heartbeat file."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from gateway.app.heartbeat import beat
from gateway.app.http import HttpServer, health_routes
from gateway.app.roles.base import Role, Services


class HealthServer(Role):
    """``/healthz``, ``/readyz`` and ``/metrics`` of a process without webhooks, on ``GATEWAY_METRICS_PORT``.

    Stopped last (in ``close``), so probes and scrapes see the process until it is gone.
    """

    def __init__(self, services: Services, port: int) -> None:
        app = web.Application()
        app.add_routes(health_routes(services.bus, services.store, services.metrics))
        self.server = HttpServer(app, services.settings.host, port)

    @property
    def address(self) -> str | None:
        return self.server.address

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.stop()

    def describe(self) -> list[str]:
        return [f"health and metrics on {self.address}"]


class Heartbeat(Role):
    """Touches ``GATEWAY_HEARTBEAT_FILE`` while the event loop runs (``gateway-healthcheck`` reads it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(beat(self.path))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

"""The HTTP face of ``serve`` and ``run``: webhooks, health, readiness and metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable

from aiohttp import web

from gateway.core.bus.base import Bus
from gateway.core.metrics import CONTENT_TYPE, Metrics
from gateway.core.store.base import Store


def health_routes(bus: Bus, store: Store, metrics: Metrics) -> list[web.RouteDef]:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def probe() -> tuple[bool, bool, bool]:
        bus_ok, store_ok = await asyncio.gather(_answers(bus.ping()), _answers(store.ping()))
        ready = bus_ok and store_ok
        metrics.ready.set(1 if ready else 0)
        return ready, bus_ok, store_ok

    async def readyz(_: web.Request) -> web.Response:
        ready, bus_ok, store_ok = await probe()
        body = {"status": "ready" if ready else "not ready", "bus": bus_ok, "store": store_ok}
        return web.Response(
            status=200 if ready else 503, text=json.dumps(body), content_type="application/json"
        )

    async def metrics_page(_: web.Request) -> web.Response:
        await probe()  # so that gateway_ready is current when scraped
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics_page)]


async def _answers(probe: Awaitable[bool]) -> bool:
    try:
        async with asyncio.timeout(2.0):
            return await probe
    except Exception:
        return False


class HttpServer:
    """An aiohttp app listening on one address; stopped without aiohttp's own signal handling."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        self.host, self.port = host, port
        self.address: str | None = None

    async def start(self) -> str:
        """Listen; returns ``http://host:port`` with the port actually bound (``0`` picks a free one)."""
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        bound = self.runner.addresses[0][1] if self.runner.addresses else self.port
        self.address = f"http://{self.host}:{bound}"
        return self.address

    async def stop(self) -> None:
        """Stop listening; requests in flight get ``shutdown_timeout`` to finish."""
        await self.runner.cleanup()

"""The ``serve`` role: webhooks in (and pollers, and the web chat), replies out to the channel APIs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from channels.base import Channel
from channels.delivery import Deliverer
from channels.ingress import Ingress
from channels.registry import build_pollers
from channels.webchat import WebChatChannel
from gateway.app.admin.api import AdminApi
from gateway.app.admin.auth import Tokens
from gateway.app.http import HttpServer, health_routes
from gateway.app.map_page import MapPage
from gateway.app.roles.base import Role, Services
from gateway.app.userdata.service import UserDataService
from worker.engine import Stories
from worker.reload import load_engine

MAX_REQUEST_BYTES = 2 * 1024 * 1024  # aiohttp's own ceiling; the ingress refuses webhooks over 1 MiB itself


class ServeRole(Role):
    def __init__(
        self,
        services: Services,
        channels: list[Channel],
        *,
        serve_http: bool = True,
        running_stories: Callable[[], Stories | None] = lambda: None,
        wake_broadcasts: Callable[[], None] | None = None,
    ) -> None:
        self.services = services
        self.channels = channels
        self.serve_http = serve_http
        self.running_stories = running_stories  # for the map page: the stories a worker here runs, if any
        self.wake_broadcasts = wake_broadcasts  # a broadcast runner in this process, told of new ones
        settings = services.settings
        web_chat = self.web_chat
        self.deliverer = Deliverer(
            services.bus,
            services.store,
            {channel.name: channel for channel in channels},
            services.metrics,
            dedup_ttl=settings.dedup_ttl,
            rate_limits=settings.rate_limits,
            instance=web_chat.instance if web_chat is not None else None,
        )
        self.ingress = Ingress(services.bus, services.metrics, public_url=settings.public_url)
        self.pollers = build_pollers(settings, channels)
        self._polling: list[asyncio.Task[None]] = []
        self.http: HttpServer | None = None

    @property
    def web_chat(self) -> WebChatChannel | None:
        return next((c for c in self.channels if isinstance(c, WebChatChannel)), None)

    @property
    def address(self) -> str | None:
        return self.http.address if self.http is not None else None

    async def start(self) -> None:
        for channel in self.channels:
            await channel.start()
        await self.deliverer.start(self.services.settings.delivery_concurrency)
        loop = asyncio.get_running_loop()
        self._polling = [loop.create_task(poller.run(self.ingress.accept)) for poller in self.pollers]
        if self.serve_http:
            self.http = HttpServer(self._app(), self.services.settings.host, self.services.settings.port)
            await self.http.start()

    def _app(self) -> web.Application:
        services = self.services
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.add_routes(health_routes(services.bus, services.store, services.metrics))
        app.add_routes(self.ingress.routes(self.channels))
        if (web_chat := self.web_chat) is not None:
            web_chat.install(app, self.ingress.accept)
            app.add_routes(MapPage(services.settings, self.running_stories).routes())
        if services.settings.admin_tokens:
            admin_api(services, self.running_stories, web_chat, self.wake_broadcasts).install(app)
        return app

    async def stop_intake(self) -> None:
        if self.http is not None:
            await self.http.stop()  # webhooks in flight finish; the web chat's sockets are closed (1001)
        for poller in self.pollers:
            poller.stop()

    async def drain(self, timeout: float) -> None:
        await asyncio.gather(
            self.deliverer.stop(timeout),
            *(asyncio.wait_for(task, timeout) for task in self._polling),
            return_exceptions=True,
        )

    async def close(self) -> None:
        await self.ingress.close()
        for channel in self.channels:
            try:
                await channel.close()
            except Exception:
                continue

    def describe(self) -> list[str]:
        settings = self.services.settings
        lines = [f"listening on {self.address} (public URL {settings.public_url})"] if self.address else []
        names = ", ".join(c.describe() for c in self.channels) or "none configured"
        lines.append(f"channels: {names}")
        if self.web_chat is not None and self.address is not None:
            lines.append(f"web chat: {_openable(self.address)}/")
        if settings.admin_tokens and self.address is not None:
            names = ", ".join(token.name for token in settings.admin_tokens)
            lines.append(f"admin API: {_openable(self.address)}/api/ (tokens: {names})")
        return lines


def _openable(address: str) -> str:
    """The address a browser on this machine opens (a wildcard listen address is not one)."""
    for wildcard in ("://0.0.0.0:", "://:::", "://[::]:"):
        address = address.replace(wildcard, "://127.0.0.1:")
    return address


def admin_api(
    services: Services,
    running_stories: Callable[[], Stories | None],
    web_chat: WebChatChannel | None,
    wake_broadcasts: Callable[[], None] | None,
) -> AdminApi:
    """The admin API of this process: the stories a broadcast may start are the ones a worker here runs,
    else the stories folder as it is now."""
    settings = services.settings

    def stories() -> Stories:
        return running_stories() or load_engine(settings).stories

    users = UserDataService(
        services.store,
        services.users,
        bus=services.bus,
        dedup_ttl=settings.dedup_ttl,
        held=web_chat.held if web_chat is not None else None,
        schedule=services.schedule,
        partitions=settings.partitions,
    )
    return AdminApi(
        Tokens(settings.admin_tokens), users, services.users.broadcasts, stories, wake=wake_broadcasts
    )

"""One gateway process: build the bus and store from the settings, start the roles asked for, stop cleanly.

``run`` starts every role in one process; ``serve``, ``worker`` and ``mailer`` start one each and need
RabbitMQ and Redis. At start, an unreachable broker or Redis is retried with one log line per attempt for
``GATEWAY_CONNECT_TIMEOUT`` (default 30 s: long enough for ``docker compose up`` to bring them up, short
enough that a wrong URL fails the process visibly), then the process exits 1 with one clear line.
SIGTERM or SIGINT drains in-flight work (10 s at most) and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import gc
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from channels.base import Channel
from channels.registry import build_channels
from channels.webchat import WebChatChannel
from gateway.bus.base import Bus
from gateway.delivery import Deliverer
from gateway.heartbeat import beat
from gateway.http import health_routes
from gateway.ingress import Ingress
from gateway.map_page import MapPage
from gateway.metrics import Metrics
from gateway.reload import StoriesReloader
from gateway.settings import Settings, SettingsError
from gateway.store.base import Store

if TYPE_CHECKING:
    from mailer.transport import MailTransport
    from worker.engine import Engine, Stories

log = logging.getLogger("gateway")

DRAIN_SECONDS = 8.0


class Role(enum.StrEnum):
    SERVE = "serve"
    WORKER = "worker"
    MAILER = "mailer"


class StartupError(Exception):
    """A problem that stops the process at start; printed as one line."""


class StoriesRefused(StartupError):
    """Stories that `gateway check` rejects: the process prints the same positioned lines and stops."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(f"{len(lines)} problem(s) in the stories; not starting")
        self.lines = lines


def build_bus(settings: Settings) -> Bus:
    if settings.amqp_url is None:
        from gateway.bus.memory import MemoryBus

        return MemoryBus(partitions=settings.partitions, max_attempts=settings.max_attempts)
    from gateway.bus.rabbit import RabbitBus

    return RabbitBus(
        settings.amqp_url,
        prefix=settings.queue_prefix,
        partitions=settings.partitions,
        queue_type=settings.queue_type,
        max_attempts=settings.max_attempts,
    )


def build_store(settings: Settings, clock: Callable[[], float] | None = None) -> Store:
    if settings.redis_url is None:
        from gateway.store.memory import MemoryStore

        if clock is None:
            return MemoryStore(processed_ttl=settings.processed_ttl)
        return MemoryStore(processed_ttl=settings.processed_ttl, clock=clock)
    from gateway.store.redis import RedisStore

    return RedisStore.from_url(
        settings.redis_url, prefix=settings.redis_prefix, processed_ttl=settings.processed_ttl
    )


async def _until_ready(name: str, attempt: Callable[[], object], deadline: float) -> None:
    delay = 0.5
    while True:
        try:
            result = attempt()
            if asyncio.iscoroutine(result):
                result = await result
            if result is False:
                raise ConnectionError("does not answer")
            return
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise StartupError(f"{name} unreachable: {exc or type(exc).__name__}") from None
            log.warning(
                "%s not reachable yet (%s); retrying in %.1f s", name, exc or type(exc).__name__, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


@dataclass
class Gateway:
    """The roles of one process and the services they share."""

    settings: Settings
    roles: frozenset[Role]
    channels: list[Channel] | None = None  # None: the channels the settings switch on
    serve_http: bool = True
    metrics: Metrics = field(default_factory=Metrics)
    bus: Bus | None = None
    store: Store | None = None

    def __post_init__(self) -> None:
        self._stoppers: list[Callable[[], object]] = []
        self._runner: web.AppRunner | None = None
        self.address: str | None = None

    async def start(self) -> None:
        settings = self.settings
        engine = None
        if Role.WORKER in self.roles:
            engine = load_engine(settings)  # refuses broken stories before connecting anywhere
        self.bus = self.bus or build_bus(settings)
        self.store = self.store or build_store(settings)
        if self.channels is None:
            try:
                self.channels = build_channels(settings, self.store) if Role.SERVE in self.roles else []
            except SettingsError as exc:
                raise StartupError(str(exc)) from None
            if Role.SERVE in self.roles and settings.webchat and self.serve_http:
                self.channels.append(WebChatChannel(settings.instance_id))
        deadline = time.monotonic() + settings.connect_timeout
        await _until_ready("broker (GATEWAY_AMQP_URL)", self.bus.start, deadline)
        await _until_ready("store (GATEWAY_REDIS_URL)", self.store.ping, deadline)

        if Role.MAILER in self.roles:
            await self._start_mailer()
        if Role.WORKER in self.roles:
            assert engine is not None
            await self._start_worker(engine)
        if Role.SERVE in self.roles:
            await self._start_serve()
        elif settings.metrics_port is not None:
            await self._start_ops_http(settings.metrics_port)
        if settings.heartbeat_file is not None:
            heartbeat = asyncio.get_running_loop().create_task(beat(settings.heartbeat_file))
            self._stoppers.append(heartbeat.cancel)

    async def _start_mailer(self) -> None:
        from mailer.service import Mailer

        assert self.bus is not None and self.store is not None
        settings = self.settings
        mailer = Mailer(
            self.bus,
            self.store,
            build_transport(settings),
            mail_from=settings.mail_from,
            max_recipients=settings.max_recipients,
            dedup_ttl=settings.dedup_ttl,
            metrics=self.metrics,
        )
        await mailer.start()
        self._stoppers.append(functools.partial(mailer.stop, DRAIN_SECONDS))

    async def _start_worker(self, engine: Engine) -> None:
        from worker.service import StoryWorker

        assert self.bus is not None and self.store is not None
        self.engine = engine
        story_worker = StoryWorker(self.bus, self.store, lambda: self.engine, metrics=self.metrics)
        watch = self.settings.watch_stories
        if watch is None:  # by default the development mode (`run`) watches the folder; others use SIGHUP
            watch = self.roles == frozenset(Role) and self.serve_http
        self.reloader = StoriesReloader(self.settings, self._swap_engine, watch=watch)
        self.reloader.start()
        self._stoppers.insert(0, self.reloader.stop)
        await story_worker.start(self.settings.worker_concurrency)
        self._stoppers.append(functools.partial(story_worker.stop, DRAIN_SECONDS))

    def _swap_engine(self, engine: Engine) -> None:
        self.engine = engine

    async def _start_serve(self) -> None:
        assert self.bus is not None and self.store is not None and self.channels is not None
        settings = self.settings
        for channel in self.channels:
            await channel.start()
        deliverer = Deliverer(
            self.bus,
            self.store,
            {c.name: c for c in self.channels},
            self.metrics,
            dedup_ttl=settings.dedup_ttl,
            rate_limits=settings.rate_limits,
            instance=web_chat.instance if (web_chat := self._web_chat()) else None,
        )
        await deliverer.start(self.settings.delivery_concurrency)
        self._stoppers.append(functools.partial(deliverer.stop, DRAIN_SECONDS))
        self.ingress = Ingress(self.bus, self.metrics, public_url=settings.public_url)
        self._stoppers.insert(0, self.ingress.close)
        if settings.telegram_mode == "polling":
            self._start_polling()
        if self.serve_http:
            await self._start_http()

    def _start_polling(self) -> None:
        from channels.telegram import TelegramChannel
        from channels.telegram_polling import TelegramPoller

        assert self.channels is not None
        for channel in self.channels:
            if isinstance(channel, TelegramChannel):
                poller = TelegramPoller(channel)
                task = asyncio.get_running_loop().create_task(poller.run(self.ingress.accept))
                self._stoppers.insert(0, poller.stop)
                self._stoppers.append(functools.partial(asyncio.wait, [task], timeout=DRAIN_SECONDS))

    async def _start_http(self) -> None:
        assert self.bus is not None and self.store is not None and self.channels is not None
        settings = self.settings
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.add_routes(health_routes(self.bus, self.store, self.metrics))
        app.add_routes(self.ingress.routes(self.channels))
        if (web_chat := self._web_chat()) is not None:
            web_chat.install(app, self.ingress.accept)
            app.add_routes(MapPage(settings, self._running_stories).routes())
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, settings.host, settings.port)
        await site.start()
        port = self._runner.addresses[0][1] if self._runner.addresses else settings.port
        self.address = f"http://{settings.host}:{port}"

    async def _start_ops_http(self, port: int) -> None:
        """Health, readiness and metrics of a role without webhooks (worker, mailer), for scrapes, probes."""
        assert self.bus is not None and self.store is not None
        app = web.Application()
        app.add_routes(health_routes(self.bus, self.store, self.metrics))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.settings.host, port).start()
        bound = self._runner.addresses[0][1] if self._runner.addresses else port
        self.address = f"http://{self.settings.host}:{bound}"

    def _running_stories(self) -> Stories | None:
        engine: Engine | None = getattr(self, "engine", None)
        return engine.stories if engine is not None else None

    def _web_chat(self) -> WebChatChannel | None:
        return next((c for c in self.channels or () if isinstance(c, WebChatChannel)), None)

    def describe(self) -> list[str]:
        """What this process serves, for the start-up log."""
        s = self.settings
        lines = [f"roles: {', '.join(sorted(r.value for r in self.roles))}"]
        lines.append(f"bus: {'embedded (in-process)' if s.amqp_url is None else _safe_url(s.amqp_url)}")
        lines.append(f"store: {'in-memory' if s.redis_url is None else _safe_url(s.redis_url)}")
        if Role.SERVE in self.roles:
            lines.append(f"listening on {self.address} (public URL {s.public_url})")
            names = ", ".join(c.describe() for c in self.channels or ()) or "none configured"
            lines.append(f"channels: {names}")
            if self._web_chat() is not None and self.address is not None:
                lines.append(f"web chat: {_openable(self.address)}/")
        if Role.WORKER in self.roles:
            lines.append(f"stories: {s.stories}")
        if Role.SERVE not in self.roles and self.address is not None:
            lines.append(f"health and metrics on {self.address}")
        if Role.MAILER in self.roles:
            if s.smtp is None:
                lines.append(f"emails: written as .eml files to {s.outbox}/")
            else:
                lines.append(f"emails: SMTP {s.smtp.host}:{s.smtp.port}")
        return lines

    async def stop(self) -> None:
        """Stop taking work, drain what is in flight, close connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        results = await asyncio.gather(*(_call(stop) for stop in self._stoppers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                log.warning("while stopping: %r", result)
        self._stoppers.clear()
        for channel in self.channels or ():
            with contextlib.suppress(Exception):
                await channel.close()
        if self.bus is not None:
            with contextlib.suppress(Exception):
                await self.bus.close()
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.close()


async def _call(stop: Callable[[], object]) -> None:
    result = stop()
    if asyncio.iscoroutine(result):
        await result


def _openable(address: str) -> str:
    """The address a browser on this machine opens (a wildcard listen address is not one)."""
    for wildcard in ("://0.0.0.0:", "://:::", "://[::]:"):
        address = address.replace(wildcard, "://127.0.0.1:")
    return address


def _safe_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def load_engine(settings: Settings) -> Engine:
    from worker.engine import Engine, StoriesError, load_stories

    try:
        return Engine(load_stories(settings.stories, settings.emails_dir))
    except StoriesError as exc:
        raise StoriesRefused([str(p) for p in exc.problems]) from None


def build_transport(settings: Settings) -> MailTransport:
    if settings.smtp is None:
        from mailer.outbox import OutboxTransport

        return OutboxTransport(settings.outbox)
    from mailer.smtp import SmtpTransport

    return SmtpTransport(settings.smtp)


def report_startup_error(exc: StartupError) -> int:
    """Print why the process cannot start (story problems one per line, as `gateway check` does)."""
    for line in getattr(exc, "lines", []):
        print(line, file=sys.stderr)
    print(f"error: {exc}", file=sys.stderr)
    return 1


async def run_until_signalled(gateway: Gateway) -> None:
    """Start, log what is served, wait for SIGTERM/SIGINT, drain and stop."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await gateway.start()
        for line in gateway.describe():
            log.info("%s", line)
        # Everything loaded at start (aiogram's and pydantic's schemas: ~200k objects) lives for the whole
        # process; moving it out of the collector's reach removes full-collection pauses of ~150 ms.
        gc.freeze()
        log.info("ready")
        await stop.wait()
        log.info("stopping: draining in-flight work")
    finally:
        async with asyncio.timeout(DRAIN_SECONDS + 1.5):
            await gateway.stop()
    log.info("stopped")

"""One gateway process: connect the bus and store the settings name, start the roles asked for, stop cleanly.

``run`` starts every role in one process; ``serve``, ``worker`` and ``mailer`` start one each and need
RabbitMQ and Redis. At start, an unreachable broker or Redis is retried with one log line per attempt for
``GATEWAY_CONNECT_TIMEOUT`` (default 30 s: long enough for ``docker compose up`` to bring them up, short
enough that a wrong URL fails the process visibly), then the process exits 1 with one clear line.
SIGTERM or SIGINT drains in-flight work (10 s at most) and exits 0.

Roles start in order — the consumers (mailer, worker) before the intake (serve), so that nothing is
accepted that no one would handle — and stop in reverse, phase by phase (:mod:`gateway.app.roles.base`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

from channels.base import Channel
from channels.registry import build_channels
from gateway.app.roles.base import Role, RoleName, Services, StartupError
from gateway.app.roles.broadcasts import BroadcastRole
from gateway.app.roles.mailer import MailerRole
from gateway.app.roles.ops import HealthServer, Heartbeat
from gateway.app.roles.retention import RetentionRole
from gateway.app.roles.serve import ServeRole
from gateway.app.roles.worker import WorkerRole, engine_or_refuse
from gateway.core import timeline, tracing
from gateway.core.bus.base import Bus
from gateway.core.errors import SettingsError, Unavailable
from gateway.core.metrics import Metrics
from gateway.core.schedule.base import Schedule
from gateway.core.services import build_bus, build_schedule, build_store, build_user_stores
from gateway.core.settings import Settings
from gateway.core.store.base import Store
from worker.engine import Stories

log = logging.getLogger("gateway")

DRAIN_SECONDS = 8.0


async def wait_until_ready(name: str, attempt: Callable[[], Awaitable[object]], deadline: float) -> None:
    """Call ``attempt`` until it succeeds (and does not answer False), logging each failure; after
    ``deadline`` raise :class:`StartupError` naming the service. A failure that waiting cannot mend (the
    broker's queues disagree with the settings) is a :class:`StartupError` at once."""
    delay = 0.5
    while True:
        try:
            if await attempt() is not False:
                return
            raise ConnectionError("does not answer")
        except (Unavailable, ConnectionError, OSError, TimeoutError) as exc:
            if time.monotonic() >= deadline:
                raise StartupError(f"{name} unreachable: {exc or type(exc).__name__}") from None
            log.warning(
                "%s not reachable yet (%s); retrying in %.1f s", name, exc or type(exc).__name__, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        except Exception as exc:
            raise StartupError(f"{name}: {exc}") from None


class Gateway:
    """The roles of one process and the services they share.

    ``channels``: None for the channels the settings switch on; ``bus`` / ``store``: None to build them
    from the settings. ``serve_http=False`` runs ``serve`` without listening (``gateway chat``).
    """

    def __init__(
        self,
        settings: Settings,
        roles: Iterable[RoleName],
        *,
        channels: list[Channel] | None = None,
        serve_http: bool = True,
        metrics: Metrics | None = None,
        bus: Bus | None = None,
        store: Store | None = None,
        schedule: Schedule | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.role_names = frozenset(roles)
        self.channels = channels
        self.serve_http = serve_http
        self.metrics = metrics or Metrics()
        self.bus = bus
        self.store = store
        self.schedule = schedule
        self.clock = clock
        self.roles: list[Role] = []  # started ones, in start order
        self.serve: ServeRole | None = None
        self.worker: WorkerRole | None = None
        self.broadcasts: BroadcastRole | None = None

    @property
    def address(self) -> str | None:
        """Where this process listens for HTTP (webhooks, or health and metrics only), once started."""
        if self.serve is not None:
            return self.serve.address
        return next((role.address for role in self.roles if isinstance(role, HealthServer)), None)

    async def start(self) -> None:
        if self.settings.embedded and not self.settings.secret_key:
            # One process signs and verifies every desk token: a key of its own will do (a desk's reply
            # to a ticket of an earlier run no longer verifies; set GATEWAY_SECRET_KEY to keep them valid).
            self.settings = dataclasses.replace(self.settings, secret_key=secrets.token_hex(32))
        settings = self.settings
        names = self.role_names
        if settings.timeline is not None:
            timeline.start()
        engine = engine_or_refuse(settings) if RoleName.WORKER in names else None  # before connecting
        bus = self.bus = self.bus or build_bus(settings)
        store = self.store = self.store or build_store(settings)
        schedule = None
        if engine is not None or RoleName.SERVE in names:  # the stories' timers; an erase takes them out
            schedule = self.schedule = self.schedule or build_schedule(settings)
        if self.channels is None:
            try:
                serving = RoleName.SERVE in names
                self.channels = build_channels(settings, store, web_chat=self.serve_http) if serving else []
            except SettingsError as exc:
                raise StartupError(str(exc)) from None
        deadline = time.monotonic() + settings.connect_timeout
        await wait_until_ready("broker (GATEWAY_AMQP_URL)", bus.start, deadline)
        await wait_until_ready("store (GATEWAY_REDIS_URL)", store.ping, deadline)

        if schedule is not None:
            await wait_until_ready("store (GATEWAY_REDIS_URL)", schedule.ping, deadline)
        users = build_user_stores(store)
        services = Services(settings, bus, store, self.metrics, users, schedule, self.clock)
        if RoleName.MAILER in names:
            await self._start(MailerRole(services))
        if engine is not None:
            watch = settings.watch_stories
            if watch is None:  # by default the development mode (`run`) watches the folder; others use SIGHUP
                watch = names == frozenset(RoleName) and self.serve_http
            self.worker = WorkerRole(services, engine, watch=watch)
            await self._start(self.worker)
            self.broadcasts = BroadcastRole(services)
            await self._start(self.broadcasts)
            if settings.user_retention is not None:
                await self._start(RetentionRole(services, settings.user_retention))
        if RoleName.SERVE in names:
            self.serve = ServeRole(
                services,
                self.channels,
                serve_http=self.serve_http,
                running_stories=self._running_stories,
                wake_broadcasts=self.broadcasts.wake if self.broadcasts is not None else None,
            )
            await self._start(self.serve)
        elif settings.metrics_port is not None:
            await self._start(HealthServer(services, settings.metrics_port))
        if settings.heartbeat_file is not None:
            await self._start(Heartbeat(settings.heartbeat_file))

    async def _start(self, role: Role) -> None:
        await role.start()
        self.roles.append(role)

    def _running_stories(self) -> Stories | None:
        return self.worker.stories if self.worker is not None else None

    def describe(self) -> list[str]:
        """What this process serves, for the start-up log."""
        s = self.settings
        lines = [f"roles: {', '.join(sorted(r.value for r in self.role_names))}"]
        lines.append(f"bus: {'embedded (in-process)' if s.amqp_url is None else _safe_url(s.amqp_url)}")
        lines.append(f"store: {'in-memory' if s.redis_url is None else _safe_url(s.redis_url)}")
        for role in self.roles:
            lines.extend(role.describe())
        return lines

    async def stop(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Stop taking work, drain what is in flight, close: each phase over the roles in reverse order."""
        roles = list(reversed(self.roles))
        for role in roles:
            await _logged(role.stop_intake())
        await asyncio.gather(*(_logged(role.drain(drain_seconds)) for role in roles))
        for role in roles:
            await _logged(role.close())
        self.roles.clear()
        if self.bus is not None:
            await _logged(self.bus.close())
        if self.store is not None:
            await _logged(self.store.close())
        if self.schedule is not None:
            await _logged(self.schedule.close())
        if self.settings.timeline is not None:
            names = "+".join(sorted(name.value for name in self.role_names))
            timeline.save(self.settings.timeline / f"{names}-{os.getpid()}.tsv")


async def _logged(step: Awaitable[None]) -> None:
    """One stop step; a failure is logged and the stop goes on (nothing may keep the process up)."""
    try:
        await step
    except Exception as exc:
        log.warning("while stopping: %r", exc)


def _safe_url(url: str) -> str:
    """A URL for the log: the password masked, each node of a list shown."""
    shown = []
    for part in url.split(","):
        parts = urlsplit(part.strip())
        if parts.password:
            netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
            parts = parts._replace(netloc=netloc)
        shown.append(urlunsplit(parts))
    return ",".join(shown)


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
    if tracing.setup_from_environment("-".join(sorted(gateway.role_names))):
        log.info("traces: exported over OTLP to %s", os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
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
        await asyncio.to_thread(tracing.shutdown)
    log.info("stopped")

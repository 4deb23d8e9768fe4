"""The ``worker`` role: story workers on the inbound topic, with hot reload of the stories, and the timer
poller of the partitions this process consumes."""

from __future__ import annotations

from gateway.app.roles.base import Role, Services, StoriesRefused
from gateway.core.settings import Settings
from worker.engine import Engine, Stories, StoriesError
from worker.engine.calls import secrets_used
from worker.handoff import DeskTurns
from worker.handoff.turns import uses_handoff
from worker.http import AddressPolicy, HttpClient
from worker.reload import StoriesReloader, load_engine
from worker.service import StoryWorker
from worker.timers.poller import TimerPoller
from worker.timers.turns import TimerTurns


def engine_or_refuse(settings: Settings) -> Engine:
    """The stories as an engine, or :class:`StoriesRefused` with the lines `gateway check` prints.

    Called before connecting anywhere, so broken stories stop a process at once.
    """
    try:
        return load_engine(settings)
    except StoriesError as exc:
        raise StoriesRefused([str(problem) for problem in exc.problems]) from None


class WorkerRole(Role):
    def __init__(self, services: Services, engine: Engine, *, watch: bool) -> None:
        self.services = services
        self.engine = engine
        self.reloader = StoriesReloader(services.settings, self._swap, watch=watch)
        schedule = services.schedule
        if schedule is None:
            raise ValueError("the worker role needs the timer schedule (Services.schedule)")
        self.poller = TimerPoller(
            schedule,
            services.bus,
            holder=services.settings.instance_id,
            clock=services.clock,
            metrics=services.metrics,
        )
        timers = TimerTurns(schedule, services.bus.partitions, metrics=services.metrics, poller=self.poller)
        settings = services.settings
        policy = AddressPolicy(settings.http_allow)
        self.http = HttpClient(policy, concurrency=settings.http_concurrency, metrics=services.metrics)
        desks = None
        if settings.secret_key:
            desks = DeskTurns(settings.secret_key, settings.inbox_address, metrics=services.metrics)
        elif uses_handoff(engine.stories):
            raise StoriesRefused(
                ["GATEWAY_SECRET_KEY is not set, but the stories hand conversations over (it signs tokens)"]
            )
        self.story_worker = StoryWorker(
            services.bus,
            services.store,
            lambda: self.engine,
            metrics=services.metrics,
            clock=services.clock,
            timers=timers,
            users=services.users.index,
            caller=self.http,
            desks=desks,
        )

    @property
    def stories(self) -> Stories:
        """The stories running now (hot reload swaps them between two messages)."""
        return self.engine.stories

    def _swap(self, engine: Engine) -> None:
        self.engine = engine

    async def start(self) -> None:
        self.reloader.start()
        await self.story_worker.start(self.services.settings.worker_concurrency)
        self.poller.start()

    async def stop_intake(self) -> None:
        await self.poller.stop()  # no more firings from here; the leases go to the other workers now
        await self.reloader.stop()

    async def drain(self, timeout: float) -> None:
        await self.story_worker.stop(timeout)

    async def close(self) -> None:
        await self.http.close()

    def describe(self) -> list[str]:
        lines = [f"stories: {self.services.settings.stories}"]
        used = secrets_used(self.engine.stories)
        if used:
            unset = sorted(name for name in used if not self.services.settings.secrets.get(name))
            shown = ", ".join(f"GATEWAY_SECRET_{name}" for name in unset)
            missing = f"; NOT SET (sent empty): {shown}" if unset else ""
            lines.append(f"http secrets: {len(used)} used{missing}")
        return lines

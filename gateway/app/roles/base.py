"""What every role has: its name, the services it shares with the process, and a life in phases.

A process starts its roles in order (consumers before intake) and stops them in reverse, phase by phase,
so that nothing new arrives while the work in hand finishes, and nothing is closed under running work:
``stop_intake`` (listeners and pollers stop taking work), ``drain`` (in-flight work finishes within the
drain time, the rest goes back to the broker), ``close`` (channels and transports are released).
"""

from __future__ import annotations

import enum
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.bus.base import Bus
from gateway.core.metrics import Metrics
from gateway.core.schedule.base import Schedule
from gateway.core.services import UserStores
from gateway.core.settings import Settings
from gateway.core.store.base import Store


class RoleName(enum.StrEnum):
    SERVE = "serve"
    WORKER = "worker"
    MAILER = "mailer"
    INBOX = "inbox"  # started only when GATEWAY_INBOX_ADDRESS is set (`run`), or asked for


@dataclass(frozen=True, slots=True)
class Services:
    """What the roles of one process share: settings, the connected bus and store (with the user data
    beside it), one metrics registry; the timer schedule when the process runs stories, and the clock
    (shifted in ``gateway chat``)."""

    settings: Settings
    bus: Bus
    store: Store
    metrics: Metrics
    users: UserStores
    schedule: Schedule | None = None
    clock: Callable[[], float] = time.time


class Role(ABC):
    @abstractmethod
    async def start(self) -> None:
        """Begin taking work; a problem that prevents it raises :class:`StartupError`."""

    async def stop_intake(self) -> None:  # noqa: B027 - most roles have nothing to do in some phases
        """Take no new work: stop listening and polling. Work already accepted carries on."""

    async def drain(self, timeout: float) -> None:  # noqa: B027
        """Let work in hand finish within ``timeout`` seconds; give back (unacknowledged) what did not."""

    async def close(self) -> None:  # noqa: B027
        """Release what the role holds (channels, transports, tasks)."""

    def describe(self) -> list[str]:
        """Lines for the start-up log."""
        return []


class StartupError(Exception):
    """A problem that stops the process at start; printed as one line."""


class StoriesRefused(StartupError):
    """Stories that `gateway check` rejects: the process prints the same positioned lines and stops."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(f"{len(lines)} problem(s) in the stories; not starting")
        self.lines = lines

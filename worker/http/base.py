"""The one interface between the story worker and the outside world's APIs."""

from __future__ import annotations

from abc import ABC, abstractmethod

from worker.engine.calls import HttpAnswer, HttpRequest


class Caller(ABC):
    """Makes an http action's call, retries included; never raises for what the API or the network does
    (that is an :class:`HttpAnswer` with ``error`` set)."""

    @abstractmethod
    async def call(self, request: HttpRequest) -> HttpAnswer: ...

    async def close(self) -> None:  # noqa: B027 - most callers hold nothing
        """Release connections."""


class NoCalls(Caller):
    """For a worker built without a client: every call fails at once, the story's on_error runs."""

    async def call(self, request: HttpRequest) -> HttpAnswer:
        return HttpAnswer.failed("no http client")

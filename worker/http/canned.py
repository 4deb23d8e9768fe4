"""Canned answers instead of real calls, for conversation tests (``gateway test``): nothing leaves the
process, and a call no canned answer expects is recorded (the test fails on it) and answered as a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worker.engine.calls import HttpAnswer, HttpRequest
from worker.http.base import Caller

UNEXPECTED = "no canned answer"


@dataclass(frozen=True, slots=True)
class Canned:
    """Answers the calls ``matches`` accepts with ``status`` and ``body``, or fails them with ``error``."""

    matches: Callable[[HttpRequest], bool]
    status: int = 200
    body: bytes = b""
    error: str | None = None

    def answer(self) -> HttpAnswer:
        if self.error is not None:
            return HttpAnswer.failed(self.error)
        error = f"status {self.status}" if self.status >= 400 else None
        return HttpAnswer(self.status, self.body, error)


class CannedCaller(Caller):
    """The first canned answer that matches a call answers it (every time it matches)."""

    def __init__(self, answers: Sequence[Canned] = ()) -> None:
        self.answers = tuple(answers)
        self.calls: list[HttpRequest] = []
        self.unexpected: list[HttpRequest] = []

    async def call(self, request: HttpRequest) -> HttpAnswer:
        self.calls.append(request)
        for canned in self.answers:
            if canned.matches(request):
                return canned.answer()
        self.unexpected.append(request)
        return HttpAnswer.failed(UNEXPECTED)

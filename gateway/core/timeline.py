"""When each message reached each stage, for benchmarks that must say where a turn's time goes.

Off unless :func:`start` is called (``GATEWAY_TIMELINE`` names a folder): then every :func:`mark` keeps
``(time, stage, id)`` in memory, and :func:`save` writes them as ``<ns>\\t<stage>\\t<id>`` lines when the
process stops. Times are ``time.perf_counter_ns()``, which on Linux is ``CLOCK_MONOTONIC``, one clock for
every process of the machine, so a benchmark can line up the marks of ``serve``, the workers, the mailer
and its own load generator. Ids are the bus's message ids (``telegram:update:7``, ``.../r0``, ``.../e0``).

Off, a mark costs one function call and one test; on, one tuple appended (no I/O until :func:`save`).
"""

from __future__ import annotations

import time
from pathlib import Path

MAX_MARKS = 2_000_000  # about 200 MB at most; a benchmark run stays far below

_marks: list[tuple[int, str, str]] | None = None


def start() -> None:
    """Keep marks from now on (a second call keeps those already made)."""
    global _marks
    if _marks is None:
        _marks = []


def recording() -> bool:
    return _marks is not None


def mark(stage: str, item: str, at: int | None = None) -> None:
    """``item`` reached ``stage`` now (or at ``at``, a ``perf_counter_ns()`` taken earlier)."""
    if _marks is not None and len(_marks) < MAX_MARKS:
        _marks.append((time.perf_counter_ns() if at is None else at, stage, item))


def save(path: Path) -> int:
    """Write the marks kept so far to ``path`` (appending) and forget them; how many were written."""
    global _marks
    if not _marks:
        return 0
    marks, _marks = _marks, []
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.writelines(f"{at}\t{stage}\t{item}\n" for at, stage, item in marks)
    return len(marks)


def stop() -> None:
    """Keep no more marks (and forget the unsaved ones)."""
    global _marks
    _marks = None

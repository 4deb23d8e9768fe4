"""Read what a timer is written as: ``after`` (1s to 30d) and a ``goto`` or ``jump`` target, for a step's
``timeout`` and for the ``follow_up`` action, each problem with its file, line and column."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.durations import parse_duration
from worker.engine.model import Delay, TimerTarget, Where
from worker.engine.reader import Entries, Reader
from worker.engine.yaml_source import Node

MIN_AFTER = 1.0
MAX_AFTER = 30 * 86400.0
TIMEOUT_KEYS = ("after", "goto", "jump")
FOLLOW_UP_KEYS = ("after", "goto", "jump", "keep_on_reply")


@dataclass(frozen=True, slots=True)
class TimerDraft:
    """A timer as read: its delay, its target, and where the target was written (for reference checks)."""

    after: Delay
    target: TimerTarget
    target_where: Where
    entries: Entries


def read_timer(
    reader: Reader, node: Node, what: str, allowed: tuple[str, ...], story: str
) -> TimerDraft | None:
    """``{after: 10m, goto: STEP}`` or ``{after: 2d, jump: STORY}``; None (with the problems recorded)
    when anything is wrong."""
    found = reader.entries(node, allowed, what)
    if found is None:
        return None
    complete = True
    if "after" not in found:
        reader.problem(node, f"{what} needs 'after' (from 1s to 30d, such as 10m)")
        complete = False
    if "goto" in found and "jump" in found:
        reader.problem(found["jump"][0], f"{what} has either 'goto' or 'jump', not both")
        complete = False
    elif "goto" not in found and "jump" not in found:
        reader.problem(node, f"{what} needs 'goto: STEP' or 'jump: STORY', the target it enters")
        complete = False
    after = read_delay(reader, found["after"][1]) if "after" in found else None
    target: TimerTarget | None = None
    target_where: Where | None = None
    if "goto" in found:
        step = reader.identifier(found["goto"][1], "goto step")
        if step is not None:
            target, target_where = TimerTarget(story, step), reader.where(found["goto"][1])
    elif "jump" in found:
        jumped = reader.identifier(found["jump"][1], "jump story")
        if jumped is not None:
            target, target_where = TimerTarget(jumped, None), reader.where(found["jump"][1])
    if not complete or after is None or target is None or target_where is None:
        return None
    return TimerDraft(after, target, target_where, found)


def read_delay(reader: Reader, node: Node) -> Delay | None:
    """``after``: a duration from 1s to 30d."""
    value = reader.text(node, "after")
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        reader.problem(node, f"bad duration {value!r}: use a number with s, m, h or d, such as 10m")
        return None
    if not MIN_AFTER <= seconds <= MAX_AFTER:
        reader.problem(node, f"after {value!r} is out of range: a timer waits from 1s to 30d")
        return None
    return Delay(seconds, value.strip())


def read_flag(reader: Reader, node: Node, what: str) -> bool | None:
    """``true`` or ``false`` (scalars are taken as written, so ``yes`` is not a flag)."""
    value = reader.text(node, what)
    if value is None:
        return None
    if value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    reader.problem(node, f"{what} must be true or false, not {value!r}")
    return None

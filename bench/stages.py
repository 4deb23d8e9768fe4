"""Where a turn's time goes: the gateway's stage marks (gateway/core/timeline.py) lined up with the load
generator's own (webhook posted, webhook answered, each reply at the fake Bot API).

Every process of the machine reads the same monotonic clock, so a mark of a worker and one of the load
generator subtract. Each row is a stage; its figures are the time since the webhook was posted, over the
paced turns that reach that stage (an email row only over turns with an email, "reply 3" only over turns
with three replies), and "step" is the median time from the row above, turn by turn.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import percentile
from bench.conversations import Step


@dataclass(slots=True)
class TurnRecord:
    """One message the load generator sent, and when what it was waiting for happened (perf_counter_ns)."""

    update_id: int
    step: Step
    posted: int
    answered: int = 0
    replies: list[int] = field(default_factory=list)  # each reply's arrival at the fake Bot API

    @property
    def inbound_id(self) -> str:
        return f"telegram:update:{self.update_id}"

    @property
    def latency(self) -> float:
        """Seconds from the webhook posted to the last reply at the Bot API."""
        return (self.replies[-1] - self.posted) / 1e9


Marks = dict[str, dict[str, int]]  # message id -> stage -> first time it was reached (ns)


def read_marks(folder: Path) -> Marks:
    marks: Marks = {}
    for path in sorted(folder.glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            at, stage, item = line.split("\t", 2)
            stages = marks.setdefault(item, {})
            if stage not in stages or int(at) < stages[stage]:
                stages[stage] = int(at)
    return marks


Row = tuple[str, Callable[[TurnRecord, Marks], int | None]]


def _mark(stage: str, suffix: str = "") -> Callable[[TurnRecord, Marks], int | None]:
    return lambda turn, marks: marks.get(turn.inbound_id + suffix, {}).get(stage)


def _first(*stages: Callable[[TurnRecord, Marks], int | None]) -> Callable[[TurnRecord, Marks], int | None]:
    """The first of these marks that the turn has (a gateway of an older checkout lacks the newer ones)."""
    return lambda turn, marks: next((t for at in stages if (t := at(turn, marks)) is not None), None)


def _at_api(index: int) -> Callable[[TurnRecord, Marks], int | None]:
    return lambda turn, _: turn.replies[index] if index < len(turn.replies) else None


def rows(max_replies: int) -> list[Row]:
    table: list[Row] = [
        ("webhook received by serve", _mark("webhook.received")),
        ("inbound sent to RabbitMQ (batch flushed)", _mark("bus.flushed")),
        ("inbound confirmed by RabbitMQ", _mark("inbound.confirmed")),
        ("webhook answered (load generator)", lambda turn, _: turn.answered or None),
        ("inbound at a worker", _mark("inbound.arrived")),
        ("worker starts it", _mark("inbound.started")),
        ("loaded (Redis)", _mark("turn.loaded")),
        ("committed (Redis)", _mark("turn.committed")),
        ("replies sent to RabbitMQ (batch flushed)", _mark("bus.flushed", "/r0")),
        ("replies published (confirmed)", _mark("outbound.published")),
        ("email published (confirmed)", _mark("email.published")),
        ("inbound acked", _mark("inbound.acked")),
    ]
    # The replies' sends in the order they happen; their records and acks after, since a reply's record
    # need not come before the next reply's send. "Reply n sending" minus "reply n-1 sent" is the wait
    # between two replies of a turn.
    table.append(("reply 1 at serve", _mark("outbound.arrived", "/r0")))
    for n in range(max_replies):
        reply = f"/r{n}"
        sending = _first(_mark("reply.sending", reply), _mark("outbound.started", reply))
        table += [
            (f"reply {n + 1} sending", sending),
            (f"reply {n + 1} at the Bot API", _at_api(n)),
            (f"reply {n + 1} sent (API answered)", _mark("reply.sent", reply)),
        ]
    table.append(("LAST reply at the Bot API", lambda turn, _: turn.replies[-1] if turn.replies else None))
    for n in range(max_replies):
        table.append((f"reply {n + 1} recorded (Redis)", _mark("reply.recorded", f"/r{n}")))
    table += [
        (
            "last reply acked",
            lambda turn, marks: _mark("outbound.acked", f"/r{len(turn.replies) - 1}")(turn, marks),
        ),
        ("email at a mailer", _mark("email.arrived", "/e0")),
        ("email written (fsynced)", _mark("email.sent", "/e0")),
    ]
    return table


def breakdown(turns: Iterable[TurnRecord], marks: Marks) -> list[str]:
    """The table's lines: per stage, p50 and p99 since the webhook was posted, and the median step."""
    turns = list(turns)
    table = rows(max((len(t.replies) for t in turns), default=1))
    lines = [
        f"    {'stage (ms since the webhook was posted)':<40} {'turns':>6} {'p50':>7} {'p99':>7} {'step':>7}"
    ]
    previous: dict[int, int] = {}
    for name, at in table:
        since: list[float] = []
        steps: list[float] = []
        current: dict[int, int] = {}
        for turn in turns:
            time = at(turn, marks)
            if time is None:
                continue
            current[turn.update_id] = time
            since.append((time - turn.posted) / 1e9)
            if turn.update_id in previous:
                steps.append((time - previous[turn.update_id]) / 1e6)
        if not since:
            continue
        step = f"{statistics.median(steps):7.2f}" if steps else " " * 7
        p50, p99 = percentile(since, 0.5), percentile(since, 0.99)
        lines.append(f"    {name:<40} {len(since):>6} {p50:7.2f} {p99:7.2f} {step}")
        previous.update(current)
    return lines


def by_step(turns: Iterable[TurnRecord]) -> list[str]:
    """Latency to the last reply for each step of the conversation (turns with 1, 2, 3 replies)."""
    grouped: dict[str, list[float]] = {}
    for turn in turns:
        grouped.setdefault(turn.step.label, []).append(turn.latency)
    return [
        f"    {label:<40} {len(values):>6} {percentile(values, 0.5):7.2f} {percentile(values, 0.99):7.2f}"
        for label, values in grouped.items()
    ]


def delivery_phase(turns: Iterable[TurnRecord], marks: Marks) -> list[str]:
    """From the turn's replies reaching serve to the last one at the Bot API, by number of replies: the
    part of a turn that several replies lengthen, without the chain before it (webhook, broker, worker)."""
    grouped: dict[int, list[float]] = {}
    for turn in turns:
        arrived = marks.get(turn.inbound_id + "/r0", {}).get("outbound.arrived")
        if arrived is not None and turn.replies:
            grouped.setdefault(len(turn.replies), []).append((turn.replies[-1] - arrived) / 1e9)
    lines = []
    for count, values in sorted(grouped.items()):
        label = f"{count} repl{'y' if count == 1 else 'ies'}: at serve -> last at the Bot API"
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        lines.append(f"    {label:<40} {len(values):>6} {p50:7.2f} {p99:7.2f}")
    return lines

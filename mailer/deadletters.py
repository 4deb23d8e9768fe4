"""The email dead-letter queue for operators: ``gateway mailer dead`` and ``gateway mailer replay``.

Replaying is safe: a job that was in fact sent (say, its acknowledgement was lost) is recognised by
the mailer and dropped, so replay never sends an email twice within the dedup TTL.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.bus.base import Bus, DeadLetter, Topic
from gateway.core.errors import SchemaError, Unavailable
from gateway.core.schema import parse_email
from gateway.core.settings import Settings


@dataclass(frozen=True, slots=True)
class DeadEmail:
    """One dead-lettered email job as an operator wants to see it."""

    job_id: str
    to: tuple[str, ...]
    subject: str
    reason: str
    attempts: int
    failed_at: float
    parsed: bool  # False when the body is not an email job (then job_id is the bus message id)


def describe(letter: DeadLetter) -> DeadEmail:
    try:
        job = parse_email(letter.envelope.body)
    except SchemaError:
        return DeadEmail(
            letter.envelope.message_id, (), "", letter.reason, letter.attempts, letter.failed_at, False
        )
    return DeadEmail(
        job.id, job.to + job.cc, job.subject, letter.reason, letter.attempts, letter.failed_at, True
    )


async def list_dead_emails(bus: Bus, limit: int = 100) -> list[DeadEmail]:
    """The oldest ``limit`` dead-lettered email jobs, oldest first (they stay in the queue)."""
    return [describe(letter) for letter in await bus.dead_letters(Topic.EMAIL, limit)]


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def format_dead_email(dead: DeadEmail) -> str:
    """``<UTC time>  <job id>  to=<...>  subject=<...>  tries=<n>  reason: <...>`` on one line."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(dead.failed_at))
    if not dead.parsed:
        what = "(not an email job)"
        return f"{when}  {dead.job_id}  {what}  tries={dead.attempts}  reason: {_one_line(dead.reason, 300)}"
    to = ",".join(dead.to) or "-"
    return (
        f"{when}  {dead.job_id}  to={_one_line(to, 120)}  subject={_one_line(dead.subject, 60)!r}"
        f"  tries={dead.attempts}  reason: {_one_line(dead.reason, 300)}"
    )


async def dead_email_lines(bus: Bus, limit: int | None = 100) -> list[str]:
    """What ``gateway mailer dead`` prints: one line per dead email job, then a count."""
    limit = 100 if limit is None else limit
    dead = await list_dead_emails(bus, limit)
    if not dead:
        return ["no dead-lettered email jobs"]
    more = " (showing the oldest; there may be more)" if len(dead) >= limit else ""
    return [*(format_dead_email(item) for item in dead), f"{len(dead)} dead-lettered email job(s){more}"]


async def replay_dead_emails(bus: Bus, limit: int | None = None) -> int:
    """Move dead-lettered email jobs back onto the email topic, oldest first; return how many."""
    return await bus.replay_dead_letters(Topic.EMAIL, limit)


async def run_dead_letter_command(
    settings: Settings,
    command: str,
    limit: int | None,
    *,
    bus: Bus | None = None,
    out: Callable[[str], None] = print,
) -> int:
    """``gateway mailer dead`` / ``gateway mailer replay`` against the configured broker; the exit status."""
    if bus is None:
        from gateway.core.services import build_bus

        bus = build_bus(settings)
    try:
        async with bus:
            if command == "dead":
                for line in await dead_email_lines(bus, limit):
                    out(line)
            elif command == "replay":
                count = await replay_dead_emails(bus, limit)
                out(f"replayed {count} email job(s) onto the {Topic.EMAIL} queue")
            else:
                print(f"error: unknown mailer action {command!r} (use dead or replay)", file=sys.stderr)
                return 2
    except Unavailable as exc:
        print(f"error: the broker is unavailable: {exc}", file=sys.stderr)
        return 1
    return 0

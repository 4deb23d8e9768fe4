"""Read a ``handoff`` action (STORIES.md, "Handing over to a person"), every field checked with its position.

``desk`` is ``email`` or ``slack``; ``to`` is required and, when written without an expression, checked
as the desk reads it (email addresses, or a Slack channel id); ``subject`` belongs to an email desk only;
``until`` is a duration from 1s to 30d (24h when not given); ``resume`` names a story, checked once every
file is read like a ``jump``.
"""

from __future__ import annotations

from typing import Final, Literal

from gateway.core.durations import parse_duration
from worker.engine.conditions import Condition
from worker.engine.entities import clean_address
from worker.engine.model import DEFAULT_HANDOFF_UNTIL, Delay, HandOff, Where, is_slack_channel
from worker.engine.reader import Reader
from worker.engine.templates import Template
from worker.engine.timer_specs import MAX_AFTER, MIN_AFTER
from worker.engine.yaml_source import Node

HANDOFF_KEYS: Final = ("desk", "to", "subject", "summary", "until", "resume")
_TO_HINT: Final = {
    "email": "the desk's email address",
    "slack": "a Slack channel id such as C0123ABCD",
    None: "the desk's email address or Slack channel id",
}


def read_handoff(
    reader: Reader, node: Node, story_refs: list[tuple[str, Where, str]], when: tuple[Condition, ...]
) -> HandOff | None:
    """The action, or None (with every problem recorded); ``resume`` is added to ``story_refs``."""
    found = reader.entries(node, HANDOFF_KEYS, "handoff")
    if found is None:
        return None
    complete = True
    desk: Literal["email", "slack"] | None = None
    if "desk" not in found:
        reader.problem(node, "handoff needs 'desk': email or slack")
        complete = False
    else:
        written = reader.text(found["desk"][1], "handoff desk")
        if written == "email":
            desk = "email"
        elif written == "slack":
            desk = "slack"
        elif written is not None:
            reader.problem(found["desk"][1], f"handoff desk must be email or slack, not {written!r}")
    if "to" not in found:
        reader.problem(node, f"handoff needs 'to' ({_TO_HINT[desk]})")
        complete = False
    to = _to(reader, found["to"][1], desk) if "to" in found else None
    subject: Template | None = None
    if "subject" in found:
        if desk == "slack":
            reader.problem(found["subject"][0], "'subject' belongs to an email desk; a Slack thread has none")
            complete = False
        subject = reader.template(found["subject"][1], "handoff subject")
        complete = complete and subject is not None
    summary = reader.template(found["summary"][1], "handoff summary") if "summary" in found else None
    if "summary" in found and summary is None:
        complete = False
    until = _until(reader, found["until"][1]) if "until" in found else DEFAULT_HANDOFF_UNTIL
    resume = None
    if "resume" in found:
        resume = reader.identifier(found["resume"][1], "resume story")
        if resume is None:
            complete = False
        else:
            story_refs.append((resume, reader.where(found["resume"][1]), "resume"))
    if not complete or desk is None or to is None or until is None:
        return None
    return HandOff(desk, to, subject, summary, until, resume, reader.where(node), when)


def _to(reader: Reader, node: Node, desk: str | None) -> Template | None:
    """``to`` as a template; a literal one must be what the desk reads (addresses, or a channel id)."""
    template = reader.template(node, "handoff to")
    if template is None or template.constant is None or desk is None:
        return template
    if desk == "slack":
        channel = template.constant.strip()
        if not is_slack_channel(channel):
            reader.problem(
                node, f"handoff to: {channel!r} is not a Slack channel id (C, G or D and capital letters or "
                "digits, such as C0123ABCD; not a #name)",
            )  # fmt: skip
            return None
        return template
    valid = True
    parts = template.constant.split(",")
    for part in parts:
        if clean_address(part) is None:
            reader.problem(node, f"handoff to: {part.strip()!r} is not an email address")
            valid = False
    return template if valid else None


def _until(reader: Reader, node: Node) -> Delay | None:
    """``until``: a duration from 1s to 30d, as for timers."""
    value = reader.text(node, "until")
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        reader.problem(node, f"bad duration {value!r}: use a number with s, m, h or d, such as 24h")
        return None
    if not MIN_AFTER <= seconds <= MAX_AFTER:
        reader.problem(node, f"until {value!r} is out of range: a handoff lasts from 1s to 30d")
        return None
    return Delay(seconds, value.strip())

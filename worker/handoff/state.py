"""The ``handoff`` record: a handed-over conversation, committed with the turn that changed it.

The record is the whole truth of "who answers this conversation": a turn reads it in the same load as the
session and writes it in the same atomic commit, so a message that arrives while the handoff commits is
handled after it (per-conversation order) and sees it. It lives until the handoff's deadline plus
:data:`GRACE`: an ``until`` firing that comes late still finds it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from gateway.core.desk import HANDOFF_RECORD
from gateway.core.schema import ConversationKey
from gateway.core.store.base import Record

log = logging.getLogger("gateway.handoff")

KIND = HANDOFF_RECORD
GRACE = 3600.0
_VERSION = 1


@dataclass(frozen=True, slots=True)
class Handoff:
    desk: str  # "email" or "slack"
    to: str  # the desk's address(es), or the Slack channel id
    subject: str  # the ticket's subject (email)
    resume: str | None  # the story started when the conversation is handed back
    until: float  # seconds without a person's message before it is handed back
    since: float  # when it was handed over
    deadline: float  # when it is handed back unless a person writes before
    ticket: str  # email: the id of the job that opened the ticket; slack: the conversation's token
    timer: str  # the id of the pending `until` timer (in the partition's schedule)
    answered: bool = False  # a person has answered at least once
    meta: Mapping[str, str] = field(default_factory=dict)  # routing of the user's latest message

    def answered_at(self, now: float, timer: str) -> Handoff:
        """A person answered: ``until`` counts again from now, with a new timer."""
        return replace(self, deadline=now + self.until, timer=timer, answered=True)

    def record(self, now: float) -> Record:
        return Record(self.encode(), max(self.deadline - now, 0.0) + GRACE)

    def encode(self) -> bytes:
        body = {
            "v": _VERSION, "desk": self.desk, "to": self.to, "subject": self.subject, "resume": self.resume,
            "until": self.until, "since": self.since, "deadline": self.deadline, "ticket": self.ticket,
            "timer": self.timer, "answered": self.answered, "meta": dict(self.meta),
        }  # fmt: skip
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | None, key: ConversationKey) -> Handoff | None:
        """The record as committed; none, or one this code cannot read (logged), is no handoff."""
        if not raw:
            return None
        try:
            body = json.loads(raw)
            if body.get("v") != _VERSION:
                raise ValueError(f"unknown version {body.get('v')!r}")
            return cls(
                desk=str(body["desk"]), to=str(body["to"]), subject=str(body["subject"]),
                resume=None if body["resume"] is None else str(body["resume"]), until=float(body["until"]),
                since=float(body["since"]), deadline=float(body["deadline"]), ticket=str(body["ticket"]),
                timer=str(body["timer"]), answered=bool(body["answered"]),
                meta={str(k): str(v) for k, v in dict(body["meta"]).items()},
            )  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("unreadable handoff record of %s dropped: %r", key, exc)
            return None

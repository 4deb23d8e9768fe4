"""A conversation's pending timers: what its ``timers`` record holds, and their ids.

The record is written by the commit of the turn that changed it, so "which timers are pending" is decided
by the commit, never by the clock: a firing runs only if the committed record still holds its timer.

Encoding (small, since every pending timer costs Redis memory): a first line ``v1``, followed by the
routing ``meta`` of the user's latest message as JSON when it has any, then one line per timer in the order
they were set: ``<id> <due ms> <kind> <story> <step>`` — kind ``t`` (timeout), ``f`` (follow-up) or ``k``
(follow-up kept on reply), step ``*`` for a story's entry (a ``jump``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from gateway.core.schema import ConversationKey, Inbound
from worker.engine.model import TimerTarget

log = logging.getLogger("gateway.timers")

KIND = "timers"  # the conversation record kind
MAX_ID_LENGTH = 512
TimerKind = Literal["timeout", "follow_up"]
_VERSION = "v1"
_ENTRY = "*"


@dataclass(frozen=True, slots=True)
class PendingTimer:
    id: str
    due_ms: int
    kind: TimerKind
    target: TimerTarget
    keep_on_reply: bool = False


@dataclass(frozen=True, slots=True)
class PendingTimers:
    timers: tuple[PendingTimer, ...] = ()  # in the order they were set
    meta: Mapping[str, str] = field(default_factory=dict)  # for the replies of a firing

    def find(self, timer_id: str) -> PendingTimer | None:
        return next((timer for timer in self.timers if timer.id == timer_id), None)

    def encode(self) -> bytes:
        lines = [_VERSION]
        if self.meta:
            lines.append(json.dumps(dict(self.meta), ensure_ascii=False, separators=(",", ":")))
        for t in self.timers:
            kind = "t" if t.kind == "timeout" else "k" if t.keep_on_reply else "f"
            lines.append(f"{t.id} {t.due_ms} {kind} {t.target.story} {t.target.step or _ENTRY}")
        return "\n".join(lines).encode()

    @classmethod
    def decode(cls, raw: bytes | None, key: ConversationKey) -> PendingTimers:
        """The record as committed; none, or one this code cannot read (logged), is no timers."""
        if not raw:
            return cls()
        try:
            version, *lines = raw.decode().split("\n")
            if version != _VERSION:
                raise ValueError(f"unknown version {version!r}")
            meta: dict[str, str] = {}
            if lines and lines[0].startswith("{"):
                meta = json.loads(lines.pop(0))
            return cls(tuple(_timer(line) for line in lines), meta)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("unreadable pending timers of %s dropped: %r", key, exc)
            return cls()


def _timer(line: str) -> PendingTimer:
    timer_id, due, kind, story, step = line.split(" ")
    if kind not in ("t", "f", "k"):
        raise ValueError(f"unknown timer kind {kind!r}")
    target = TimerTarget(story, None if step == _ENTRY else step)
    return PendingTimer(timer_id, int(due), "timeout" if kind == "t" else "follow_up", target, kind == "k")


def timer_id(message_id: str, index: int) -> str:
    """The id of the ``index``-th timer set by a turn: deterministic (the turn run again sets the same
    ids) and unique within the conversation (48 bits of the message id's hash, then the index)."""
    digest = hashlib.blake2b(message_id.encode(), digest_size=6).digest()
    return base64.urlsafe_b64encode(digest).decode() + str(index)


def firing_id(conversation: ConversationKey, timer: str) -> str:
    """The inbound id of a timer's firing: ``timer:<channel/chat/user>:<timer id>``. Deterministic, so a
    firing published twice is one message to the worker's commit record, and its replies' ids are unique
    across conversations as the deliverer needs (a hash stands for a conversation id too long to carry)."""
    found = f"timer:{conversation}:{timer}"
    if len(found) <= MAX_ID_LENGTH:
        return found
    digest = hashlib.blake2b(str(conversation).encode(), digest_size=16).hexdigest()
    return f"timer:{digest}:{timer}"


def firing(conversation: ConversationKey, timer: str, due_ms: int) -> Inbound:
    """The message a timer falling due puts on its conversation's partition (its meta comes from the
    conversation's record when the worker runs it)."""
    return Inbound(
        id=firing_id(conversation, timer),
        channel=conversation.channel,
        chat=conversation.chat,
        user=conversation.user,
        timer=timer,
        sent_at=due_ms / 1000,
    )

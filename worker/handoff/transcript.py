"""The last messages of a conversation, both sides, so that a ticket opens with what was said.

Kept as the conversation's ``transcript`` record, written by the commit of each turn (only while the
stories have a ``handoff`` action at all, so bots without desks pay nothing), bounded to
:data:`MAX_ENTRIES` and expiring with the session.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.core.schema import ConversationKey, Reply

log = logging.getLogger("gateway.handoff")

KIND = "transcript"
MAX_ENTRIES = 20
MAX_TEXT = 2000  # characters kept of one message


@dataclass(frozen=True, slots=True)
class Entry:
    who: str  # "user", "bot" or "agent"
    text: str
    at: float


@dataclass(frozen=True, slots=True)
class Transcript:
    entries: tuple[Entry, ...] = ()

    def add(self, items: Iterable[Entry]) -> Transcript:
        added = [Entry(e.who, e.text[:MAX_TEXT], e.at) for e in items if e.text]
        if not added:
            return self
        return Transcript((*self.entries, *added)[-MAX_ENTRIES:])

    def encode(self) -> bytes:
        rows = [[e.who, e.text, round(e.at, 3)] for e in self.entries]
        return json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes | None, key: ConversationKey) -> Transcript:
        if not raw:
            return cls()
        try:
            return cls(tuple(Entry(str(who), str(text), float(at)) for who, text, at in json.loads(raw)))
        except (ValueError, TypeError) as exc:
            log.warning("unreadable transcript of %s dropped: %r", key, exc)
            return cls()


def said_by_bot(replies: Iterable[Reply], who: str = "bot") -> list[Entry]:
    """The transcript entries of replies: their text, or the image's caption and URL."""
    entries = []
    for reply in replies:
        text = reply.text
        if reply.image is not None:
            text = " ".join(
                p for p in (text, reply.image.caption or "", f"[image {reply.image.url[:200]}]") if p
            )
        if reply.buttons:
            text += " [" + " | ".join(b.title for b in reply.buttons) + "]"
        entries.append(Entry(who, text, reply.created_at))
    return entries

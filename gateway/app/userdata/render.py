"""A user's data as JSON, the same for the admin API and ``gateway users``: what ``show`` shows, and what an
export adds (the processed messages with their outputs, dead letters, held web chat replies).

Records (pending timers, a handoff, ...) are bytes their owners encode: shown as JSON when they are JSON,
as text when they are text, else in base64.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from gateway.core.bus.base import DeadLetter, Topic
from gateway.core.store.users.base import IndexEntry, KeptMessage, KeptSession, UserRecords
from worker.service import recorded_output

EXPORT_FORMAT = "gateway-user-export/1"

Json = dict[str, Any]


def timestamp(at: float | None) -> str | None:
    """Unix time as ISO 8601 in UTC, to the millisecond."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def opaque(value: bytes) -> Any:
    """Bytes as JSON if they are JSON, as text if they are text, else ``{"base64": ...}``."""
    try:
        text = value.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode()}
    try:
        return json.loads(text)
    except ValueError:
        return text


def _session(kept: KeptSession) -> Json:
    session = kept.session
    return {
        "story": session.story,
        "step": session.step,
        "values": dict(session.values),
        "buttons": [{"title": b.title, "payload": b.payload} for b in session.buttons],
        "expires_at": timestamp(kept.expires_at),
    }


def shown(channel: str, user: str, records: UserRecords, entry: IndexEntry | None) -> Json:
    """What ``show`` answers: attributes, opt-out, what the index knows, each conversation's session and
    records (pending timers and handoffs are records)."""
    conversations: dict[str, Json] = defaultdict(lambda: {"session": None, "records": {}})
    for kept in records.sessions:
        conversations[kept.chat]["session"] = _session(kept)
    for record in records.records:
        conversations[record.chat]["records"][record.kind] = {
            "value": opaque(record.value),
            "expires_at": timestamp(record.expires_at),
        }
    known = None
    if entry is not None:
        known = {"last_seen": timestamp(entry.last_seen), "broadcast_chat": entry.chat}
    return {
        "channel": channel,
        "user": user,
        "attributes": dict(sorted(records.attributes.items())),
        "opted_out": records.opted_out,
        "known": known,
        "conversations": [{"chat": chat, **conversations[chat]} for chat in sorted(conversations)],
    }


def messages(kept: Iterable[KeptMessage]) -> list[Json]:
    """The processed-message records: each message id with the replies and email jobs it produced."""
    found = []
    for message in sorted(kept, key=lambda m: (m.expires_at, m.message_id)):
        replies: list[Any] = []
        emails: list[Any] = []
        for item in message.outputs:
            output = recorded_output(item)
            if output is None:  # not a message: a timer schedule change, shown with the timers record
                continue
            topic, body = output
            (replies if topic is Topic.OUTBOUND else emails).append(opaque(body))
        found.append(
            {
                "id": message.message_id,
                "expires_at": timestamp(message.expires_at),
                "replies": replies,
                "emails": emails,
            }
        )
    return found


def dead_letters(letters: Iterable[DeadLetter]) -> list[Json]:
    return [
        {
            "topic": str(letter.topic),
            "id": letter.envelope.message_id,
            "reason": letter.reason,
            "attempts": letter.attempts,
            "failed_at": timestamp(letter.failed_at),
            "message": opaque(letter.envelope.body),
        }
        for letter in letters
    ]


def erased(records: UserRecords, index_entry: bool) -> Json:
    """What an erase removed from the store, counted (the rest of the answer is added by the caller)."""
    kinds: dict[str, int] = defaultdict(int)
    for record in records.records:
        kinds[record.kind] += 1
    return {
        "attributes": len(records.attributes),
        "opted_out": records.opted_out,
        "sessions": len(records.sessions),
        "records": dict(sorted(kinds.items())),
        "messages": len(records.messages),
        "index_entry": index_entry,
    }

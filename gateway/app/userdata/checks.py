"""What an operator may ask about: a known channel, a user id of its form, attribute names of the stories'
syntax. Shared by the admin API (which answers 4xx with the reason) and ``gateway users``."""

from __future__ import annotations

import re
from collections.abc import Mapping

from channels.registry import CHANNEL_USER_IDS

ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # STORIES.md: NAME is letters, digits, _ and -
MAX_VALUE_CHARACTERS = 65536
MAX_CHANGES = 1000


class Refused(Exception):
    """A request that cannot be done as asked: an HTTP status, a short code and a sentence saying why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def check_channel(channel: str) -> None:
    if channel not in CHANNEL_USER_IDS:
        known = ", ".join(sorted(CHANNEL_USER_IDS))
        raise Refused(404, "unknown_channel", f"no channel {channel!r}; the channels are {known}")


def check_user(channel: str, user: str) -> None:
    """The channel exists and ``user`` has the form of its ids (Telegram digits, E.164 for SMS, ...)."""
    check_channel(channel)
    if not CHANNEL_USER_IDS[channel].fullmatch(user):
        raise Refused(
            400, "bad_user", f"{user[:80]!r} is not a {channel} user id ({CHANNEL_USER_IDS[channel].pattern})"
        )


def attribute_changes(raw: object) -> dict[str, str | None]:
    """``{"Name": "Ada", "Old": null}`` checked: names of the stories' syntax, text values or null."""
    if not isinstance(raw, Mapping):
        raise Refused(400, "bad_body", '"attributes" must be an object of names to text or null')
    if not raw:
        raise Refused(400, "bad_body", '"attributes" is empty: nothing to change')
    if len(raw) > MAX_CHANGES:
        raise Refused(400, "bad_body", f"at most {MAX_CHANGES} attributes at once")
    changes: dict[str, str | None] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name):
            raise Refused(400, "bad_name", f"{str(name)[:80]!r}: a name is 1 to 64 letters, digits, _ or -")
        if value is not None and not isinstance(value, str):
            raise Refused(400, "bad_value", f"{name}: a value is text, or null to delete the attribute")
        if value is not None and len(value) > MAX_VALUE_CHARACTERS:
            raise Refused(400, "bad_value", f"{name}: a value is at most {MAX_VALUE_CHARACTERS} characters")
        changes[name] = value
    return changes

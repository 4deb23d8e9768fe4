"""Who a broadcast reaches: a condition of the stories' syntax over the user's attributes only.

The story engine's compiler does the parsing (:func:`worker.engine.conditions.compile_condition`); what is
added here is the rule that no conversation is running, so only ``@user.*`` may be read: ``@session`` and
``@message`` are refused where they stand, by a scan of the source outside quoted strings (which works
whatever shape the compiled condition has).
"""

from __future__ import annotations

import re

from worker.engine.conditions import Condition, compile_condition
from worker.engine.templates import TemplateError

_REFERENCE = re.compile(r"@([A-Za-z_]*)")


class AudienceError(ValueError):
    """A condition a broadcast cannot use; ``offset`` is where in its text the problem is."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(f"{message} (at character {offset + 1})")
        self.offset = offset
        self.message = message


def compile_audience(where: str) -> Condition | None:
    """The compiled condition, None for "every user" (an empty one); :class:`AudienceError` if unusable."""
    if not where.strip():
        return None
    try:
        condition = compile_condition(where)
    except TemplateError as exc:
        raise AudienceError(exc.offset, exc.message) from None
    for offset, name in _references(where):
        if name != "user":
            raise AudienceError(offset, f"a broadcast reads only @user.* attributes, not @{name}")
    return condition


def _references(source: str) -> list[tuple[int, str]]:
    """Each ``@name`` outside quoted strings, with its offset."""
    found: list[tuple[int, str]] = []
    quote: str | None = None
    position = 0
    while position < len(source):
        char = source[position]
        if quote is not None:
            if char == "\\":
                position += 1
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "@":
            match = _REFERENCE.match(source, position)
            assert match is not None
            found.append((position, match.group(1)))
        position += 1
    return found

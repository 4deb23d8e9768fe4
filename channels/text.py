"""Buttons as numbered choices, for channels that only carry text (the console, SMS).

The reply "2" to a numbered list means the second button; one definition of that numbering serves both
the rendering and the reading back.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.core.schema import Button


def numbered_choices(
    buttons: Sequence[Button], *, template: str = "{n}. {title}", separator: str = " "
) -> str:
    """``1. Paris 2. London`` (numbers start at 1, in the order the buttons were given)."""
    return separator.join(template.format(n=n, title=b.title) for n, b in enumerate(buttons, 1))


def button_by_number(text: str, buttons: Sequence[Button]) -> Button | None:
    """The button a bare number (surrounding spaces ignored) picks, or None."""
    stripped = text.strip()
    if stripped.isdecimal() and 1 <= int(stripped) <= len(buttons):  # isdigit() lets "²" through
        return buttons[int(stripped) - 1]
    return None

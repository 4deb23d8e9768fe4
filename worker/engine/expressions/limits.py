"""The bounds that keep every expression cheap, whatever the values it reads (docs/stories.md, "Limits")."""

from __future__ import annotations

from typing import Final

MAX_EXPRESSION: Final = 4096
"""Characters of one expression (between ``{{ }}``, or a whole condition); a longer one is a load error."""

MAX_DEPTH: Final = 32
"""Nesting of parentheses, function calls, ``-`` and ``not``; deeper is a load error."""

MAX_VALUE: Final = 65536
"""Characters of a value that a function or an operator reads, and of the text a function returns.

A value passed through whole (``{{@message}}``, ``||``) is not cut; ``length`` counts every character.
"""


def cut(text: str) -> str:
    """``text`` up to :data:`MAX_VALUE` characters (the same object when it is short enough)."""
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE]

"""The one error of the expression language, raised only while compiling, never while evaluating."""

from __future__ import annotations


class TemplateError(ValueError):
    """A malformed template or condition; ``offset`` is where in its text the problem is."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message

"""``if:`` / ``unless:`` conditions, compiled once when the stories load (the language is in
:mod:`worker.engine.expressions`: comparisons, ``and`` / ``or`` / ``not``, ``contains``, parentheses)."""

from __future__ import annotations

from worker.engine.expressions.parser import parse_condition
from worker.engine.expressions.truths import Truth
from worker.engine.expressions.values import Values


class Condition:
    """A compiled condition; ``negate`` is set for ``unless:``."""

    __slots__ = ("negate", "source", "test")

    def __init__(self, source: str, test: Truth, negate: bool) -> None:
        self.source = source
        self.test = test
        self.negate = negate

    def holds(self, session: Values, user: Values, message: str) -> bool:
        """Never raises, whatever the values."""
        return self.test.holds(session, user, message) != self.negate

    def __repr__(self) -> str:
        return f"Condition({'unless ' if self.negate else ''}{self.source!r})"


def compile_condition(source: str, negate: bool = False) -> Condition:
    """Compile ``source``; raises :class:`TemplateError` with the offset of the first problem."""
    return Condition(source, parse_condition(source), negate)

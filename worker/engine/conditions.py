"""``if:`` / ``unless:`` conditions: a chain, or two chains compared ignoring case and outer whitespace."""

from __future__ import annotations

import re

from worker.engine.templates import Expr, TemplateError, Values, parse_chain

_SPACE = re.compile(r"\s*")


class Condition:
    """``left``, or ``left == right`` / ``left != right``; ``negate`` is set for ``unless:``."""

    __slots__ = ("left", "negate", "op", "right", "source")

    def __init__(self, source: str, left: Expr, op: str | None, right: Expr | None, negate: bool) -> None:
        self.source = source
        self.left = left
        self.op = op
        self.right = right
        self.negate = negate

    def holds(self, session: Values, user: Values, message: str) -> bool:
        left = self.left.value(session, user, message)
        right = self.right
        if right is None:
            result = left != ""
        else:
            same = left.strip().casefold() == right.value(session, user, message).strip().casefold()
            result = same if self.op == "==" else not same
        return result != self.negate

    def __repr__(self) -> str:
        return f"Condition({'unless ' if self.negate else ''}{self.source!r})"


def compile_condition(source: str, negate: bool = False) -> Condition:
    """Compile ``source``; raises :class:`TemplateError` with the offset of the first problem."""
    start = _SPACE.match(source).end()  # type: ignore[union-attr]
    if source.startswith(("{{", "<<"), start):
        raise TemplateError(start, "write conditions without {{ }}, e.g. '@session.City == \"Paris\"'")
    if start >= len(source):
        raise TemplateError(0, "empty condition")
    alternatives, position = parse_chain(source, start)
    left = Expr(alternatives, source[start:position].strip())
    if position >= len(source):
        return Condition(source, left, None, None, negate)
    op = source[position : position + 2]
    if op not in ("==", "!="):
        raise TemplateError(position, "expected '||', '==' or '!=' (or the end of the condition)")
    right_start = _SPACE.match(source, position + 2).end()  # type: ignore[union-attr]
    if right_start >= len(source):
        raise TemplateError(right_start, f"expected something to compare after {op!r}")
    alternatives, end = parse_chain(source, right_start)
    if end < len(source):
        raise TemplateError(end, "expected '||' or the end of the condition")
    return Condition(source, left, op, Expr(alternatives, source[right_start:end].strip()), negate)

"""The template language, compiled once when the stories load and rendered without re-parsing.

A template is literal text with expressions between ``{{ }}`` or ``<< >>`` (their language is in
:mod:`worker.engine.expressions`). An expression that depends on no value is worked out when the template
compiles and becomes literal text. A substituted value is never parsed again, so a user who types
``{{@user.Email}}`` sees exactly that.
"""

from __future__ import annotations

import html
import re

from worker.engine.expressions.errors import TemplateError
from worker.engine.expressions.parser import parse_template_expression
from worker.engine.expressions.values import Constant, Expr, Values

__all__ = ["Expr", "Template", "TemplateError", "Values", "compile_template"]

_DELIMITER = re.compile(r"\\\{\{|\\<<|\{\{|<<")


class Template:
    """Literal parts and expressions; ``escape`` HTML-escapes every substituted value (``html`` bodies)."""

    __slots__ = ("constant", "escape", "parts", "single", "source")

    def __init__(self, source: str, parts: tuple[str | Expr, ...], escape: bool = False) -> None:
        self.source = source
        self.parts = parts
        self.escape = escape
        only_text = all(part.__class__ is str for part in parts)
        self.constant: str | None = "".join(p for p in parts if isinstance(p, str)) if only_text else None
        # "{{expr}}" alone, as in most set_session values: its value is the template's
        self.single: Expr | None = parts[0] if len(parts) == 1 and isinstance(parts[0], Expr) else None

    @property
    def expressions(self) -> tuple[Expr, ...]:
        return tuple(part for part in self.parts if isinstance(part, Expr))

    def render(self, session: Values, user: Values, message: str) -> str:
        """Never raises: an expression that is unset gives the empty string."""
        constant = self.constant
        if constant is not None:
            return constant
        escape = self.escape
        single = self.single
        if single is not None:
            value = single.value(session, user, message)
            return html.escape(value) if escape else value
        out: list[str] = []
        for part in self.parts:
            if type(part) is str:
                out.append(part)
            else:
                value = part.value(session, user, message)  # type: ignore[union-attr]
                out.append(html.escape(value) if escape else value)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def compile_template(source: str, escape: bool = False, secrets: bool = False) -> Template:
    """Compile ``source``; raises :class:`TemplateError` with the offset of the first problem.

    ``secrets``: ``@secret.NAME`` may be used (an http action's request fields); elsewhere it is an error.
    """
    parts: list[str | Expr] = []
    literal: list[str] = []
    position = 0
    for found in _DELIMITER.finditer(source):
        start = found.start()
        if start < position:
            continue  # inside an expression already consumed
        literal.append(source[position:start])
        token = found.group()
        if token[0] == "\\":
            literal.append(token[1:])
            position = found.end()
            continue
        expr, position = parse_template_expression(source, found.end(), start, token, secrets)
        if isinstance(expr, Constant):
            literal.append(html.escape(expr.text) if escape else expr.text)
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(expr)
    literal.append(source[position:])
    text = "".join(literal)
    if text:
        parts.append(text)
    return Template(source, tuple(parts), escape)

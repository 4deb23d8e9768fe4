"""The template language, compiled once when the stories load and rendered without re-parsing.

A template is literal text with expressions between ``{{ }}`` or ``<< >>``. An expression is a chain of
alternatives separated by ``||``; its value is the first alternative that is set and not empty. A
substituted value is never parsed again, so a user who types ``{{@user.Email}}`` sees exactly that.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Final

SESSION: Final = 0
USER: Final = 1
MESSAGE: Final = 2
TEXT: Final = 3

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_WORD = re.compile(r"[A-Za-z0-9_-]*")
_SPACE = re.compile(r"\s*")
_DELIMITER = re.compile(r"\\\{\{|\\<<|\{\{|<<")
_CLOSERS: Final = {"{{": "}}", "<<": ">>"}
_STRING_ESCAPES: Final = {'"': '"', "'": "'", "\\": "\\"}
_EXPECTED_ALTERNATIVE = "expected @session.NAME, @user.NAME, @message or a quoted string"

Values = Mapping[str, str]


class TemplateError(ValueError):
    """A malformed template or condition; ``offset`` is where in its text the problem is."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


class Expr:
    """A compiled chain of alternatives: ``(kind, name)`` pairs, tried in order."""

    __slots__ = ("alternatives", "source")

    def __init__(self, alternatives: tuple[tuple[int, str], ...], source: str) -> None:
        self.alternatives = alternatives
        self.source = source

    @property
    def constant(self) -> str | None:
        """The value when it does not depend on anything (a chain that starts with a quoted string)."""
        if not self.alternatives:
            return ""
        kind, name = self.alternatives[0]
        return name if kind == TEXT else None

    def value(self, session: Values, user: Values, message: str) -> str:
        for kind, name in self.alternatives:
            if kind == SESSION:
                found = session.get(name)
            elif kind == USER:
                found = user.get(name)
            elif kind == MESSAGE:
                found = message
            else:
                return name
            if found:
                return found if found.__class__ is str else str(found)
        return ""

    def __repr__(self) -> str:
        return f"Expr({self.source!r})"


class Template:
    """Literal parts and expressions; ``escape`` HTML-escapes every substituted value (``html`` bodies)."""

    __slots__ = ("constant", "escape", "parts", "source")

    def __init__(self, source: str, parts: tuple[str | Expr, ...], escape: bool = False) -> None:
        self.source = source
        self.parts = parts
        self.escape = escape
        only_text = all(part.__class__ is str for part in parts)
        self.constant: str | None = "".join(p for p in parts if isinstance(p, str)) if only_text else None

    @property
    def expressions(self) -> tuple[Expr, ...]:
        return tuple(part for part in self.parts if isinstance(part, Expr))

    def render(self, session: Values, user: Values, message: str) -> str:
        """Never raises: every alternative falls back to the empty string."""
        constant = self.constant
        if constant is not None:
            return constant
        out: list[str] = []
        escape = self.escape
        for part in self.parts:
            if type(part) is str:
                out.append(part)
            else:
                value = part.value(session, user, message)  # type: ignore[union-attr]
                out.append(html.escape(value) if escape else value)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def compile_template(source: str, escape: bool = False) -> Template:
    """Compile ``source``; raises :class:`TemplateError` with the offset of the first problem."""
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
        expr, position = _parse_expression(source, found.end(), start, token)
        constant = expr.constant
        if constant is not None:
            literal.append(html.escape(constant) if escape else constant)
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


def _parse_expression(source: str, position: int, opened_at: int, opener: str) -> tuple[Expr, int]:
    closer = _CLOSERS[opener]
    position = _SPACE.match(source, position).end()  # type: ignore[union-attr]
    if source.startswith(closer, position):
        raise TemplateError(
            opened_at, f"empty expression {opener}{closer}; write one such as {opener}@message{closer}"
        )
    if position >= len(source):
        raise TemplateError(opened_at, f"{opener!r} is never closed with {closer!r}")
    alternatives, position = parse_chain(source, position)
    if not source.startswith(closer, position):
        if position >= len(source):
            raise TemplateError(opened_at, f"{opener!r} is never closed with {closer!r}")
        raise TemplateError(position, f"expected '||' or {closer!r}")
    return Expr(alternatives, source[opened_at : position + 2]), position + 2


def parse_chain(source: str, position: int) -> tuple[tuple[tuple[int, str], ...], int]:
    """Parse ``alt ("||" alt)*`` from ``position``; returns the useful alternatives and where it ended.

    Empty quoted strings are dropped (they are never "set and not empty") and so is everything after
    a non-empty quoted string (it is always chosen).
    """
    alternatives: list[tuple[int, str]] = []
    settled = False
    while True:
        position = _SPACE.match(source, position).end()  # type: ignore[union-attr]
        alternative, position = _parse_alternative(source, position)
        if not settled and not (alternative[0] == TEXT and alternative[1] == ""):
            alternatives.append(alternative)
            settled = alternative[0] == TEXT
        position = _SPACE.match(source, position).end()  # type: ignore[union-attr]
        if not source.startswith("||", position):
            return tuple(alternatives), position
        position += 2


def _parse_alternative(source: str, position: int) -> tuple[tuple[int, str], int]:
    char = source[position : position + 1]
    if char in ('"', "'"):
        return _parse_string(source, position)
    if char != "@":
        raise TemplateError(position, _EXPECTED_ALTERNATIVE)
    word_end = _WORD.match(source, position + 1).end()  # type: ignore[union-attr]
    word = source[position + 1 : word_end]
    if word == "message":
        if source.startswith(".", word_end):
            raise TemplateError(word_end, "@message has no fields; use @message alone")
        return (MESSAGE, ""), word_end
    if word not in ("session", "user"):
        shown = f"@{word}" if word else "@"
        raise TemplateError(position, f"unknown variable {shown} (use @session.NAME, @user.NAME or @message)")
    if not source.startswith(".", word_end):
        raise TemplateError(word_end, f"@{word} needs a name: @{word}.NAME")
    name = _NAME.match(source, word_end + 1)
    if name is None:
        raise TemplateError(word_end + 1, f"@{word}. needs a name of letters, digits, '_' and '-'")
    return (SESSION if word == "session" else USER, name.group()), name.end()


def _parse_string(source: str, position: int) -> tuple[tuple[int, str], int]:
    quote = source[position]
    out: list[str] = []
    index = position + 1
    length = len(source)
    while index < length:
        char = source[index]
        if char == quote:
            return (TEXT, "".join(out)), index + 1
        if char == "\\":
            escaped = source[index + 1 : index + 2]
            if escaped not in _STRING_ESCAPES:
                shown = "\\" + escaped if escaped else "a lone \\"
                raise TemplateError(
                    index, f"unknown escape {shown} in a quoted string (use \\\", \\' or \\\\)"
                )
            out.append(_STRING_ESCAPES[escaped])
            index += 2
            continue
        out.append(char)
        index += 1
    raise TemplateError(position, f"quoted string is never closed with {quote}")

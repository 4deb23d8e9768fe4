"""Read a YAML file into ruamel.yaml's node graph, which keeps the line and column of every node.

The loader works on composed nodes (not constructed values) so that every scalar — each template,
each condition — carries its own position, and a problem inside one can be reported at the character
where it is. ruamel.yaml's C parser (ruamel.yaml.clib) is used when it is installed.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

__all__ = ["MappingNode", "Node", "ScalarNode", "SequenceNode", "Source", "is_null", "parse", "position"]

_NULLS = frozenset(("", "~", "null", "Null", "NULL"))

try:  # the C parser (ruamel.yaml.clib) is ~20x faster than the pure-Python one on large story sets
    from ruamel.yaml.cyaml import CBaseLoader

    def _compose(text: str) -> Node | None:
        loader = CBaseLoader(text)
        try:
            node: Node | None = loader.get_single_node()
        finally:
            loader.dispose()
        return node

except ImportError:  # pragma: no cover - depends on ruamel.yaml.clib being installed
    from ruamel.yaml import YAML

    def _compose(text: str) -> Node | None:
        node: Node | None = YAML(typ="base", pure=True).compose(text)
        return node


class YamlProblem(Exception):
    """The file is not YAML; carries the 1-based position of the problem."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.col = col
        self.message = message


@dataclass(slots=True)
class Source:
    """A file's name (as printed in problems) and text, with a lazily built line index."""

    name: str
    text: str
    _line_starts: list[int] = field(default_factory=list)

    def line_col(self, index: int) -> tuple[int, int]:
        """1-based line and column of the character at ``index``."""
        if not self._line_starts:
            starts = [0]
            find = self.text.find
            at = find("\n")
            while at >= 0:
                starts.append(at + 1)
                at = find("\n", at + 1)
            self._line_starts = starts
        line = bisect.bisect_right(self._line_starts, index) - 1
        return line + 1, index - self._line_starts[line] + 1


def parse(source: Source) -> Node | None:
    """The file's single document as a node graph (None when it holds no document); raises YamlProblem.

    The base loader leaves every scalar as text (no implicit int/bool/null typing, which costs more
    than the parsing): ``yes`` and ``42`` stay the text the designer wrote, and nulls are recognised
    by :func:`is_null`.
    """
    try:
        node = _compose(source.text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = "; ".join(str(part) for part in (exc.context, exc.problem) if part)
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise YamlProblem(line, col, f"not valid YAML: {what}") from None
    except ReaderError as exc:
        line, col = source.line_col(max(exc.position, 0))
        raise YamlProblem(line, col, f"not valid YAML: character {exc.character!r} is not allowed") from None
    except YAMLError as exc:
        raise YamlProblem(1, 1, f"not valid YAML: {exc}") from None
    return node


def position(node: Node) -> tuple[int, int]:
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


def is_null(node: Node) -> bool:
    """A plain ``null``, ``~`` or nothing at all (``key:``)."""
    return isinstance(node, ScalarNode) and not getattr(node, "style", None) and node.value in _NULLS


def is_merge_key(node: Node) -> bool:
    """The plain key ``<<`` of a YAML merge (``<<: *defaults``)."""
    return isinstance(node, ScalarNode) and node.value == "<<" and not getattr(node, "style", None)


def locate(source: Source, node: Node, offset: int) -> tuple[int, int]:
    """1-based line and column in the file of character ``offset`` of a scalar's value.

    Walks the scalar's source text the way YAML reads it (quotes, escapes, line folding, literal
    blocks); when the walk does not reproduce the value exactly, falls back to the scalar's start.
    """
    walked = _walk(source.text, node) if isinstance(node, ScalarNode) else None
    if walked is not None:
        chars, indexes = walked
        value = node.value
        exact = "".join(chars)
        if (exact == value or (getattr(node, "style", None) == "|" and exact.startswith(value))) and indexes:
            index = indexes[offset] if offset < len(indexes) else indexes[-1] + 1  # just past the end
            return source.line_col(index)
    return position(node)


def _walk(text: str, node: ScalarNode) -> tuple[list[str], list[int]] | None:
    style: str = getattr(node, "style", None) or ""
    start: int = node.start_mark.index
    end: int = node.end_mark.index
    if style == "|":
        return _walk_literal(text, start, end)
    if style == "":
        return _walk_flow(text, start, end, quote="")
    if style in ("'", '"'):
        return _walk_flow(text, start + 1, end - 1, quote=style)
    return None  # folded blocks: the scalar's own position is as close as we get


_ESCAPES = {
    "0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f", "r": "\r",
    "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0", "L": "\u2028",
    "P": "\u2029",
}  # fmt: skip
_HEX_LENGTH = {"x": 2, "u": 4, "U": 8}


def _walk_flow(text: str, start: int, end: int, quote: str) -> tuple[list[str], list[int]] | None:
    chars: list[str] = []
    indexes: list[int] = []
    i = start
    while i < end:
        char = text[i]
        if char == "\n":
            while chars and chars[-1] in " \t" and indexes[-1] < i:  # trailing blanks fold away
                chars.pop()
                indexes.pop()
            breaks = 0
            j = i + 1
            while True:
                while j < end and text[j] in " \t":
                    j += 1
                if j < end and text[j] == "\n":
                    breaks += 1
                    j += 1
                    continue
                break
            if breaks:
                chars.extend("\n" * breaks)
                indexes.extend([i] * breaks)
            else:
                chars.append(" ")
                indexes.append(i)
            i = j
            continue
        if quote == "'" and char == "'":
            chars.append("'")
            indexes.append(i)
            i += 2
            continue
        if quote == '"' and char == "\\":
            escaped = text[i + 1 : i + 2]
            if escaped == "\n":
                j = i + 2
                while j < end and text[j] in " \t":
                    j += 1
                i = j
                continue
            if escaped in _ESCAPES:
                chars.append(_ESCAPES[escaped])
                indexes.append(i)
                i += 2
                continue
            length = _HEX_LENGTH.get(escaped)
            if length is None:
                return None
            try:
                chars.append(chr(int(text[i + 2 : i + 2 + length], 16)))
            except ValueError:
                return None
            indexes.append(i)
            i += 2 + length
            continue
        chars.append(char)
        indexes.append(i)
        i += 1
    return chars, indexes


def _walk_literal(text: str, start: int, end: int) -> tuple[list[str], list[int]] | None:
    header_end = text.find("\n", start, end)
    if header_end < 0:
        return None
    header = text[start:header_end].split("#", 1)[0].strip()
    if any(char.isdigit() for char in header):
        return None  # an explicit indentation indicator: rare, not worth reproducing
    lines: list[tuple[int, int]] = []
    at = header_end + 1
    while at < end:
        line_end = text.find("\n", at, end)
        if line_end < 0:
            line_end = end
        lines.append((at, line_end))
        at = line_end + 1
    indent: int | None = None
    for line_start, line_end in lines:
        stripped = text[line_start:line_end].lstrip(" ")
        if stripped:
            indent = line_end - line_start - len(stripped)
            break
    if indent is None:
        return None
    chars: list[str] = []
    indexes: list[int] = []
    for line_start, line_end in lines:
        for i in range(min(line_start + indent, line_end), line_end):
            chars.append(text[i])
            indexes.append(i)
        chars.append("\n")
        indexes.append(line_end)
    return chars, indexes


def scalar_text(node: Any) -> str | None:
    """The text of a non-null scalar as written (``42`` → "42", ``yes`` → "yes"); None otherwise."""
    if isinstance(node, ScalarNode) and not is_null(node):
        value: str = node.value
        return value
    return None

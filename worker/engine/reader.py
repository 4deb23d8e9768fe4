"""Read positioned YAML nodes into typed values, recording a positioned problem for each bad one.

The base of the stories loader: every helper returns None (and records why) instead of raising, so one
pass over the files finds every problem. Templates and conditions are compiled here, once, and shared
between the places that use the same text.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from gateway.core.durations import parse_duration
from worker.engine.conditions import Condition, compile_condition
from worker.engine.model import Where
from worker.engine.problems import Problem
from worker.engine.templates import Template, TemplateError, compile_template
from worker.engine.yaml_source import (
    MappingNode,
    Node,
    ScalarNode,
    SequenceNode,
    Source,
    is_merge_key,
    is_null,
    locate,
    position,
    scalar_text,
)

ID = re.compile(r"[A-Za-z0-9_-]+")
MAX_MERGE_DEPTH = 16

Entries = dict[str, tuple[ScalarNode, Node]]

_Compiled = TypeVar("_Compiled", Template, Condition)


class Reader:
    """Positioned reading of one file at a time (``source``), problems accumulated in ``problems``."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.source = Source("", "")
        self.templates: dict[tuple[str, bool], Template] = {}
        self.conditions: dict[tuple[str, bool], Condition] = {}

    # -- problems and positions -------------------------------------------------------------------

    def where(self, node: Node) -> Where:
        line, col = position(node)
        return Where(self.source.name, line, col)

    def problem(self, node: Node, message: str) -> None:
        line, col = position(node)
        self.problems.append(Problem(self.source.name, line, col, message))

    def problem_at(self, where: Where, message: str) -> None:
        self.problems.append(Problem(where.file, where.line, where.col, message))

    # -- mappings ---------------------------------------------------------------------------------

    def entries(self, node: Node, allowed: tuple[str, ...] | None, what: str) -> Entries | None:
        """A mapping's entries by key; reports a non-mapping, non-text or duplicate keys, unknown keys."""
        if not isinstance(node, MappingNode):
            self.problem(node, f"{what} must be a mapping (NAME: value)")
            return None
        found: Entries = {}
        for key_node, value_node in self.pairs(node, 0):
            key = scalar_text(key_node)
            if key is None or not isinstance(key_node, ScalarNode):
                self.problem(key_node, f"a key in {what} must be a plain name")
                continue
            if key in found:
                self.problem(key_node, f"duplicate key {key!r} in {what}")
                continue
            if allowed is not None and key not in allowed:
                self.problem(key_node, unknown_key(key, allowed, what))
                continue
            found[key] = (key_node, value_node)
        return found

    def pairs(self, node: MappingNode, depth: int) -> list[tuple[Node, Node]]:
        """The mapping's pairs with YAML merge keys (``<<: *defaults``) applied; own keys win."""
        own: list[tuple[Node, Node]] = []
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if is_merge_key(key_node):
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                if depth >= MAX_MERGE_DEPTH or not all(isinstance(s, MappingNode) for s in sources):
                    self.problem(key_node, "'<<' must merge a mapping or a list of mappings")
                    continue
                for merged_source in sources:
                    merged.extend(self.pairs(merged_source, depth + 1))
            else:
                own.append((key_node, value_node))
        if merged:
            seen = {scalar_text(key) for key, _ in own}
            for key_node, value_node in merged:
                key = scalar_text(key_node)
                if key not in seen:
                    seen.add(key)
                    own.append((key_node, value_node))
        return own

    def items(self, node: Node, what: str) -> list[Node] | None:
        if is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{what} must be a list")
            return None
        items: list[Node] = node.value
        return items

    # -- scalars ----------------------------------------------------------------------------------

    def text(self, node: Node, what: str) -> str | None:
        value = scalar_text(node)
        if value is None:
            self.problem(node, f"{what} must be text")
        return value

    def identifier(self, node: Node, what: str) -> str | None:
        value = self.text(node, what)
        if value is not None and not ID.fullmatch(value):
            self.problem(node, f"{what} {value!r} may only use letters, digits, '_' and '-'")
            return None
        return value

    def duration(self, node: Node) -> float | None:
        value = self.text(node, "session_ttl")
        if value is None:
            return None
        try:
            seconds = parse_duration(value)
        except ValueError:
            self.problem(node, f"bad duration {value!r}: use a number with s, m, h or d, such as 30m")
            return None
        if seconds <= 0:
            self.problem(node, f"bad duration {value!r}: it must be more than zero")
            return None
        return seconds

    def template(self, node: Node, what: str, escape: bool = False) -> Template | None:
        value = scalar_text(node)
        if value is None:
            self.problem(node, f"{what} must be text")
            return None
        return self._compiled(
            node, f"bad template in {what}", self.templates, value, escape, compile_template
        )

    def condition(self, node: Node, negate: bool) -> Condition | None:
        what = "unless" if negate else "if"
        value = scalar_text(node)
        if value is None:
            self.problem(
                node, f"{what} must be a condition written as text, such as '@session.City == \"Paris\"'"
            )
            return None
        return self._compiled(
            node, f"bad condition in {what}", self.conditions, value, negate, compile_condition
        )

    def _compiled(
        self,
        node: Node,
        label: str,
        cache: dict[tuple[str, bool], _Compiled],
        value: str,
        flag: bool,
        compile_text: Callable[[str, bool], _Compiled],
    ) -> _Compiled | None:
        """Compile a template or condition once per text, or record a problem at the failing character."""
        cached = cache.get((value, flag))
        if cached is not None:
            return cached
        try:
            compiled = compile_text(value, flag)
        except TemplateError as exc:
            line, col = locate(self.source, node, exc.offset)
            self.problems.append(Problem(self.source.name, line, col, f"{label}: {exc.message}"))
            return None
        cache[(value, flag)] = compiled
        return compiled

    def decode(self, name: str, raw: bytes) -> str | None:
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            before = raw[: exc.start]
            line = before.count(b"\n") + 1
            col = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
            self.problems.append(Problem(name, line, col, "not UTF-8 text (is this a YAML file?)"))
            return None


def unknown_key(key: str, allowed: tuple[str, ...], what: str) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f" (expected one of: {', '.join(allowed)})"
    return f"unknown key {key!r} in {what}{hint}"


def suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""

"""The ``save`` paths of an http action: where in a JSON answer a value is, and how it is saved as text.

A path is ``$`` then ``.key``, ``['key']`` and ``[index]`` steps, or the word ``status`` (the HTTP status
code). Paths are parsed when the stories load, so a bad one is a positioned problem, never a run-time one.
A JSON answer is read keeping each number as written (``4.50`` stays ``4.50``), so that a saved number is
the text the API sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from worker.engine.templates import TemplateError

STATUS: Final = "status"
_KEY = re.compile(r"[A-Za-z0-9_-]+")
_INDEX = re.compile(r"[0-9]+")
_QUOTED_ESCAPES: Final = {"'": "'", '"': '"', "\\": "\\"}

PathStep = str | int


class JsonNumber(str):
    """A JSON number as the API wrote it."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SavePath:
    """A parsed path; ``steps`` None is the word ``status``."""

    source: str
    steps: tuple[PathStep, ...] | None

    @property
    def needs_json(self) -> bool:
        return self.steps is not None


def parse_path(source: str) -> SavePath:
    """Parse a path; raises :class:`TemplateError` at the offending character."""
    text = source.strip()
    lead = len(source) - len(source.lstrip())
    if text == STATUS:
        return SavePath(source, None)
    if not text.startswith("$"):
        raise TemplateError(lead, "a save path starts with $ (such as $.order.status), or is the word status")
    steps: list[PathStep] = []
    at = 1
    while at < len(text):
        char = text[at]
        if char == ".":
            key = _KEY.match(text, at + 1)
            if key is None:
                raise TemplateError(lead + at + 1, "expected a key of letters, digits, '_' and '-' after '.'")
            steps.append(key.group())
            at = key.end()
        elif char == "[":
            step, at = _bracket(text, at + 1, lead)
            steps.append(step)
        else:
            raise TemplateError(lead + at, "expected .key, ['key'] or [index]")
    return SavePath(source, tuple(steps))


def _bracket(text: str, at: int, lead: int) -> tuple[PathStep, int]:
    quote = text[at : at + 1]
    if quote in ("'", '"'):
        out: list[str] = []
        i = at + 1
        while i < len(text):
            char = text[i]
            if char == quote:
                if not text.startswith("]", i + 1):
                    raise TemplateError(lead + i + 1, "expected ']' after the quoted key")
                return "".join(out), i + 2
            if char == "\\":
                escaped = text[i + 1 : i + 2]
                if escaped not in _QUOTED_ESCAPES:
                    raise TemplateError(lead + i, "unknown escape in a quoted key (use \\', \\\" or \\\\)")
                out.append(_QUOTED_ESCAPES[escaped])
                i += 2
                continue
            out.append(char)
            i += 1
        raise TemplateError(lead + at, f"quoted key is never closed with {quote}")
    index = _INDEX.match(text, at)
    if index is None:
        raise TemplateError(lead + at, "expected ['key'] or [index] (an index is 0 or more)")
    if not text.startswith("]", index.end()):
        raise TemplateError(lead + index.end(), "expected ']'")
    return int(index.group()), index.end() + 1


class NotJson(ValueError):
    """The answer is not a JSON document (or nests too deep to read)."""


def read_json(body: bytes) -> object:
    """The JSON document in ``body``, numbers kept as written; raises :class:`NotJson`."""
    try:
        return json.loads(body, parse_int=JsonNumber, parse_float=JsonNumber, parse_constant=_refuse)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise NotJson(str(exc)) from None


def _refuse(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_MISSING = object()


def find(document: object, path: SavePath, status: int) -> str | None:
    """The text to save for ``path``; None when it finds nothing (the name is then deleted)."""
    if path.steps is None:
        return str(status)
    value = document
    for step in path.steps:
        if isinstance(step, str):
            value = value.get(step, _MISSING) if isinstance(value, Mapping) else _MISSING
        elif isinstance(value, list) and step < len(value):
            value = value[step]
        else:
            value = _MISSING
        if value is _MISSING:
            return None
    return as_text(value)


def as_text(value: object) -> str | None:
    """Text and numbers as written, ``true``/``false``, objects and lists as compact JSON; null is nothing."""
    if value is None:
        return None
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return compact(value)


def compact(value: object) -> str:
    """Compact JSON of a document read by :func:`read_json` (numbers written as they came)."""
    out: list[str] = []
    try:
        _write(value, out)
    except RecursionError:
        raise NotJson("nested too deep") from None
    return "".join(out)


def _write(value: object, out: list[str]) -> None:
    if isinstance(value, JsonNumber):
        out.append(str(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif value is None:
        out.append("null")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, Mapping):
        out.append("{")
        for n, (key, item) in enumerate(value.items()):
            if n:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, Sequence):
        out.append("[")
        for n, item in enumerate(value):
            if n:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:  # pragma: no cover - read_json makes nothing else
        out.append(json.dumps(value))

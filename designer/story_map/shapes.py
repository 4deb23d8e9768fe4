"""What each box of the drawn map holds and how big it is, shared by the layout and the SVG writer.

There is no font engine here: text widths are estimated from a per-character table for a sans-serif
face, with room to spare. Labels are cut (with "…") so one long message cannot widen a whole story.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from designer.story_map.graph import Edge, Node

FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
TITLE_SIZE = 13.0  # step ids, bold
TEXT_SIZE = 11.5  # what a step says, triggers, stubs
LABEL_SIZE = 11.0  # edge labels
PAD_X = 10.0
LINE_GAP = 4.0
MAX_DETAIL = 34
MAX_TRIGGERS = 40
MAX_LABEL = 30
MIN_STEP_WIDTH = 84.0
HEXAGON_TIP = 10.0  # how far a handoff's hexagon points out on each side

_NARROW = set("ijl|!.,:;'`")
_THIN = set('frt()[]{}/\\-" ')
_WIDE = set("mwMW@%")


def char_em(char: str) -> float:
    """Width of ``char`` in em for a typical sans-serif face (an estimate on the generous side)."""
    if char in _NARROW:
        return 0.3
    if char in _THIN:
        return 0.38
    if char in _WIDE:
        return 0.88
    if char.isascii():
        if char.isupper():
            return 0.7
        return 0.58 if char.isdigit() else 0.56
    if unicodedata.east_asian_width(char) in ("W", "F") or ord(char) >= 0x1F000:
        return 1.15
    if unicodedata.combining(char):
        return 0.0
    return 0.62


WIDTH_MARGIN = 1.1  # renderers' fonts differ (DejaVu Sans is wide): err on the roomy side


def text_width(text: str, size: float, bold: bool = False) -> float:
    return sum(char_em(char) for char in text) * size * (1.08 if bold else 1.0) * WIDTH_MARGIN


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@dataclass(frozen=True, slots=True)
class TextLine:
    text: str
    size: float
    bold: bool = False


@dataclass(frozen=True, slots=True)
class Shape:
    """A box's lines of text and its size."""

    lines: tuple[TextLine, ...]
    width: float
    height: float


def _shape(lines: list[TextLine], min_width: float = 0.0) -> Shape:
    width = max(text_width(line.text, line.size, line.bold) for line in lines) + 2 * PAD_X
    height = sum(line.size for line in lines) + LINE_GAP * (len(lines) - 1) + 14.0
    return Shape(tuple(lines), max(width, min_width), height)


def node_shape(node: Node) -> Shape:
    if node.kind == "start":
        return _shape([TextLine("▶ " + shorten(node.label, MAX_TRIGGERS), TEXT_SIZE, bold=True)])
    if node.kind == "no_match":
        return _shape([TextLine("no match", TEXT_SIZE, bold=True)])
    if node.kind == "handoff":
        lines = [TextLine(node.label, TEXT_SIZE, bold=True)]
        if node.detail:
            lines.append(TextLine(shorten(node.detail, MAX_DETAIL), TEXT_SIZE))
        shape = _shape(lines)
        return Shape(shape.lines, shape.width + 2 * HEXAGON_TIP, shape.height)
    lines = [TextLine(node.label, TITLE_SIZE, bold=True)]
    if node.detail:
        lines.append(TextLine(shorten(node.detail, MAX_DETAIL), TEXT_SIZE))
    return _shape(lines, MIN_STEP_WIDTH)


def stub_shape(story: str) -> Shape:
    """The box standing for another story that an edge leads to."""
    return _shape([TextLine(f"→ {story}", TEXT_SIZE, bold=True)])


def label_shape(edge: Edge) -> Shape | None:
    if not edge.label:
        return None
    text = shorten(edge.label, MAX_LABEL)
    return Shape((TextLine(text, LABEL_SIZE),), text_width(text, LABEL_SIZE) + 8.0, LABEL_SIZE + 6.0)

"""The story map as a standalone SVG: frames per story, boxes per step, coloured edges, a legend.

Self-contained (no external fonts, scripts or styles), so it can be committed, opened in a browser, or
inlined in the ``/map`` page. Every box has a tooltip with the step's file and line; a box standing for
another story links to that story's frame; a handoff is a hexagon. All text is XML-escaped. The legend
lists handoffs only on a map that has some.
"""

from __future__ import annotations

from html import escape

from designer.story_map.graph import Edge, Node, StoryGraph
from designer.story_map.layout import Box, Frame, Point, Route, layout_map
from designer.story_map.shapes import FONT, HEXAGON_TIP, LABEL_SIZE, TEXT_SIZE, Shape, TextLine, text_width

MARGIN = 16.0
LEGEND_HEIGHT = 34.0

EDGE_COLOURS = {
    "next": "#4a4f57",
    "goto": "#2463b5",
    "button": "#0f8a7e",
    "jump": "#7b3fb0",
    "retry": "#8a8f98",
    "timeout": "#b03a5b",
    "follow_up": "#b03a5b",
    "trigger": "#1b7f3b",
    "fallback": "#d9822b",
    "handoff": "#3367d6",
    "resume": "#3367d6",
}
DASHED = {"retry", "fallback", "timeout", "follow_up", "resume"}
HANDOFF_KINDS = ("handoff", "resume")  # their markers and style are written only on a map with handoffs
HANDOFF_STYLE = ".handoff { fill: #e8f0fe; stroke: #3367d6; stroke-width: 1.4; }\n"
STYLE = f"""
.map {{ font-family: {FONT}; }}
.frame {{ fill: #f7f8fa; stroke: #d3d7de; }}
.frame-title {{ font-size: 14px; font-weight: 700; fill: #1f2328; }}
.frame-file {{ font-size: 11px; fill: #6b7280; }}
.step {{ fill: #ffffff; stroke: #5b6470; stroke-width: 1.2; }}
.step.entry {{ stroke: #1b7f3b; stroke-width: 2.6; }}
.step.dead-end {{ stroke: #c0392b; stroke-width: 1.6; fill: #fdf1ef; }}
.step.unreachable {{ stroke: #9aa0a6; stroke-dasharray: 5 3; fill: #eeeff1; }}
.start {{ fill: #e3f4e8; stroke: #1b7f3b; stroke-width: 1.4; }}
.no-match {{ fill: #fff1dc; stroke: #d9822b; stroke-width: 1.4; }}
.stub {{ fill: #f4ecfb; stroke: #7b3fb0; stroke-width: 1.2; stroke-dasharray: 4 2; }}
.end-bar {{ stroke: #c0392b; stroke-width: 3; }}
text {{ fill: #1f2328; }}
.unreachable-text {{ fill: #80868b; }}
.detail {{ fill: #4b5563; }}
.edge {{ fill: none; stroke-width: 1.4; }}
.edge.jump {{ stroke-width: 2.2; }}
.label-box {{ fill: #ffffff; fill-opacity: 0.92; }}
.legend {{ font-size: 11.5px; }}
"""


def to_svg(graph: StoryGraph) -> str:
    """The whole map as an ``<svg>`` document (UTF-8 text, no XML declaration needed)."""
    layout = layout_map(graph, top=LEGEND_HEIGHT)
    handoffs = any(node.kind == "handoff" for node in graph.nodes.values())
    legend, legend_width = _legend(handoffs)
    width = max(layout.width, legend_width) + 2 * MARGIN
    height = layout.height + 2 * MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'class="map" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'role="img" aria-label="Story map">',
        f"<title>Story map: {escape(', '.join(group.story for group in graph.groups))}</title>",
        f"<style>{STYLE}{HANDOFF_STYLE if handoffs else ''}</style>",
        _markers(handoffs),
        f'<g transform="translate({MARGIN:.0f} {MARGIN:.0f})">',
        legend,
    ]
    parts.extend(_frame(frame) for frame in layout.frames)
    parts.extend(_route(route) for route in layout.routes if not route.loop)
    parts.extend(_loop(route) for route in layout.routes if route.loop)
    parts.extend(_box(box, graph) for box in layout.boxes)
    parts.extend(_label(route) for route in layout.routes)
    parts.append("</g></svg>")
    return "\n".join(part for part in parts if part) + "\n"


def _f(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _markers(handoffs: bool) -> str:
    markers = "".join(
        f'<marker id="arrow-{kind}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        for kind, colour in EDGE_COLOURS.items()
        if handoffs or kind not in HANDOFF_KINDS
    )
    return f"<defs>{markers}</defs>"


def _legend(handoffs: bool) -> tuple[str, float]:
    """The legend's markup, and how wide it is (the drawing is at least that wide); ``handoffs``: the
    map has some, so the legend shows their hexagon and the "handed back" arrow."""
    items: list[str] = []
    x = 0.0
    y = 12.0

    def text(value: str, cls: str = "") -> None:
        nonlocal x
        items.append(f'<text x="{_f(x)}" y="{_f(y + 4)}" class="legend {cls}">{escape(value)}</text>')
        x += text_width(value, 11.5) + 16

    def swatch(cls: str, rx: float = 4.0) -> None:
        nonlocal x
        items.append(
            f'<rect x="{_f(x)}" y="{_f(y - 7)}" width="22" height="14" rx="{_f(rx)}" class="{cls}"/>'
        )
        x += 28

    swatch("start", 7)
    text("triggers")
    swatch("no-match", 7)
    text("no match → fallback")
    swatch("step entry")
    text("entry step")
    swatch("step dead-end")
    text("dead end: the story ends")
    swatch("step unreachable")
    text("never reached")
    swatch("stub")
    text("another story")
    if handoffs:
        items.append(f'<polygon points="{_hexagon(x, y - 7, 22, 14, 5)}" class="handoff"/>')
        x += 28
        text("handoff to a person")
    kinds = ["next", "goto", "button", "jump", "retry", "timeout"] + (["resume"] if handoffs else [])
    for kind in kinds:
        colour = EDGE_COLOURS[kind]
        dash = ' stroke-dasharray="5 3"' if kind in DASHED else ""
        items.append(
            f'<path d="M{_f(x)},{_f(y)} h24" class="edge {kind}" stroke="{colour}"{dash} '
            f'marker-end="url(#arrow-{kind})"/>'
        )
        x += 30
        text({"button": "[button]", "timeout": "timeout, follow-up", "resume": "handed back"}.get(kind, kind))
    text("dashed: conditional (if / unless)")
    return "\n".join(items), x


def _frame(frame: Frame) -> str:
    where = frame.group.where
    file = f"{where.file}:{where.line}"
    title_width = text_width(frame.group.story, 14.0, bold=True)
    return (
        f'<g id="story-{escape(frame.group.story)}" class="story">'
        f'<rect x="{_f(frame.x)}" y="{_f(frame.y)}" width="{_f(frame.width)}" height="{_f(frame.height)}" '
        f'rx="10" class="frame"/>'
        f'<text x="{_f(frame.x + 14)}" y="{_f(frame.y + 22)}" class="frame-title">{escape(frame.group.story)}'
        f"</text>"
        f'<text x="{_f(frame.x + 24 + title_width)}" y="{_f(frame.y + 22)}" class="frame-file">{escape(file)}'
        f"</text></g>"
    )


def _path(points: tuple[Point, ...]) -> str:
    """Through every point, leaving and entering each one vertically (smooth S-curves between layers)."""
    (x0, y0), rest = points[0], points[1:]
    d = [f"M{_f(x0)},{_f(y0)}"]
    for x1, y1 in rest:
        if abs(x1 - x0) < 0.5:
            d.append(f"L{_f(x1)},{_f(y1)}")
        else:
            middle = (y0 + y1) / 2
            d.append(f"C{_f(x0)},{_f(middle)} {_f(x1)},{_f(middle)} {_f(x1)},{_f(y1)}")
        x0, y0 = x1, y1
    return " ".join(d)


def _stroke(edge: Edge) -> str:
    colour = EDGE_COLOURS[edge.kind]
    dashed = edge.kind in DASHED or edge.conditional
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    return f'class="edge {edge.kind}" stroke="{colour}"{dash} marker-end="url(#arrow-{edge.kind})"'


def _route(route: Route) -> str:
    tip = escape(f"{route.edge.kind}: {route.edge.label}" if route.edge.label else route.edge.kind)
    return f'<path d="{_path(route.points)}" {_stroke(route.edge)}><title>{tip}</title></path>'


def _loop(route: Route) -> str:
    (x0, y0), (x1, y1) = route.points
    reach = 30.0
    d = f"M{_f(x0)},{_f(y0)} C{_f(x0 + reach)},{_f(y0 - 16)} {_f(x1 + reach)},{_f(y1 + 16)} {_f(x1)},{_f(y1)}"
    return f'<path d="{d}" {_stroke(route.edge)}><title>{escape(route.edge.label)}</title></path>'


def _label(route: Route) -> str:
    if route.label_at is None or route.label is None:
        return ""
    shape = route.label
    x, y = route.label_at
    if route.loop:
        x += shape.width / 2 + 2
    colour = EDGE_COLOURS[route.edge.kind]
    line = shape.lines[0]
    return (
        f'<g class="edge-label"><title>{escape(route.edge.label)}</title>'
        f'<rect x="{_f(x - shape.width / 2)}" y="{_f(y - shape.height / 2)}" width="{_f(shape.width)}" '
        f'height="{_f(shape.height)}" rx="4" class="label-box"/>'
        f'<text x="{_f(x)}" y="{_f(y + LABEL_SIZE * 0.35)}" text-anchor="middle" '
        f'font-size="{_f(LABEL_SIZE)}" style="fill:{colour}">{escape(line.text)}</text></g>'
    )


def _box(box: Box, graph: StoryGraph) -> str:
    if box.stub_story is not None:
        body = _rect(box, "stub", 6.0) + _lines(box, box.shape, "")
        target = escape(box.stub_story)
        return f'<a href="#story-{target}"><title>continues in story {target}</title>{body}</a>'
    node = graph.nodes[box.id]
    classes, radius = _classes(node)
    text_class = "unreachable-text" if not node.reachable else ""
    if node.kind == "handoff":
        points = _hexagon(box.x, box.y, box.width, box.height, HEXAGON_TIP)
        outline = f'<polygon points="{points}" class="{classes}"/>'
    else:
        outline = _rect(box, classes, radius)
    parts = [f"<g><title>{escape(_tooltip(node))}</title>", outline]
    if node.dead_end:
        cx, bottom = box.x + box.width / 2, box.y + box.height
        parts.append(
            f'<path d="M{_f(cx)},{_f(bottom)} v6 M{_f(cx - 10)},{_f(bottom + 6)} h20" class="end-bar"/>'
        )
    parts.append(_lines(box, box.shape, text_class))
    parts.append("</g>")
    return "".join(parts)


def _classes(node: Node) -> tuple[str, float]:
    if node.kind == "start":
        return "start", 12.0
    if node.kind == "no_match":
        return "no-match", 12.0
    if node.kind == "handoff":
        return ("handoff" if node.reachable else "handoff step unreachable"), 0.0
    classes = ["step"]
    if node.entry:
        classes.append("entry")
    if node.dead_end:
        classes.append("dead-end")
    if not node.reachable:
        classes.append("unreachable")
    return " ".join(classes), 6.0


def _tooltip(node: Node) -> str:
    where = f" ({node.where.file}:{node.where.line})" if node.where is not None else ""
    if node.kind == "start":
        return f"story {node.story} starts on: {node.label}{where}"
    if node.kind == "no_match":
        return "a message no trigger and no waiting step takes goes to the fallback story"
    if node.kind == "handoff":
        return f"{node.label}: the conversation goes to a person at {node.detail}{where}"
    marks = [m for m, on in (("entry", node.entry), ("dead end", node.dead_end)) if on]
    if not node.reachable:
        marks.append("never reached")
    said = f"\n{node.detail}" if node.detail else ""
    return f"{node.story}.{node.label}{where}{' — ' + ', '.join(marks) if marks else ''}{said}"


def _hexagon(x: float, y: float, width: float, height: float, tip: float) -> str:
    """The points of a hexagon in the box (x, y, width, height), its sides pointing ``tip`` out."""
    middle = y + height / 2
    corners = (
        (x, middle), (x + tip, y), (x + width - tip, y), (x + width, middle), (x + width - tip, y + height),
        (x + tip, y + height),
    )  # fmt: skip
    return " ".join(f"{_f(px)},{_f(py)}" for px, py in corners)


def _rect(box: Box, classes: str, radius: float) -> str:
    return (
        f'<rect x="{_f(box.x)}" y="{_f(box.y)}" width="{_f(box.width)}" height="{_f(box.height)}" '
        f'rx="{_f(radius)}" class="{classes}"/>'
    )


def _lines(box: Box, shape: Shape, text_class: str) -> str:
    out: list[str] = []
    y = box.y + 7.0
    cx = box.x + box.width / 2
    for line in shape.lines:
        y += line.size
        out.append(_text(cx, y - line.size * 0.18, line, text_class))
        y += 4.0
    return "".join(out)


def _text(x: float, y: float, line: TextLine, text_class: str) -> str:
    classes = " ".join(c for c in (text_class, "" if line.bold or line.size > TEXT_SIZE else "detail") if c)
    weight = ' font-weight="700"' if line.bold else ""
    cls = f' class="{classes}"' if classes else ""
    return (
        f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="middle" font-size="{_f(line.size)}"{weight}{cls}>'
        f"{escape(line.text)}</text>"
    )

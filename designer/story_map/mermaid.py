"""The story map as Mermaid flowchart text: paste it into a Markdown file, GitHub draws it.

Node ids are derived from story and step ids (``welcome__ask_city``), every label is quoted with
Mermaid's entity codes for the characters its parser treats specially, and marks are classes:
``entry``, ``deadEnd``, ``unreachable``, ``start``, ``noMatch`` and ``handoff`` (a hexagon: the
conversation goes to a person).
"""

from __future__ import annotations

import re

from designer.story_map.graph import Edge, Node, StoryGraph

MAX_DETAIL = 48
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_]")
_SPECIAL = re.compile(r'["#<>|`]')  # inside a quoted label, brackets and braces are plain text

ARROWS = {
    "next": "-->",
    "goto": "-->",
    "button": "-->",
    "retry": "-.->",
    "timeout": "-.->",
    "follow_up": "-.->",
    "jump": "==>",
    "trigger": "-->",
    "fallback": "-.->",
    "handoff": "-->",
    "resume": "-.->",
}
CLASSES = (
    ("entry", "stroke-width:3px,stroke:#1b7f3b"),
    ("deadEnd", "fill:#fdecea,stroke:#c0392b"),
    ("unreachable", "fill:#f2f2f2,stroke:#999,stroke-dasharray:4 3,color:#888"),
    ("start", "fill:#e3f4e8,stroke:#1b7f3b"),
    ("noMatch", "fill:#fff1dc,stroke:#d9822b"),
    ("handoff", "fill:#e8f0fe,stroke:#3367d6"),
)


def escape(text: str) -> str:
    """Mermaid entity codes (``#35;``) for the characters that would end or change a quoted label."""
    return _SPECIAL.sub(lambda match: f"#{ord(match.group())};", text)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def mermaid_ids(graph: StoryGraph) -> dict[str, str]:
    """A Mermaid-safe, unique id per node, readable: ``welcome__start``, ``quiz__start_``."""
    ids: dict[str, str] = {}
    used: set[str] = set()
    for node in graph.nodes.values():
        if node.kind == "step":
            base = f"{node.story}__{node.label}"
        elif node.kind == "start":
            base = f"{node.story}__triggers"
        elif node.kind == "handoff":
            base = f"{node.story}__{node.id.split('.', 1)[1].replace(':', '__')}"
        else:
            base = "no_match"
        base = _UNSAFE_ID.sub("_", base)
        candidate, n = base, 1
        while candidate in used:
            n += 1
            candidate = f"{base}_{n}"
        used.add(candidate)
        ids[node.id] = candidate
    return ids


def to_mermaid(graph: StoryGraph) -> str:
    """``flowchart TD`` with one subgraph per story; cross-story edges after the subgraphs."""
    ids = mermaid_ids(graph)
    lines = ["flowchart TD"]
    for group in graph.groups:
        lines.append(f'  subgraph story_{_UNSAFE_ID.sub("_", group.story)}["{escape(group.story)}"]')
        lines.append("    direction TB")
        for node_id in group.nodes:
            lines.append(f"    {_node(ids[node_id], graph.nodes[node_id])}")
        for edge in graph.edges:
            if graph.nodes[edge.source].story == group.story and not graph.crosses_stories(edge):
                lines.append(f"    {_edge(ids, edge)}")
        lines.append("  end")
    for edge in graph.edges:
        if graph.crosses_stories(edge):
            lines.append(f"  {_edge(ids, edge)}")
    for name, style in CLASSES:
        lines.append(f"  classDef {name} {style}")
    for name, members in _classes(graph, ids).items():
        if members:
            lines.append(f"  class {','.join(members)} {name}")
    return "\n".join(lines) + "\n"


def _node(mermaid_id: str, node: Node) -> str:
    if node.kind == "start":
        return f'{mermaid_id}(["▶ {escape(shorten(node.label, MAX_DETAIL))}"])'
    if node.kind == "no_match":
        return f'{mermaid_id}(["{escape(node.label)}"])'
    if node.kind == "handoff":
        label = escape(node.label)
        if node.detail:
            label += "<br/>" + escape(shorten(node.detail, MAX_DETAIL))
        return f'{mermaid_id}{{{{"{label}"}}}}'
    label = escape(node.label)
    if node.detail:
        label += "<br/>" + escape(shorten(node.detail, MAX_DETAIL))
    if node.dead_end:
        label += "<br/>⏹ end"
    return f'{mermaid_id}["{label}"]'


def _edge(ids: dict[str, str], edge: Edge) -> str:
    arrow = ARROWS[edge.kind]
    if edge.conditional and arrow == "-->":
        arrow = "-.->"
    label = f'|"{escape(shorten(edge.label, MAX_DETAIL))}"|' if edge.label else ""
    return f"{ids[edge.source]} {arrow}{label} {ids[edge.target]}"


def _classes(graph: StoryGraph, ids: dict[str, str]) -> dict[str, list[str]]:
    classes: dict[str, list[str]] = {name: [] for name, _ in CLASSES}
    for node in graph.nodes.values():
        mermaid_id = ids[node.id]
        if node.kind == "start":
            classes["start"].append(mermaid_id)
        elif node.kind == "no_match":
            classes["noMatch"].append(mermaid_id)
        elif node.kind == "handoff":
            classes["handoff" if node.reachable else "unreachable"].append(mermaid_id)
        elif not node.reachable:
            classes["unreachable"].append(mermaid_id)
        elif node.dead_end:
            classes["deadEnd"].append(mermaid_id)
        elif node.entry:
            classes["entry"].append(mermaid_id)
    return classes

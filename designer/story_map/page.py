"""The ``/map`` page: the current stories' map as one HTML document with the SVG inline.

No external assets (fonts, scripts, styles): the page works offline and behind any ingress. The Mermaid
text is included under the drawing, for pasting into a README or an issue.
"""

from __future__ import annotations

from html import escape

from designer.story_map.graph import build_graph
from designer.story_map.mermaid import to_mermaid
from designer.story_map.svg import to_svg
from worker.engine.model import Stories

PAGE_STYLE = """
body { margin: 0; font-family: system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif;
       color: #1f2328; background: #ffffff; }
header { padding: 14px 20px 4px; }
h1 { font-size: 20px; margin: 0 0 4px; }
p.summary { margin: 0; color: #57606a; font-size: 14px; }
main { padding: 8px 20px 20px; overflow: auto; }
main svg { max-width: 100%; height: auto; }
details { margin: 0 20px 24px; font-size: 13px; }
pre { background: #f6f8fa; padding: 12px; overflow: auto; }
"""


def map_page(stories: Stories) -> str:
    """The HTML page showing ``stories`` as a map (a complete document, UTF-8)."""
    graph = build_graph(stories)
    steps = sum(1 for node in graph.nodes.values() if node.kind == "step")
    unreached = sum(1 for node in graph.nodes.values() if node.kind == "step" and not node.reachable)
    dead_ends = sum(1 for node in graph.nodes.values() if node.dead_end)
    count = len(graph.groups)
    summary = (
        f"{count} stor{'y' if count == 1 else 'ies'}, {steps} step{'' if steps == 1 else 's'}, "
        f"{dead_ends} dead end{'' if dead_ends == 1 else 's'}"
        + (f", {unreached} never reached" if unreached else "")
        + ". Hover a step for its file and line; a purple box links to the story it leads to."
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Story map</title><style>{PAGE_STYLE}</style></head><body>\n"
        f'<header><h1>Story map</h1><p class="summary">{escape(summary)}</p></header>\n'
        f"<main>{to_svg(graph)}</main>\n"
        "<details><summary>Mermaid source</summary>"
        f"<pre>{escape(to_mermaid(graph))}</pre></details>\n"
        "</body></html>\n"
    )

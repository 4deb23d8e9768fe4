"""``gateway map [PATH] [--svg FILE]``: Mermaid text on stdout, or an SVG drawing written to FILE.

Stories that do not load are reported as ``gateway check`` reports them (exit 1).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from designer.check import load_or_report
from designer.story_map.graph import build_graph
from designer.story_map.mermaid import to_mermaid
from designer.story_map.svg import to_svg


def run_map(
    folder: Path | str,
    emails_dir: Path | str | None = None,
    *,
    svg: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Print the map of the stories in ``folder`` (or write it as SVG); return the exit code."""
    stream = out if out is not None else sys.stdout
    stories = load_or_report(folder, emails_dir, stream)
    if stories is None:
        return 1
    graph = build_graph(stories)
    if svg is None:
        stream.write(to_mermaid(graph))
        return 0
    try:
        svg.write_text(to_svg(graph), encoding="utf-8")
    except OSError as exc:
        stream.write(f"error: cannot write {svg}: {exc.strerror or exc}\n")
        return 1
    steps = sum(1 for node in graph.nodes.values() if node.kind == "step")
    stream.write(f"wrote {svg}: {len(graph.groups)} stories, {steps} steps\n")
    return 0

"""Handoffs in `gateway check` and `gateway map`: a hexagon per handoff, a "handed back" arrow to the
``resume`` story (which that makes reachable), and a bad handoff reported as `gateway check` reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from io import StringIO
from itertools import combinations
from pathlib import Path

from designer.check import run_check
from designer.story_map import build_graph, to_mermaid, to_svg
from designer.story_map.layout import layout_map
from tests.designer.test_story_map import SVG, parse_mermaid
from tests.support.designer import write
from worker.engine import load_stories
from worker.engine.reachability import reachable_steps

HANDOFFS = """\
stories:
  support:
    triggers: [help]
    steps:
      - id: ask
        actions:
          - message: What's wrong?
        next: hand
      - id: hand
        actions:
          - set_session: {Problem: "{{@message}}"}
          - handoff: {desk: slack, to: C0123ABCD, resume: csat}
            if: '@session.Problem == "urgent"'
          - handoff:
              desk: email
              to: '{{@user.Desk || "support@example.com"}}'
              resume: support
  csat:
    steps:
      - id: rate
        actions:
          - message: How did we do?
  stray:
    steps:
      - id: only
        actions:
          - handoff: {desk: email, to: desk@example.com, resume: never}
  never:
    steps:
      - id: only
        actions:
          - message: Only a stray handoff resumes here.
"""


def stories_of(tmp_path: Path, text: str = HANDOFFS) -> Path:
    return write(tmp_path / "stories" / "bot.yml", text).parent


def test_a_story_reached_only_by_a_resume_is_reachable(tmp_path: Path) -> None:
    folder = stories_of(tmp_path)
    assert reachable_steps(load_stories(folder)) == {
        ("support", "ask"), ("support", "hand"), ("csat", "rate"),
    }  # fmt: skip
    out, warnings = StringIO(), StringIO()
    assert run_check(folder, None, out, warnings) == 0
    assert [line.split(": ", 1)[1] for line in warnings.getvalue().splitlines()] == [
        "warning: story 'stray' is never started: it has no triggers, it is not the fallback, and no jump "
        "or button leads to it",
        "warning: story 'never' is never started: it has no triggers, it is not the fallback, and no jump "
        "or button leads to it",
    ]


def test_mermaid_draws_each_handoff_as_a_hexagon_handed_back_to_its_resume(tmp_path: Path) -> None:
    text = to_mermaid(build_graph(load_stories(stories_of(tmp_path))))
    groups, edges, classes = parse_mermaid(text)
    assert groups["support"] == [
        "support__triggers", "support__ask", "support__hand", "support__hand__handoff1",
        "support__hand__handoff2",
    ]  # fmt: skip
    assert '    support__hand__handoff1{{"handoff → slack desk<br/>C0123ABCD"}}' in text.splitlines()
    assert (
        '    support__hand__handoff2{{"handoff → email desk<br/>{{@user.Desk #124;#124; #34;support@exam'
        in text
    )
    support = [edge for edge in edges if edge[0].startswith("support__hand")]
    assert support == [
        ("support__hand", "-.->", "if @session.Problem == #34;urgent#34;", "support__hand__handoff1"),
        ("support__hand", "-->", "", "support__hand__handoff2"),
        ("support__hand__handoff2", "-.->", "handed back", "support__ask"),  # back into its own story
        ("support__hand__handoff1", "-.->", "handed back", "csat__rate"),  # crosses stories: listed last
    ]
    assert classes["support__hand__handoff1"] == classes["support__hand__handoff2"] == "handoff"
    assert classes["stray__only__handoff1"] == "unreachable"
    assert "support__hand" not in classes, "a step that hands over is not a dead end"
    assert "  classDef handoff fill:#e8f0fe,stroke:#3367d6" in text.splitlines()


def test_svg_draws_handoffs_as_hexagons_with_a_legend(tmp_path: Path) -> None:
    graph = build_graph(load_stories(stories_of(tmp_path)))
    svg = to_svg(graph)
    root = ET.fromstring(svg)
    hexagons = [p for p in root.iter(f"{SVG}polygon") if p.get("class", "").startswith("handoff")]
    assert len(hexagons) == 1 + 3  # the legend's, and one per handoff
    assert {p.get("class") for p in hexagons} == {"handoff", "handoff step unreachable"}
    texts = {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
    assert {"handoff → slack desk", "handoff → email desk", "C0123ABCD", "handed back"} <= texts
    assert {"handoff to a person", "→ csat"} <= texts
    titles = {"".join(t.itertext()) for t in root.iter(f"{SVG}title")}
    assert any(
        t.startswith("handoff → slack desk: the conversation goes to a person at C0123ABCD (") for t in titles
    )
    resume = [p for p in root.iter(f"{SVG}path") if p.get("class") == "edge resume"]
    assert resume and all(p.get("stroke-dasharray") == "5 3" for p in resume)
    assert 'id="arrow-resume"' in svg and 'id="arrow-handoff"' in svg


def test_a_map_without_handoffs_has_no_trace_of_them(tmp_path: Path) -> None:
    folder = stories_of(tmp_path, "stories:\n  s:\n    triggers: [go]\n    steps: [{id: a}]\n")
    svg = to_svg(build_graph(load_stories(folder))).replace(str(tmp_path), "")
    assert "handoff" not in svg and "resume" not in svg and "handed back" not in svg


def test_layout_keeps_handoff_boxes_apart(tmp_path: Path) -> None:
    layout = layout_map(build_graph(load_stories(stories_of(tmp_path))))
    for a, b in combinations(layout.boxes, 2):
        apart = a.x + a.width <= b.x or b.x + b.width <= a.x or a.y + a.height <= b.y or b.y + b.height <= a.y
        assert apart, (a.id, b.id)
    handoff = next(box for box in layout.boxes if box.id == "support.hand:handoff1")
    hand = next(box for box in layout.boxes if box.id == "support.hand")
    assert handoff.y > hand.y + hand.height  # drawn below the step that hands over


def test_check_reports_a_bad_handoff_and_exits_1(tmp_path: Path) -> None:
    folder = stories_of(
        tmp_path,
        """\
        stories:
          s:
            triggers: [go]
            steps:
              - id: a
                actions:
                  - handoff: {desk: slack, to: '#help', resume: nowhere}
                  - message: too late
        """,
    )
    out = StringIO()
    assert run_check(folder, None, out) == 1
    assert out.getvalue().replace(f"{folder}/", "").splitlines() == [
        "bot.yml:7:40: handoff to: '#help' is not a Slack channel id (C, G or D and capital letters or "
        "digits, such as C0123ABCD; not a #name)",
        "bot.yml:7:57: resume: there is no story 'nowhere'",
        "bot.yml:8:13: actions after an unconditional handoff never run: move them before it, or give the "
        "handoff an 'if' or 'unless'",
    ]

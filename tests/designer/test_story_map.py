"""`gateway map`: the graph of the example stories as Mermaid and SVG, the /map page, and the layout."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from itertools import combinations
from pathlib import Path

import pytest

from designer.story_map import build_graph, map_page, to_mermaid, to_svg
from designer.story_map.layout import layout_map
from tests.support.designer import gateway, write
from tests.support.paths import EMAILS, ROOT, STORIES
from worker.engine import Stories, load_stories

SVG = "{http://www.w3.org/2000/svg}"
NODE = re.compile(r'^    (\w+)(\["|\(\["|\{\{")(.*)("\]|"\]\)|"\}\})$')  # box, pill, hexagon (a handoff)
EDGE = re.compile(r'^ {2,4}(\w+) (-->|-\.->|==>)(?:\|"([^"]*)"\|)? (\w+)$')
SUBGRAPH = re.compile(r'^  subgraph story_(\w+)\["([^"]*)"\]$')

TRICKY = """\
stories:
  main:
    triggers: [go, "re:^x|y$"]
    steps:
      - id: a
        actions:
          - message: 'Say "yes" | <b>no</b> # {{@user.Name || "you"}}'
            quick_replies: [{title: 'A "quoted" | pipe', goto: b}]
        next: b
      - id: b
        actions:
          - message: done
      - id: orphan
        actions:
          - message: nobody comes here
        next: a
  loop:
    steps:
      - id: one
        actions: [{message: one}]
        next: two
      - id: two
        actions: [{message: two}, {goto: one, if: '@session.again'}]
"""


@pytest.fixture(scope="module")
def examples() -> Stories:
    return load_stories(STORIES, EMAILS)


def parse_mermaid(text: str) -> tuple[dict[str, list[str]], list[tuple[str, str, str, str]], dict[str, str]]:
    """(story → node ids, edges (source, arrow, label, target), node id → class); fails on any
    line that is not a subgraph, node, edge, class or style line."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    groups: dict[str, list[str]] = {}
    edges: list[tuple[str, str, str, str]] = []
    classes: dict[str, str] = {}
    current: str | None = None
    for line in lines[1:]:
        if match := SUBGRAPH.match(line):
            current = match.group(2)
            groups[current] = []
        elif line == "  end":
            current = None
        elif line == "    direction TB" or line.startswith("  classDef "):
            continue
        elif match := NODE.match(line):
            assert current is not None, line
            groups[current].append(match.group(1))
        elif match := EDGE.match(line):
            source, arrow, label, target = match.groups()
            edges.append((source, arrow, label or "", target))
        elif line.startswith("  class "):
            members, name = line[len("  class ") :].split(" ")
            for member in members.split(","):
                classes[member] = name
        else:
            raise AssertionError(f"not a Mermaid line this map writes: {line!r}")
    return groups, edges, classes


def test_mermaid_of_the_examples(examples: Stories) -> None:
    groups, edges, classes = parse_mermaid(to_mermaid(build_graph(examples)))
    assert groups == {
        "csat": ["csat__ask", "csat__thanks"],
        "fallback": ["no_match", "fallback__sorry"],
        "human": ["human__triggers", "human__ask", "human__hand_over", "human__hand_over__handoff1"],
        "orders": ["orders__triggers", "orders__ask", "orders__look_up", "orders__not_found"],
        "quiz": ["quiz__triggers", *(f"quiz__{s}" for s in (
            "ask1", "answer1", "ask2", "answer2", "right2", "ask3", "unclear3", "right3", "wrong3",
            "score"))],
        "support": ["support__triggers", "support__ask", "support__nudge", "support__ticket"],
        "welcome": ["welcome__triggers", *(f"welcome__{s}" for s in (
            "start", "save_name", "ask_city", "other", "save_city"))],
    }  # fmt: skip
    expected = [
        ("welcome__triggers", "-->", "", "welcome__start"),  # entry
        ("welcome__start", "-->", "next", "welcome__save_name"),
        ("welcome__start", "-.->", "goto if @user.FirstName", "welcome__ask_city"),  # conditional
        ("welcome__save_name", "-->", "goto", "welcome__ask_city"),
        ("welcome__ask_city", "-->", "[Somewhere else]", "welcome__other"),  # button with goto
        ("welcome__save_city", "-->", "[Ask for help]", "support__ask"),  # button with jump
        ("fallback__sorry", "-->", "[Quiz]", "quiz__ask1"),  # plain button that is a trigger
        ("no_match", "-.->", "fallback", "fallback__sorry"),
        ("quiz__ask2", "-.->", "no number: retry", "quiz__ask2"),
        ("quiz__answer2", "-.->", "goto if @session.number == #34;8#34;", "quiz__right2"),
        ("quiz__unclear3", "-->", "goto", "quiz__ask3"),
        ("quiz__score", "-->", "[Help]", "support__ask"),
        ("orders__look_up", "-.->", "on_error", "orders__not_found"),  # only when the call fails
        ("support__ask", "-.->", "timeout 10m", "support__nudge"),  # a timeout: dashed, with its delay
        ("support__nudge", "-->", "next", "support__ticket"),
        ("human__hand_over", "-->", "", "human__hand_over__handoff1"),  # a handoff ends its step
        ("human__hand_over__handoff1", "-.->", "handed back", "csat__ask"),  # then resume
    ]
    for edge in expected:
        assert edge in edges
    assert len(edges) == len(set(edges)) == 43
    nodes = {node for members in groups.values() for node in members}
    assert {s for s, *_ in edges} <= nodes and {t for *_, t in edges} <= nodes
    assert classes["support__ticket"] == classes["orders__look_up"] == "deadEnd"
    assert {n for n, c in classes.items() if c == "entry"} == {
        "welcome__start", "support__ask", "quiz__ask1", "fallback__sorry", "orders__ask", "human__ask",
        "csat__ask",
    }  # fmt: skip
    assert {n for n, c in classes.items() if c == "start"} == {
        "welcome__triggers", "support__triggers", "quiz__triggers", "orders__triggers", "human__triggers"
    }  # fmt: skip
    assert "unreachable" not in classes.values()


def test_mermaid_escapes_what_would_break_a_label(tmp_path: Path) -> None:
    write(tmp_path / "stories" / "s.yml", TRICKY)
    text = to_mermaid(build_graph(load_stories(tmp_path / "stories")))
    groups, edges, classes = parse_mermaid(text)
    assert groups["main"] == ["main__triggers", "main__a", "main__b", "main__orphan"]
    assert 'main__a["a<br/>Say #34;yes#34; #124; #60;b#62;no#60;/b#62; #35; {{@user.Name #124;#124;' in text
    assert ("main__a", "-->", "[A #34;quoted#34; #124; pipe]", "main__b") in edges
    assert ("loop__two", "-.->", "goto if @session.again", "loop__one") in edges
    assert classes["main__orphan"] == "unreachable"
    assert classes["loop__one"] == classes["loop__two"] == "unreachable"


def test_timers_are_dashed_edges_labelled_with_their_delay(tmp_path: Path) -> None:
    write(tmp_path / "stories" / "s.yml", """\
        stories:
          main:
            triggers: [go]
            steps:
              - id: ask
                actions:
                  - message: Email?
                  - follow_up: {after: 2d, goto: later, keep_on_reply: true}
                  - follow_up: {after: 90s, jump: other}
                    if: "@session.x"
                next: later
                timeout: {after: 10m, goto: nudge}
              - id: nudge
                actions:
                  - message: Still there?
              - id: later
                actions:
                  - message: Later.
          other:
            steps:
              - id: only
                actions:
                  - message: Reached only by time.
        """)  # fmt: skip
    stories = load_stories(tmp_path / "stories")
    _, edges, classes = parse_mermaid(to_mermaid(build_graph(stories)))
    assert ("main__ask", "-.->", "timeout 10m", "main__nudge") in edges
    assert ("main__ask", "-.->", "follow-up 2d, kept on reply", "main__later") in edges
    assert ("main__ask", "-.->", "follow-up 90s if @session.x", "other__only") in edges
    assert "unreachable" not in classes.values(), "a step a timer leads to is reached"
    svg = to_svg(build_graph(stories))
    assert 'class="edge timeout" stroke="#b03a5b" stroke-dasharray="5 3"' in svg
    assert 'class="edge follow_up" stroke="#b03a5b" stroke-dasharray="5 3"' in svg
    ET.fromstring(svg)


def test_svg_of_the_examples_is_xml_with_every_story_and_step(examples: Stories) -> None:
    svg = to_svg(build_graph(examples))
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    frames = {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("class") == "story"}
    assert set(frames) == {
        "story-csat", "story-fallback", "story-human", "story-orders", "story-quiz", "story-support",
        "story-welcome",
    }  # fmt: skip
    titles = {"".join(t.itertext()) for g in frames.values() for t in g.iter(f"{SVG}text")}
    assert {"fallback", "quiz", "support", "welcome"} <= titles
    texts = {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
    assert {"ask_city", "save_city", "ticket", "score", "no match", "▶ quiz · /quiz · play"} <= texts
    assert {"[Somewhere else]", "goto if @user.FirstName", "fallback", "next"} <= texts
    links = {a.get("href") for a in root.iter(f"{SVG}a")}
    assert links == {"#story-welcome", "#story-support", "#story-quiz", "#story-csat"}
    assert "<script" not in svg and "http://" not in svg.replace('="http://www.w3.org/', "")


def test_the_committed_map_is_the_examples_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the map shows file names as the stories folder was given: relative here
    committed = (ROOT / "docs" / "map.svg").read_text(encoding="utf-8")
    current = to_svg(build_graph(load_stories(Path("config/stories"), Path("config/emails"))))
    assert committed == current, "regenerate it: gateway map --svg docs/map.svg"


@pytest.mark.parametrize("source", ["examples", "tricky"])
def test_layout_boxes_do_not_overlap_and_stay_in_their_frame(
    source: str, examples: Stories, tmp_path: Path
) -> None:
    if source == "examples":
        stories = examples
    else:
        write(tmp_path / "stories" / "s.yml", TRICKY)
        stories = load_stories(tmp_path / "stories")
    graph = build_graph(stories)
    layout = layout_map(graph)
    assert layout_map(graph) == layout  # deterministic
    drawn = {box.id for box in layout.boxes if box.stub_story is None}
    assert drawn == set(graph.nodes)
    for a, b in combinations(layout.boxes, 2):
        apart = a.x + a.width <= b.x or b.x + b.width <= a.x or a.y + a.height <= b.y or b.y + b.height <= a.y
        assert apart, (a.id, b.id)
    for box in layout.boxes:
        story = box.id.split(".")[0].split(":")[0] if box.stub_story is None else None
        inside = [f for f in layout.frames if f.x <= box.x and box.x + box.width <= f.x + f.width
                  and f.y <= box.y and box.y + box.height <= f.y + f.height]  # fmt: skip
        assert len(inside) == 1, box.id
        if story:
            assert inside[0].group.story == story or box.id == ":no_match"
    for route in layout.routes:
        assert len(route.points) >= 2


def test_map_page_is_one_html_document_with_the_svg_inline(examples: Stories) -> None:
    page = map_page(examples)
    assert page.startswith("<!DOCTYPE html>\n<html") and page.endswith("</html>\n")
    assert page.count("<svg") == 1 and "7 stories, 26 steps, 3 dead ends." in page
    assert "<script" not in page and "<link" not in page
    svg = page[page.index("<svg") : page.index("</svg>") + len("</svg>")]
    ET.fromstring(svg)
    assert "flowchart TD" in page  # the Mermaid source, escaped inside <pre>


def test_gateway_map_prints_mermaid_and_writes_svg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = gateway(["map"], capsys, monkeypatch)
    assert code == 0 and out.startswith("flowchart TD\n") and "welcome__ask_city" in out
    target = tmp_path / "map.svg"
    code, out, _ = gateway(["map", str(STORIES), "--svg", str(target)], capsys, monkeypatch)
    assert (code, out) == (0, f"wrote {target}: 7 stories, 26 steps\n")
    assert ET.parse(target).getroot().tag == f"{SVG}svg"
    broken = write(tmp_path / "broken" / "s.yml", "stories:\n  s:\n    steps: [{id: a, goto: b}]\n")
    code, out, _ = gateway(["map", str(broken.parent)], capsys, monkeypatch)
    assert code == 1
    assert out.startswith(f"{broken}:3:21: unknown key 'goto' in a step") and out.count("\n") == 1

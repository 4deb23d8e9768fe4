"""The story map as data: steps as nodes grouped by story, the ways between them as labelled edges.

Rendering (Mermaid text, SVG, the ``/map`` page) reads only this model, so every drawing shows the same
graph. Besides the steps there are two kinds of marker nodes: a *start* node per story with triggers
(its label lists them) leading to the story's entry, and one *no match* node leading to the fallback;
and a *handoff* node per ``handoff`` action (the conversation goes to a person at a desk), leading to its
``resume`` story ("handed back").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from worker.engine.links import condition_text, step_handoffs, step_links
from worker.engine.model import (
    Goto,
    HandOff,
    Jump,
    SendEmail,
    SendImage,
    SendMessage,
    Step,
    Stories,
    Story,
    Where,
)
from worker.engine.reachability import reachable_steps

NodeKind = Literal["step", "start", "no_match", "handoff"]
EdgeKind = Literal[
    "next",
    "goto",
    "jump",
    "button",
    "retry",
    "timeout",
    "follow_up",
    "trigger",
    "fallback",
    "handoff",
    "resume",
]
NO_MATCH = "no match"


@dataclass(frozen=True, slots=True)
class Node:
    id: str  # "story.step" for steps, "story:start" for a start node, ":no_match", "story.step:handoffN"
    kind: NodeKind
    story: str
    label: str  # the step id, the triggers, or "handoff → email desk"
    detail: str = ""  # what the step says first (its first message as written), a handoff's ``to``
    where: Where | None = None
    entry: bool = False
    dead_end: bool = False  # a step with no next, no buttons and no goto/jump: the story ends there
    reachable: bool = True


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    kind: EdgeKind
    label: str
    conditional: bool = False


@dataclass(frozen=True, slots=True)
class StoryGroup:
    story: str
    where: Where
    nodes: tuple[str, ...]  # marker nodes first, then steps in file order
    entry: str  # the node id of the story's entry step


@dataclass(frozen=True, slots=True)
class StoryGraph:
    groups: tuple[StoryGroup, ...]
    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]

    def crosses_stories(self, edge: Edge) -> bool:
        return self.nodes[edge.source].story != self.nodes[edge.target].story


def step_id(story: str, step: str) -> str:
    return f"{story}.{step}"


def build_graph(stories: Stories) -> StoryGraph:
    """The map of ``stories``: every step, every link the engine can follow, entries and dead ends."""
    reached = reachable_steps(stories)
    fallback = stories.bot.fallback
    nodes: dict[str, Node] = {}
    edges: list[Edge] = []
    groups: list[StoryGroup] = []
    for story in stories.stories.values():
        members: list[str] = []
        entry = step_id(story.id, story.entry)
        if story.triggers:
            start = f"{story.id}:start"
            nodes[start] = Node(start, "start", story.id, " · ".join(story.triggers), where=story.where)
            members.append(start)
            edges.append(Edge(start, entry, "trigger", ""))
        if story.id == fallback:
            no_match = ":no_match"
            nodes[no_match] = Node(no_match, "no_match", story.id, NO_MATCH)
            members.append(no_match)
            edges.append(Edge(no_match, entry, "fallback", "fallback"))
        for step in story.steps.values():
            node_id = step_id(story.id, step.id)
            nodes[node_id] = _step_node(story, step, node_id, (story.id, step.id) in reached)
            members.append(node_id)
            handoffs = _handoff_nodes(story, step, node_id, (story.id, step.id) in reached)
            for node in handoffs.values():
                nodes[node.id] = node
                members.append(node.id)
            edges.extend(_step_edges(stories, story, step, node_id, handoffs))
        groups.append(StoryGroup(story.id, story.where, tuple(members), entry))
    return StoryGraph(tuple(groups), nodes, tuple(_merge(edges)))


def _step_node(story: Story, step: Step, node_id: str, reachable: bool) -> Node:
    return Node(
        node_id,
        "step",
        story.id,
        step.id,
        detail=_first_words(step),
        where=step.where,
        entry=step.id == story.entry,
        dead_end=_dead_end(step),
        reachable=reachable,
    )


def _handoff_nodes(story: Story, step: Step, node_id: str, reachable: bool) -> dict[int, Node]:
    """A node per handoff of ``step`` that may run, keyed by the action's identity."""
    nodes: dict[int, Node] = {}
    for n, action in enumerate(step_handoffs(step), start=1):
        nodes[id(action)] = Node(
            f"{node_id}:handoff{n}",
            "handoff",
            story.id,
            f"handoff → {action.desk} desk",
            detail=" ".join(action.to.source.split()),
            where=action.where,
            reachable=reachable,
        )
    return nodes


def _step_edges(
    stories: Stories, story: Story, step: Step, node_id: str, handoffs: Mapping[int, Node]
) -> list[Edge]:
    edges = []
    for action in step.actions:
        handoff = handoffs.get(id(action))
        if isinstance(action, HandOff) and handoff is not None:
            edges.append(Edge(node_id, handoff.id, "handoff", condition_text(action.when), bool(action.when)))
    for link in step_links(stories, story, step):
        label = link.label
        if link.kind == "button":
            label = f"[{label}]"
        source = node_id
        if link.kind == "resume" and link.handoff is not None:
            source = handoffs[id(link.handoff)].id
        elif link.when:
            label = f"{label} {condition_text(link.when)}"
        edges.append(Edge(source, step_id(link.story, link.step), link.kind, label, link.conditional))
    return edges


def _merge(edges: list[Edge]) -> list[Edge]:
    """One edge per (source, target, kind): two buttons to one step make one edge with both titles."""
    merged: dict[tuple[str, str, str], Edge] = {}
    for edge in edges:
        key = (edge.source, edge.target, edge.kind)
        seen = merged.get(key)
        if seen is None:
            merged[key] = edge
        elif edge.label not in seen.label.split(" / "):
            merged[key] = Edge(
                seen.source, seen.target, seen.kind, f"{seen.label} / {edge.label}",
                seen.conditional and edge.conditional,
            )  # fmt: skip
    return list(merged.values())


def _dead_end(step: Step) -> bool:
    if step.next is not None:
        return False
    return not any(
        isinstance(action, (Goto, Jump, HandOff)) or (isinstance(action, SendMessage) and action.buttons)
        for action in step.actions
    )


def _first_words(step: Step) -> str:
    """What the step says first, as written; "✉ " in front when the step sends an email."""
    said = ""
    for action in step.actions:
        if isinstance(action, SendMessage):
            said = " ".join(action.text.source.split())
            break
        if isinstance(action, SendImage) and not said:
            said = "image " + " ".join(action.url.source.split())
    emails = any(isinstance(action, SendEmail) for action in step.actions)
    return f"✉ {said}" if emails else said

"""Where a step can lead, by the engine's own rules: the edges of the story map and of reachability.

One definition serves ``gateway map`` (the drawn edges) and ``gateway check`` (steps nothing reaches), so
the two never disagree. A link is possible, not certain: a conditional ``goto`` may not fire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from worker.engine.conditions import Condition
from worker.engine.model import (
    ButtonSpec,
    CallApi,
    FollowUp,
    Goto,
    HandOff,
    Jump,
    SendMessage,
    Step,
    Stories,
    Story,
    TimerTarget,
)

LinkKind = Literal["next", "goto", "jump", "button", "retry", "timeout", "follow_up", "resume"]


@dataclass(frozen=True, slots=True)
class Link:
    """From one step to ``(story, step)``; ``label`` is what the designer wrote (a title, a condition)."""

    kind: LinkKind
    story: str
    step: str
    label: str
    when: tuple[Condition, ...] = ()
    uncertain: bool = False  # taken only sometimes, whatever the conditions (an http action's on_error)
    handoff: HandOff | None = None  # for a "resume" link: the handoff whose hand-back starts the story

    @property
    def conditional(self) -> bool:
        return bool(self.when) or self.uncertain


def condition_text(when: tuple[Condition, ...]) -> str:
    """``if @session.City == "Paris"`` (several joined with ``and``), as the designer wrote them."""
    return " and ".join(f"{'unless' if c.negate else 'if'} {c.source.strip()}" for c in when)


def trigger_target(stories: Stories, text: str) -> str | None:
    """The story a message equal to ``text`` starts, by the engine's trigger rule (exact, then ``re:``)."""
    stripped = text.strip()
    found = stories.exact_triggers.get(stripped.casefold())
    if found is not None:
        return found
    for pattern, story_id in stories.pattern_triggers:
        if pattern.search(stripped):
            return story_id
    return None


def step_links(stories: Stories, story: Story, step: Step) -> list[Link]:
    """Every place ``step`` may continue: its gotos and jumps up to the first unconditional one, the
    buttons and follow-ups before that, its ``next`` and ``timeout`` when it can wait, and its retry when it
    expects an entity. A ``handoff`` leads to its ``resume`` story (later, when a person hands back); an
    unconditional one ends the step like a goto, and the step never waits.

    A plain button (no goto/jump) answers like its typed title: a trigger's story when the title is one,
    else the ``next`` step (already a link), else the fallback.
    """
    links: list[Link] = []
    hops_for_sure = False
    handed_over = False  # an unconditional handoff: the step stops there and never waits
    plain: list[tuple[ButtonSpec, tuple[Condition, ...]]] = []
    for action in step.actions:
        if isinstance(action, HandOff):
            target = stories.stories.get(action.resume or "")
            if target is not None:
                links.append(
                    Link("resume", target.id, target.entry, "handed back", action.when, handoff=action)
                )
            if not action.when:
                handed_over = True
                break
            continue
        if isinstance(action, CallApi):
            if action.on_error is not None:
                links.append(Link("goto", story.id, action.on_error, "on_error", action.when, uncertain=True))
            continue
        if isinstance(action, Goto):
            links.append(Link("goto", story.id, action.step, "goto", action.when))
        elif isinstance(action, Jump):
            target = stories.stories.get(action.story)
            if target is not None:
                links.append(Link("jump", target.id, target.entry, "jump", action.when))
        elif isinstance(action, SendMessage):
            for button in action.buttons:
                link = _button_link(stories, story, button, action.when)
                if link is not None:
                    links.append(link)
                elif not button.has_target:
                    plain.append((button, action.when))
            continue
        elif isinstance(action, FollowUp):
            kept = ", kept on reply" if action.keep_on_reply else ""
            label = f"follow-up {action.after.written}{kept}"
            _timer_link(stories, links, "follow_up", action.target, label, action.when)
            continue
        else:
            continue
        if not action.when:
            hops_for_sure = True
            break
    waits = step.next is not None and not hops_for_sure and not handed_over
    timeout = step.timeout
    if timeout is not None and step.waits and not hops_for_sure and not handed_over:
        _timer_link(stories, links, "timeout", timeout.target, f"timeout {timeout.after.written}", ())
    if waits and step.next is not None:
        links.append(Link("next", story.id, step.next, "next"))
        if step.expect != "text":
            links.append(Link("retry", story.id, step.id, f"no {step.expect}: retry"))
    fallback = stories.stories.get(stories.bot.fallback or "")
    for button, when in plain:
        title = button.title.constant
        if title is not None and trigger_target(stories, title) is not None:
            continue  # handled by _button_link
        if not waits and not handed_over and fallback is not None:
            links.append(Link("button", fallback.id, fallback.entry, _title(button), when))
    return links


def step_handoffs(step: Step) -> list[HandOff]:
    """The handoffs of ``step`` that may run: those before its first unconditional goto, jump or handoff,
    and that handoff (what :func:`step_links` follows)."""
    found: list[HandOff] = []
    for action in step.actions:
        if isinstance(action, HandOff):
            found.append(action)
        elif not isinstance(action, (Goto, Jump)):
            continue
        if not action.when:
            break
    return found


def _timer_link(
    stories: Stories,
    links: list[Link],
    kind: LinkKind,
    target: TimerTarget,
    label: str,
    when: tuple[Condition, ...],
) -> None:
    story = stories.stories.get(target.story)
    if story is not None:
        links.append(Link(kind, story.id, target.step or story.entry, label, when))


def _button_link(
    stories: Stories, story: Story, button: ButtonSpec, when: tuple[Condition, ...]
) -> Link | None:
    label = _title(button)
    if button.goto is not None:
        return Link("button", story.id, button.goto, label, when)
    if button.jump is not None:
        target = stories.stories.get(button.jump)
        return Link("button", target.id, target.entry, label, when) if target is not None else None
    title = button.title.constant
    started = trigger_target(stories, title) if title is not None else None
    target = stories.stories.get(started or "")
    return Link("button", target.id, target.entry, label, when) if target is not None else None


def _title(button: ButtonSpec) -> str:
    return button.title.source.strip()


def entry_stories(stories: Stories) -> list[Story]:
    """Stories a message can start with nothing running: those with triggers, and the fallback."""
    fallback = stories.bot.fallback
    return [story for story in stories.stories.values() if story.triggers or story.id == fallback]

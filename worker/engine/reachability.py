"""Steps no conversation can reach: warnings for ``gateway check``, grey nodes on the story map.

A conversation starts at the entry of a story with triggers or of the fallback; from there it follows
the links of :mod:`worker.engine.links`. What is never reached that way is dead weight, usually a typo
in a ``goto`` that happened to name another existing step, or a story nobody wired in.
"""

from __future__ import annotations

from worker.engine.links import entry_stories, step_links
from worker.engine.model import Stories
from worker.engine.problems import Problem

StepKey = tuple[str, str]  # (story id, step id)


def reachable_steps(stories: Stories) -> set[StepKey]:
    """Every (story, step) some sequence of messages can bring a conversation to."""
    pending: list[StepKey] = [(story.id, story.entry) for story in entry_stories(stories)]
    reached: set[StepKey] = set(pending)
    while pending:
        story_id, step_id = pending.pop()
        story = stories.stories[story_id]
        step = story.steps.get(step_id)
        if step is None:
            continue
        for link in step_links(stories, story, step):
            key = (link.story, link.step)
            if key not in reached and link.story in stories.stories:
                reached.add(key)
                pending.append(key)
    return reached


def unreachable_warnings(stories: Stories) -> list[Problem]:
    """One positioned warning per story never started, and per unreached step of the other stories."""
    reached = reachable_steps(stories)
    warnings: list[Problem] = []
    for story in stories.stories.values():
        if (story.id, story.entry) not in reached:
            where = story.where
            warnings.append(
                Problem(
                    where.file, where.line, where.col,
                    f"warning: story {story.id!r} is never started: it has no triggers, it is not the "
                    "fallback, and no jump or button leads to it",
                )
            )  # fmt: skip
            continue
        for step in story.steps.values():
            if (story.id, step.id) not in reached:
                where = step.where
                warnings.append(
                    Problem(
                        where.file, where.line, where.col,
                        f"warning: step {step.id!r} of story {story.id!r} is never reached: no next, goto, "
                        "jump or button leads to it",
                    )
                )  # fmt: skip
    return sorted(warnings, key=lambda p: (p.file, p.line, p.col))

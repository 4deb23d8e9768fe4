"""Find gotos and jumps that loop forever without ever waiting for the user (rejected at load)."""

from __future__ import annotations

from collections.abc import Mapping

from worker.engine.model import CallApi, Goto, HandOff, Jump, Step

StepKey = tuple[str, str]  # (story id, step id)


def _hops(story: str, step: Step, entries: Mapping[str, str]) -> tuple[list[StepKey], StepKey | None]:
    """The steps ``step`` may continue with at once, and the one it surely continues with (if any).

    Every goto/jump up to the first unconditional one may fire; a step with no unconditional
    goto/jump can reach its end, where it waits or ends the story. An unconditional handoff stops the
    step there: what follows (the ``resume`` story) comes later, with another turn.
    """
    possible: list[StepKey] = []
    for action in step.actions:
        if isinstance(action, CallApi):
            if action.on_error is not None:
                possible.append((story, action.on_error))  # only when the call fails: never sure
            continue
        if isinstance(action, HandOff):
            if not action.when:
                return possible, None  # the conversation goes to a person: the step stops here
            continue
        if isinstance(action, Goto):
            target = (story, action.step)
        elif isinstance(action, Jump):
            if action.story not in entries:
                continue
            target = (action.story, entries[action.story])
        else:
            continue
        possible.append(target)
        if not action.when:
            return possible, target
    return possible, None


def endless_loops(steps: Mapping[StepKey, Step], entries: Mapping[str, str]) -> list[list[StepKey]]:
    """Cycles of steps from which every path loops without waiting; each cycle listed once.

    A step *can stop* when it has no unconditional goto/jump, or when one of the steps it may
    continue with can stop. Steps that cannot stop always loop; following their unconditional
    hop from each one finds the cycles.
    """
    hops = {key: _hops(key[0], step, entries) for key, step in steps.items()}
    can_stop = {key for key, (_, sure) in hops.items() if sure is None}
    callers: dict[StepKey, list[StepKey]] = {}
    for key, (possible, _) in hops.items():
        for target in possible:
            callers.setdefault(target, []).append(key)
    pending = list(can_stop)
    while pending:
        reached = pending.pop()
        for caller in callers.get(reached, ()):
            if caller not in can_stop:
                can_stop.add(caller)
                pending.append(caller)
    cycles: list[list[StepKey]] = []
    done: set[StepKey] = set()
    for start in hops:
        if start in can_stop or start in done:
            continue
        path: list[StepKey] = []
        seen: dict[StepKey, int] = {}
        at: StepKey | None = start
        while at is not None and at not in seen and at not in done:
            seen[at] = len(path)
            path.append(at)
            at = hops[at][1] if at in hops else None
        if at is not None and at in seen:
            cycles.append(path[seen[at] :])
        done.update(path)
    return cycles

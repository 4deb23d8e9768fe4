"""Load and validate the stories folder, reporting every problem with its file, line and column.

Validation never stops at the first problem: each file, story, step and action is checked on its own
(the positioned reading is in :mod:`reader`, actions in :mod:`actions`), cross-references (goto, next,
jump, fallback, button targets) once everything is read, then endless goto loops. Templates and
conditions are compiled here, once, so handling a message never parses.
"""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass
from pathlib import Path

from worker.engine.actions import ActionReader, StepContext
from worker.engine.entities import FINDERS, is_region
from worker.engine.graph import StepKey, endless_loops
from worker.engine.model import (
    DEFAULT_RETRY,
    Action,
    Bot,
    Entity,
    SendMessage,
    Step,
    Stories,
    Story,
    Timeout,
    Where,
)
from worker.engine.problems import Problem, StoriesError
from worker.engine.reader import ID, Entries, suggest
from worker.engine.templates import compile_template
from worker.engine.timer_specs import TIMEOUT_KEYS, read_timer
from worker.engine.yaml_source import (
    MappingNode,
    Node,
    ScalarNode,
    Source,
    YamlProblem,
    is_null,
    locate,
    parse,
    scalar_text,
)

FILE_KEYS = ("bot", "stories")
BOT_KEYS = ("session_ttl", "fallback", "phone_region")
STORY_KEYS = ("triggers", "session_ttl", "steps")
STEP_KEYS = ("id", "actions", "next", "expect", "retry", "timeout")


def load_stories(folder: Path | str, emails_dir: Path | str | None = None) -> Stories:
    """Load every ``*.yml``/``*.yaml`` under ``folder``; raises :class:`StoriesError` with all problems.

    ``emails_dir`` holds the files named by ``body_file``/``html_file``; by default the ``emails``
    folder beside ``folder`` (``config/emails`` next to ``config/stories``).
    """
    collecting = gc.isenabled()
    gc.disable()  # loading allocates many small objects that are all kept: collection only costs time
    try:
        folder = Path(folder)
        loader = _Loader(folder, Path(emails_dir) if emails_dir is not None else folder.parent / "emails")
        return loader.load()
    finally:
        if collecting:
            gc.enable()


def story_files(folder: Path) -> list[Path]:
    """The stories files under ``folder``, in a stable order; hidden files and folders are skipped."""
    found = [
        path
        for path in folder.rglob("*")
        if path.suffix in (".yml", ".yaml")
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())


@dataclass(slots=True)
class _StoryDraft:
    id: str
    triggers: tuple[str, ...]
    steps: dict[str, Step]
    entry: str
    ttl: float | None
    where: Where


class _Loader(ActionReader):
    """One load of a stories folder: the files, the bot, stories and steps, then what spans files."""

    def __init__(self, folder: Path, emails_dir: Path) -> None:
        super().__init__(emails_dir)
        self.folder = folder
        self.files: list[str] = []
        self.bot: Bot | None = None
        self.bot_where: Where | None = None
        self.drafts: dict[str, _StoryDraft] = {}
        self.exact: dict[str, tuple[str, Where]] = {}  # case-folded trigger → (story, where)
        self.patterns: list[tuple[re.Pattern[str], str]] = []
        self.hops: dict[StepKey, Where] = {}
        self.default_retry = compile_template(DEFAULT_RETRY)

    # -- the folder -------------------------------------------------------------------------------

    def load(self) -> Stories:
        folder_name = str(self.folder)
        if not self.folder.is_dir():
            raise StoriesError([Problem(folder_name, 1, 1, "no such stories folder")])
        paths = story_files(self.folder)
        if not paths:
            raise StoriesError(
                [Problem(folder_name, 1, 1, "no *.yml or *.yaml stories files in this folder")]
            )
        for path in paths:
            self.read_file(path)
        self.check_story_refs()
        self.check_loops()
        if self.problems:
            raise StoriesError(self.problems)
        return self.build()

    def read_file(self, path: Path) -> None:
        name = str(path)
        self.files.append(name)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self.problems.append(Problem(name, 1, 1, f"cannot read the file: {exc.strerror or exc}"))
            return
        text = self.decode(name, raw)
        if text is None:
            return
        self.source = Source(name, text)
        try:
            root = parse(self.source)
        except YamlProblem as exc:
            self.problems.append(Problem(name, exc.line, exc.col, exc.message))
            return
        if root is None or is_null(root):
            self.problems.append(Problem(name, 1, 1, "the file is empty; expected 'stories:' (and 'bot:')"))
            return
        top = self.entries(root, FILE_KEYS, "the file")
        if top is None:
            return
        if not root.value:
            self.problem(root, "the file has neither 'stories:' nor 'bot:'")
        if "bot" in top:
            self.read_bot(*top["bot"])
        if "stories" in top:
            self.read_stories(top["stories"][1])

    # -- bot and stories --------------------------------------------------------------------------

    def read_bot(self, key_node: ScalarNode, node: Node) -> None:
        if self.bot_where is not None:
            self.problem(key_node, f"'bot:' is defined more than once; the first is at {self.bot_where}")
            return
        self.bot_where = self.where(key_node)
        found = {} if is_null(node) else self.entries(node, BOT_KEYS, "bot")
        if found is None:
            self.bot = Bot()
            return
        ttl = self.duration(found["session_ttl"][1]) if "session_ttl" in found else None
        fallback = None
        if "fallback" in found:
            fallback = self.identifier(found["fallback"][1], "fallback story")
            if fallback is not None:
                self.story_refs.append((fallback, self.where(found["fallback"][1]), "fallback"))
        region = None
        if "phone_region" in found:
            region = self.text(found["phone_region"][1], "phone_region")
            if region is not None and not is_region(region):
                self.problem(
                    found["phone_region"][1], f"unknown phone_region {region!r}; use a code like FR or US"
                )
                region = None
        self.bot = Bot(
            session_ttl=ttl or Bot().session_ttl, fallback=fallback, phone_region=region and region.upper()
        )

    def read_stories(self, node: Node) -> None:
        if is_null(node):
            self.problem(node, "'stories:' is empty")
            return
        found = self.entries(node, None, "stories")
        if found is None:
            return
        for story_id, (key_node, story_node) in found.items():
            if not ID.fullmatch(story_id):
                self.problem(key_node, f"story id {story_id!r} may only use letters, digits, '_' and '-'")
                continue
            draft = self.read_story(story_id, key_node, story_node)
            if story_id in self.drafts:
                first = self.drafts[story_id].where
                self.problem(key_node, f"duplicate story id {story_id!r}; it is already defined at {first}")
            elif draft is not None:
                self.drafts[story_id] = draft

    def read_story(self, story_id: str, key_node: ScalarNode, node: Node) -> _StoryDraft | None:
        what = f"story {story_id!r}"
        found = self.entries(node, STORY_KEYS, what)
        if found is None:
            return None
        where = self.where(key_node)
        triggers = self.read_triggers(story_id, found["triggers"][1]) if "triggers" in found else ()
        ttl = self.duration(found["session_ttl"][1]) if "session_ttl" in found else None
        if "steps" not in found:
            self.problem(key_node, f"{what} has no steps")
            return None
        step_nodes = self.items(found["steps"][1], "steps")
        if step_nodes is None:
            return None
        if not step_nodes:
            self.problem(found["steps"][0], f"{what} has no steps")
            return None
        steps: dict[str, Step] = {}
        step_refs: list[tuple[str, Where]] = []
        entry: str | None = None
        for step_node in step_nodes:
            step = self.read_step(story_id, step_node, steps, step_refs)
            if entry is None and step is not None:
                entry = step.id
        for target, target_where in step_refs:
            if target not in steps:
                self.problem_at(target_where, f"{what} has no step {target!r}{suggest(target, steps)}")
        if entry is None:
            return None
        return _StoryDraft(story_id, triggers, steps, entry, ttl, where)

    def read_triggers(self, story_id: str, node: Node) -> tuple[str, ...]:
        trigger_nodes = self.items(node, "triggers")
        if trigger_nodes is None:
            return ()
        triggers: list[str] = []
        for trigger_node in trigger_nodes:
            trigger = self.text(trigger_node, "a trigger")
            if trigger is None:
                continue
            if trigger.startswith("re:"):
                if self.read_pattern(story_id, trigger_node, trigger):
                    triggers.append(trigger)
                continue
            key = trigger.strip().casefold()
            if not key:
                self.problem(trigger_node, "empty trigger")
                continue
            owner = self.exact.get(key)
            if owner is not None and owner[0] != story_id:
                self.problem(
                    trigger_node, f"trigger {trigger!r} already starts story {owner[0]!r} ({owner[1]})"
                )
                continue
            self.exact.setdefault(key, (story_id, self.where(trigger_node)))
            triggers.append(trigger)
        return tuple(triggers)

    def read_pattern(self, story_id: str, node: Node, trigger: str) -> bool:
        body = trigger[3:]
        lead = len(body) - len(body.lstrip())
        pattern = body.strip()
        if not pattern:
            self.problem(node, "empty regular expression after 're:'")
            return False
        try:
            compiled = re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            line, col = locate(self.source, node, 3 + lead + (exc.pos or 0))
            self.problems.append(Problem(self.source.name, line, col, f"bad regular expression: {exc.msg}"))
            return False
        self.patterns.append((compiled, story_id))
        return True

    def read_step(
        self, story_id: str, node: Node, steps: dict[str, Step], step_refs: list[tuple[str, Where]]
    ) -> Step | None:
        found = self.entries(node, STEP_KEYS, "a step")
        if found is None:
            return None
        if "id" not in found:
            self.problem(node, "a step needs an 'id'")
            return None
        step_id = self.identifier(found["id"][1], "step id")
        if step_id is None:
            return None
        duplicate = step_id in steps
        if duplicate:  # reported, and its contents still checked so that one run shows every problem
            first = steps[step_id].where
            self.problem(
                found["id"][1],
                f"duplicate step id {step_id!r} in story {story_id!r}; the first is at {first}",
            )
        context = StepContext(story_id, step_id, step_refs=step_refs)
        actions: list[Action] = []
        action_nodes = (self.items(found["actions"][1], "actions") if "actions" in found else []) or []
        read: list[tuple[int, Action]] = []
        for index, action_node in enumerate(action_nodes):
            action = self.read_action(action_node, context)
            if action is not None:
                actions.append(action)
                read.append((index, action))
        self.check_hand_over(found, action_nodes, read)
        next_step = None
        if "next" in found:
            next_step = self.identifier(found["next"][1], "next step")
            if next_step is not None:
                step_refs.append((next_step, self.where(found["next"][1])))
        expect: Entity = "text"
        if "expect" in found:
            value = self.text(found["expect"][1], "expect")
            if value is not None and value not in FINDERS:
                self.problem(found["expect"][1], f"expect must be one of {', '.join(FINDERS)}, not {value!r}")
            elif value is not None:
                expect = value  # type: ignore[assignment]
        retry = self.template(found["retry"][1], "retry") if "retry" in found else None
        for key in ("expect", "retry"):
            if key in found and "next" not in found:
                self.problem(found[key][0], f"'{key}' needs a 'next' step to hand the reply to")
        waits = next_step is not None or any(
            button.has_target
            for action in actions
            if isinstance(action, SendMessage)
            for button in action.buttons
        )
        timeout = self.read_timeout(found, context, waits) if "timeout" in found else None
        if duplicate:
            return None
        if context.hop is not None:
            self.hops[(story_id, step_id)] = context.hop
        step = Step(
            id=step_id,
            actions=tuple(actions),
            next=next_step,
            expect=expect,
            retry=retry or self.default_retry,
            where=self.where(node),
            waits=waits,
            timeout=timeout,
        )
        steps[step_id] = step
        return step

    def check_hand_over(
        self, found: Entries, action_nodes: list[Node], read: list[tuple[int, Action]]
    ) -> None:
        """An unconditional ``handoff`` ends its step: no action may follow it, and the step cannot wait
        (no ``next``, no quick replies before it); a conditional one may not run, so it is free."""
        at = next((index for index, node in enumerate(action_nodes) if _hands_over(node)), None)
        if at is None:
            return
        if at + 1 < len(action_nodes):
            self.problem(
                action_nodes[at + 1],
                "actions after an unconditional handoff never run: move them before it, or give the handoff "
                "an 'if' or 'unless'",
            )
        if "next" in found:
            self.problem(
                found["next"][0],
                "'next' is never used: the step hands the conversation to a person (handoff) and does not "
                "wait",
            )
        for index, action in read:
            if index < at and isinstance(action, SendMessage) and action.buttons:
                self.problem(
                    _key_node(action_nodes[index], "quick_replies"),
                    "quick replies before an unconditional handoff are never answered by the bot: the "
                    "conversation goes to a person",
                )

    def read_timeout(self, found: Entries, context: StepContext, waits: bool) -> Timeout | None:
        key_node, node = found["timeout"]
        draft = read_timer(self, node, "timeout", TIMEOUT_KEYS, context.story)
        if draft is None:
            return None
        self.timer_ref(draft.target.story, draft.target.step, draft.target_where, context)
        if not waits:
            waiting = "a 'next', or a button with goto or jump"
            self.problem(key_node, f"'timeout' needs a step that waits for the user ({waiting})")
            return None
        return Timeout(draft.after, draft.target, self.where(key_node))

    # -- across files -----------------------------------------------------------------------------

    def check_story_refs(self) -> None:
        for story_id, where, what in self.story_refs:
            if story_id not in self.drafts:
                self.problem_at(
                    where, f"{what}: there is no story {story_id!r}{suggest(story_id, self.drafts)}"
                )

    def check_loops(self) -> None:
        steps = {(draft.id, step.id): step for draft in self.drafts.values() for step in draft.steps.values()}
        entries = {draft.id: draft.entry for draft in self.drafts.values()}
        for cycle in endless_loops(steps, entries):
            start = min(cycle, key=lambda key: _order(self.hops.get(key)))
            at = cycle.index(start)
            ordered = cycle[at:] + cycle[:at] + [start]
            path = " → ".join(f"{story}.{step}" for story, step in ordered)
            where = self.hops.get(start) or steps[start].where
            self.problem_at(where, f"endless loop of goto/jump that never waits for the user: {path}")

    def build(self) -> Stories:
        bot = self.bot or Bot()
        stories = {
            draft.id: Story(
                id=draft.id,
                triggers=draft.triggers,
                steps=draft.steps,
                entry=draft.entry,
                ttl=draft.ttl if draft.ttl is not None else bot.session_ttl,
                where=draft.where,
            )
            for draft in self.drafts.values()
        }
        return Stories(
            bot=bot,
            stories=stories,
            exact_triggers={key: story for key, (story, _) in self.exact.items()},
            pattern_triggers=tuple(self.patterns),
            buttons=dict(self.buttons),
            files=tuple(self.files),
        )


def _hands_over(node: Node) -> bool:
    """An action written as an unconditional ``handoff`` (valid or not: the step's rules are checked
    all the same, so that one run shows every problem)."""
    keys = {scalar_text(key_node) for key_node, _ in node.value} if isinstance(node, MappingNode) else set()
    return "handoff" in keys and not keys & {"if", "unless"}


def _key_node(node: Node, key: str) -> Node:
    """The node of ``key`` in the mapping ``node`` as written (``node`` itself when it is not there)."""
    if isinstance(node, MappingNode):
        for key_node, _ in node.value:
            if scalar_text(key_node) == key:
                return key_node  # type: ignore[no-any-return]
    return node


def _order(where: Where | None) -> tuple[str, int, int]:
    return (where.file, where.line, where.col) if where is not None else ("", 0, 0)

"""The loaded stories: immutable, validated, with templates and conditions already compiled."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from worker.engine.conditions import Condition
from worker.engine.json_path import SavePath
from worker.engine.templates import Template

Entity = Literal["text", "email", "number", "phone"]
DEFAULT_SESSION_TTL = 1800.0
DEFAULT_RETRY = "Sorry, I didn't get that."


@dataclass(frozen=True, slots=True)
class Where:
    """Where something was written, for tools that point back at the stories (map, test, logs)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class ButtonSpec:
    """A quick reply. ``payload`` is stable across restarts: ``b:<story>:<step>:<n>`` (or a hash if long)."""

    title: Template
    payload: str
    story: str
    goto: str | None = None
    jump: str | None = None

    @property
    def has_target(self) -> bool:
        return self.goto is not None or self.jump is not None


@dataclass(frozen=True, slots=True)
class SendMessage:
    text: Template
    buttons: tuple[ButtonSpec, ...] = ()
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class SendImage:
    url: Template
    caption: Template | None = None
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class SetValues:
    """``set_session`` or ``set_user``; a ``None`` template deletes the name."""

    scope: Literal["session", "user"]
    values: tuple[tuple[str, Template | None], ...]
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class SendEmail:
    to: Template
    subject: Template
    body: Template
    cc: Template | None = None
    reply_to: Template | None = None
    html: Template | None = None  # compiled with escape=True
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class Goto:
    step: str
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class Jump:
    story: str
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class JsonLiteral:
    """A number, ``true``, ``false`` or ``null`` written plainly in an http action's ``json``: sent as is."""

    text: str


@dataclass(frozen=True, slots=True)
class JsonArray:
    items: tuple[JsonBody, ...]


@dataclass(frozen=True, slots=True)
class JsonObject:
    entries: tuple[tuple[Template, JsonBody], ...]


JsonBody = Template | JsonLiteral | JsonArray | JsonObject


@dataclass(frozen=True, slots=True)
class CallApi:
    """An ``http`` action: every string a template; ``host`` is the URL's host when the story writes it."""

    url: Template
    method: str
    headers: tuple[tuple[str, Template], ...]
    json: JsonBody | None
    body: Template | None
    timeout: float
    save_session: tuple[tuple[str, SavePath], ...]
    save_user: tuple[tuple[str, SavePath], ...]
    on_error: str | None
    host: str | None
    where: Where
    when: tuple[Condition, ...] = ()

    @property
    def needs_json(self) -> bool:
        return any(path.needs_json for _, path in (*self.save_session, *self.save_user))


@dataclass(frozen=True, slots=True)
class TimerTarget:
    """Where a timer leads: a step of ``story`` (a ``goto``), or its entry (``step`` None: a ``jump``)."""

    story: str
    step: str | None


@dataclass(frozen=True, slots=True)
class Delay:
    """A timer's ``after``: seconds, and the text as written (for the story map and logs)."""

    seconds: float
    written: str


@dataclass(frozen=True, slots=True)
class Timeout:
    """A waiting step's ``timeout``: entered when the step has waited ``after`` with no message."""

    after: Delay
    target: TimerTarget
    where: Where


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The ``follow_up`` action: ``target`` is entered ``after`` the action ran, unless the user writes
    first (then it is cancelled, unless ``keep_on_reply``)."""

    after: Delay
    target: TimerTarget
    keep_on_reply: bool = False
    when: tuple[Condition, ...] = ()


DEFAULT_HANDOFF_UNTIL = Delay(86400.0, "24h")
_SLACK_CHANNEL = re.compile(r"[CGD][A-Z0-9]+")


def is_slack_channel(text: str) -> bool:
    """A Slack conversation id as a desk's ``to`` names it: ``C0123ABCD`` (or G…, D…), not ``#name``."""
    return _SLACK_CHANNEL.fullmatch(text) is not None


@dataclass(frozen=True, slots=True)
class HandOff:
    """The ``handoff`` action: the conversation goes to a person at ``desk`` (STORIES.md, "Handing over
    to a person") until they hand it back or ``until`` passes with no message of theirs; then ``resume``
    (a story id) starts, the session kept. Later actions of the step do not run and nothing waits."""

    desk: Literal["email", "slack"]
    to: Template  # email: the desk's address; slack: a channel id
    subject: Template | None  # email only; None: "Conversation with <user>"
    summary: Template | None
    until: Delay
    resume: str | None
    where: Where
    when: tuple[Condition, ...] = ()


Action = SendMessage | SendImage | SetValues | SendEmail | Goto | Jump | CallApi | FollowUp | HandOff


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    actions: tuple[Action, ...]
    next: str | None
    expect: Entity
    retry: Template
    where: Where
    waits: bool  # it has a `next` or a button with a target: the conversation waits here
    timeout: Timeout | None = None


@dataclass(frozen=True, slots=True)
class Story:
    id: str
    triggers: tuple[str, ...]
    steps: Mapping[str, Step]  # in file order; the first is the entry
    entry: str
    ttl: float  # its own session_ttl, else the bot's
    where: Where


@dataclass(frozen=True, slots=True)
class Bot:
    session_ttl: float = DEFAULT_SESSION_TTL
    fallback: str | None = None
    phone_region: str | None = None  # extension: region for phone numbers written without +country


@dataclass(frozen=True, slots=True)
class Stories:
    """Everything the engine needs, with the lookup tables precomputed."""

    bot: Bot
    stories: Mapping[str, Story]
    exact_triggers: Mapping[str, str]  # case-folded trigger → story id
    pattern_triggers: tuple[tuple[re.Pattern[str], str], ...]  # in file order
    buttons: Mapping[str, ButtonSpec]  # payload → button
    files: tuple[str, ...] = field(default=())

    @property
    def step_count(self) -> int:
        return sum(len(story.steps) for story in self.stories.values())

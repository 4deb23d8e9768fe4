"""The story engine: a pure function from (session, user, message, now) to what the turn changes.

No I/O and no clock: the worker loads the session and user attributes, calls :meth:`Engine.handle`,
then commits the returned session, attribute changes, replies and email jobs in one step. Output
ids derive from the inbound message id, so handling a redelivered message gives the same ids.

An ``http`` action is the one thing the engine cannot do itself: a turn that reaches a call it has no
answer for stops there and returns the request (``Turn.call``). The worker makes the call and runs the
turn again with one more answer; the engine being deterministic, the run reaches the same point and goes
on. Only the final turn (``call`` None) is committed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.core.schema import Button, EmailJob, Image, Inbound, Reply
from gateway.core.store.base import Session
from worker.engine.calls import (
    MAX_CALLS,
    REDACTED,
    HttpAnswer,
    HttpRequest,
    SecretValues,
    build_request,
    render_url,
)
from worker.engine.conditions import Condition
from worker.engine.entities import FINDERS, clean_address, region_of, split_addresses
from worker.engine.json_path import NotJson, SavePath, find
from worker.engine.model import (
    CallApi,
    FollowUp,
    Goto,
    HandOff,
    Jump,
    SendEmail,
    SendImage,
    SendMessage,
    SetValues,
    Step,
    Stories,
    Story,
    TimerTarget,
    is_slack_channel,
)

MAX_HOPS = 64  # steps entered for one message before a goto/jump loop is cut short
_CONTROLS = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0)])


@dataclass(frozen=True, slots=True)
class Turn:
    """The effects of one message. ``session`` None: there is no session (nothing was ever started)."""

    session: Session | None
    user_changes: dict[str, str | None]
    replies: list[Reply]
    emails: list[EmailJob]
    # Extensions for logs: how the message was handled ("button", "trigger", "next", "retry",
    # "fallback", "broadcast", "timer"), None when nothing matched; and what went wrong without stopping
    # the story.
    route: str | None = None
    warnings: tuple[str, ...] = field(default=())
    # The call the turn waits for: set, the turn is not finished (run it again with the answer).
    call: HttpRequest | None = None
    # The follow_up actions that ran, in order: the worker turns them into pending timers.
    follow_ups: tuple[FollowUp, ...] = field(default=())
    # The handoff action that ended the turn, rendered: the worker hands the conversation over.
    handoff: HandOffOrder | None = None


@dataclass(frozen=True, slots=True)
class HandOffOrder:
    """A ``handoff`` action as it ran: its templates rendered with the turn's values."""

    desk: str  # "email" or "slack"
    to: str  # the desk's address(es) or Slack channel id
    subject: str
    summary: str
    until: float  # seconds without a person's message before the conversation is handed back
    resume: str | None


def _put(values: dict[str, str], name: str, value: str | None) -> None:
    if value is None:
        values.pop(name, None)
    else:
        values[name] = value


def one_line(text: str) -> str:
    """Header-safe text: whitespace runs (CR, LF included) become one space; control characters go."""
    cleaned = " ".join(text.split())
    return cleaned if cleaned.isprintable() else cleaned.translate(_CONTROLS)


class Engine:
    """Runs the stories; immutable, so one instance serves every conversation and every thread."""

    def __init__(self, stories: Stories, secrets: Mapping[str, str] | None = None) -> None:
        self.stories = stories
        self.secrets: Mapping[str, str] = secrets or {}  # @secret.NAME, for http actions only

    def handle(
        self,
        session: Session | None,
        user: Mapping[str, str],
        message: Inbound,
        now: float,
        answers: Sequence[HttpAnswer] = (),
    ) -> Turn:
        """The turn; ``answers`` are those of the turn's http calls so far, in order (see the module)."""
        run = _Run(self.stories, session, user, message, now)
        run.secrets = self.secrets
        run.answers = answers
        try:
            return run.handle()
        except _NeedsAnswer as needed:
            return Turn(session, {}, [], [], warnings=tuple(run.warnings), call=needed.request)

    def resume(
        self,
        session: Session | None,
        user: Mapping[str, str],
        message: Inbound,
        story_id: str,
        now: float,
        answers: Sequence[HttpAnswer] = (),
    ) -> Turn:
        """A person handed the conversation back: start ``story_id`` (a handoff's ``resume``) with the
        session's values kept and ``@message`` empty. A story that no longer exists runs nothing (the
        session is kept, nothing waits)."""
        run = _Run(self.stories, session, user, message, now)
        run.secrets = self.secrets
        run.answers = answers
        run.said = ""
        if session is not None:
            run.values = dict(session.values)
        story = self.stories.stories.get(story_id)
        if story is None:
            run.warnings.append(f"resume story {story_id!r}, which the stories no longer have")
            kept = Session(session.story, None, session.values, (), session.ttl) if session else None
            return run.turn(kept, "resume")
        try:
            return run.run(story, story.entry, "resume")
        except _NeedsAnswer as needed:
            return Turn(session, {}, [], [], warnings=tuple(run.warnings), call=needed.request)

    def fire(
        self,
        session: Session | None,
        user: Mapping[str, str],
        message: Inbound,
        target: TimerTarget,
        now: float,
        answers: Sequence[HttpAnswer] = (),
    ) -> Turn | None:
        """A timer falls due: enter ``target`` with the session (None: an empty one) and ``@message``
        empty. None when the target no longer exists (the stories changed since the timer was set).
        ``answers`` as for :meth:`handle`: a target with http actions stops at each call."""
        story = self.stories.stories.get(target.story)
        step = target.step if target.step is not None else story.entry if story is not None else None
        if story is None or step is None or step not in story.steps:
            return None
        run = _Run(self.stories, session, user, message, now)
        run.secrets = self.secrets
        run.answers = answers
        run.said = ""
        if session is not None:
            run.values = dict(session.values)
        try:
            return run.run(story, step, "timer")
        except _NeedsAnswer as needed:
            return Turn(session, {}, [], [], warnings=tuple(run.warnings), call=needed.request)


class _NeedsAnswer(Exception):
    """Stops a run at a call it has no answer for yet."""

    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request.shown)
        self.request = request


class _Run:
    """The state of handling one message."""

    __slots__ = (
        "answers", "calls", "emails", "follow_ups", "handoff", "message", "now", "offered", "replies", "said",
        "secrets", "session", "stories", "user", "user_changes", "user_copy", "values", "warnings",
    )  # fmt: skip

    def __init__(
        self, stories: Stories, session: Session | None, user: Mapping[str, str], message: Inbound, now: float
    ) -> None:
        self.stories = stories
        self.session = session
        self.user: Mapping[str, str] = user
        self.user_copy: dict[str, str] | None = None
        self.message = message
        self.now = now
        self.said = message.text  # @message
        self.values: dict[str, str] = {}
        self.user_changes: dict[str, str | None] = {}
        self.replies: list[Reply] = []
        self.emails: list[EmailJob] = []
        self.offered: tuple[Button, ...] = ()
        self.warnings: list[str] = []
        self.secrets: Mapping[str, str] = {}
        self.answers: Sequence[HttpAnswer] = ()
        self.calls = 0  # http calls of this turn so far
        self.follow_ups: list[FollowUp] = []
        self.handoff: HandOffOrder | None = None

    # -- which step handles the message -----------------------------------------------------------

    def handle(self) -> Turn:
        stories = self.stories.stories
        session = self.session
        message = self.message
        if message.kind == "broadcast":
            return self.broadcast(message.story or "")
        pressed = message.button
        text = message.text
        if pressed is not None:
            text = pressed.title or text
        if session is not None and session.buttons:
            chosen = self.match_button(session.buttons, text)
            if chosen is not None:
                text = chosen.title
                spec = self.stories.buttons.get(chosen.payload)
                if spec is not None and spec.has_target:
                    self.said = text
                    self.values = dict(session.values)
                    if spec.goto is not None:
                        if spec.story in stories:
                            return self.run(stories[spec.story], spec.goto, "button")
                    elif spec.jump is not None and spec.jump in stories:
                        story = stories[spec.jump]
                        return self.run(story, story.entry, "button")
        self.said = text
        started = self.trigger(text)
        if started is not None:
            return self.run(started, started.entry, "trigger")
        waiting = self.waiting()
        if waiting is not None:
            story, step = waiting
            if step.next is not None and session is not None:
                return self.answer(session, story, step, step.next, text)
        fallback = self.stories.bot.fallback
        if fallback is not None and fallback in stories:
            story = stories[fallback]
            return self.run(story, story.entry, "fallback")
        return self.unhandled()

    def broadcast(self, story_id: str) -> Turn:
        """An operator's broadcast starts the story like a trigger would: a new session, no @message."""
        story = self.stories.stories.get(story_id)
        if story is None:  # the stories changed since the broadcast was asked for
            self.warnings.append(f"broadcast of story {story_id!r}, which the stories no longer have")
            return self.unhandled()
        self.said = ""
        return self.run(story, story.entry, "broadcast")

    def match_button(self, buttons: tuple[Button, ...], text: str) -> Button | None:
        """(1) by payload, by title (trimmed, ignoring case), or by number on SMS."""
        message = self.message
        pressed = message.button
        if pressed is not None:
            for button in buttons:
                if button.payload == pressed.payload:
                    return button
        key = text.strip().casefold()
        if not key:
            return None
        for button in buttons:
            if button.title.strip().casefold() == key:
                return button
        if message.channel == "sms" and key.isascii() and key.isdigit():
            number = int(key)
            if 1 <= number <= len(buttons):
                return buttons[number - 1]
        return None

    def trigger(self, text: str) -> Story | None:
        """(2) equal to a trigger (trimmed, case-folded), else the first ``re:`` trigger found in it."""
        stripped = text.strip()
        story_id = self.stories.exact_triggers.get(stripped.casefold())
        if story_id is None:
            for pattern, candidate in self.stories.pattern_triggers:
                if pattern.search(stripped):
                    story_id = candidate
                    break
            else:
                return None
        return self.stories.stories.get(story_id)

    def waiting(self) -> tuple[Story, Step] | None:
        session = self.session
        if session is None or session.story is None or session.step is None:
            return None
        story = self.stories.stories.get(session.story)
        step = story.steps.get(session.step) if story is not None else None
        if story is None or step is None:
            return None  # the stories changed under a live session: nothing waits any more
        return story, step

    def answer(self, session: Session, story: Story, step: Step, next_step: str, text: str) -> Turn:
        """(3) the waiting step's ``next``, once the reply holds the expected entity."""
        region = None
        if step.expect == "phone":
            region = self.stories.bot.phone_region
            if region is None and self.message.channel == "sms":
                region = region_of(self.message.user)
        value = FINDERS[step.expect](text, region)
        if value is None:
            self.reply(step.retry.render(session.values, self.user, text))
            kept = Session(session.story, session.step, session.values, session.buttons, story.ttl)
            return self.turn(kept, "retry")
        self.values = dict(session.values)
        self.values[step.expect] = value
        return self.run(story, next_step, "next")

    def unhandled(self) -> Turn:
        """(5) nothing: no reply; a live session is kept (any message from the user extends it)."""
        session = self.session
        if session is not None:
            story = self.stories.stories.get(session.story or "")
            ttl = story.ttl if story is not None else self.stories.bot.session_ttl
            if session.ttl != ttl:
                session = Session(session.story, session.step, session.values, session.buttons, ttl)
        return self.turn(session, None)

    # -- running steps ----------------------------------------------------------------------------

    def run(self, story: Story, step_id: str, route: str) -> Turn:
        stories = self.stories.stories
        waiting: Step | None = None
        hops = 0
        while True:
            step = story.steps.get(step_id)
            if step is None:
                self.warnings.append(f"story {story.id!r} has no step {step_id!r}")
                break
            hops += 1
            if hops > MAX_HOPS:
                self.warnings.append(f"stopped after {MAX_HOPS} goto/jump hops at {story.id}.{step.id}")
                break
            for action in step.actions:
                if action.when and not self.holds(action.when):
                    continue
                if isinstance(action, SendMessage):
                    self.send_message(action)
                elif isinstance(action, SetValues):
                    self.set_values(action)
                elif isinstance(action, Goto):
                    step_id = action.step
                    break
                elif isinstance(action, SendEmail):
                    self.send_email(action)
                elif isinstance(action, Jump):
                    target = stories.get(action.story)
                    if target is not None:
                        story = target
                        step_id = story.entry
                        break
                elif isinstance(action, SendImage):
                    self.send_image(action)
                elif isinstance(action, CallApi):
                    on_error = self.call_api(action)
                    if on_error is not None:
                        step_id = on_error
                        break
                elif isinstance(action, FollowUp):
                    self.follow_ups.append(action)
                elif isinstance(action, HandOff):
                    self.handoff = self.hand_off(action)
                    if self.handoff is not None:
                        break
            else:
                if step.waits:
                    waiting = step
                break
            if self.handoff is not None:
                break  # the conversation is a person's now: nothing more runs and nothing waits
        session = Session(
            story=story.id,
            step=waiting.id if waiting is not None else None,
            values=self.values,
            buttons=self.offered if self.handoff is None else (),  # handed over: no button of the bot's waits
            ttl=story.ttl,
        )
        return self.turn(session, route)

    def hand_off(self, action: HandOff) -> HandOffOrder | None:
        """The order for the worker; None (a warning, and the step goes on) when ``to`` renders to no
        desk: no valid address for an email desk, not a channel id for a Slack one."""
        values = self.values
        user = self.user if self.user_copy is None else self.user_copy
        said = self.said
        to = one_line(action.to.render(values, user, said))
        if action.desk == "email":
            to = ", ".join(split_addresses(to))
            if not to:
                self.warnings.append(f"handoff at {action.where} skipped: no valid address in 'to'")
                return None
        elif not is_slack_channel(to.strip()):
            self.warnings.append(f"handoff at {action.where} skipped: {to[:80]!r} is not a Slack channel id")
            return None
        subject = one_line(action.subject.render(values, user, said)) if action.subject is not None else ""
        summary = action.summary.render(values, user, said) if action.summary is not None else ""
        return HandOffOrder(action.desk, to.strip(), subject, summary, action.until.seconds, action.resume)

    def holds(self, conditions: tuple[Condition, ...]) -> bool:
        user = self.user if self.user_copy is None else self.user_copy
        return all(condition.holds(self.values, user, self.said) for condition in conditions)

    def send_message(self, action: SendMessage) -> None:
        values = self.values
        user = self.user if self.user_copy is None else self.user_copy
        said = self.said
        text = action.text.render(values, user, said)
        buttons: tuple[Button, ...] = ()
        if action.buttons:
            made = []
            for spec in action.buttons:
                title = spec.title.render(values, user, said)
                if "\n" in title or "\r" in title:
                    title = one_line(title)
                title = title.strip()
                if title:
                    made.append(Button(title=title, payload=spec.payload))
            buttons = tuple(made)
            if buttons:
                self.offered = buttons  # the last buttons sent are the ones the next message can press
        if text or buttons:
            self.reply(text, buttons)

    def send_image(self, action: SendImage) -> None:
        user = self.user if self.user_copy is None else self.user_copy
        url = one_line(action.url.render(self.values, user, self.said))
        if not url.lower().startswith(("http://", "https://")):
            self.warnings.append(f"image skipped: {url[:80]!r} is not an http(s) URL")
            return
        caption = action.caption.render(self.values, user, self.said) if action.caption is not None else ""
        self.reply("", image=Image(url=url, caption=caption or None))

    def set_values(self, action: SetValues) -> None:
        said = self.said
        if action.scope == "session":
            values = self.values
            user = self.user if self.user_copy is None else self.user_copy
            for name, template in action.values:
                if template is None:
                    values.pop(name, None)
                else:
                    values[name] = template.render(values, user, said)
            return
        if self.user_copy is None:
            self.user_copy = dict(self.user)
        copy = self.user_copy
        changes = self.user_changes
        for name, template in action.values:
            if template is None:
                copy.pop(name, None)
                changes[name] = None
            else:
                value = template.render(self.values, copy, said)
                copy[name] = value
                changes[name] = value

    def send_email(self, action: SendEmail) -> None:
        values = self.values
        user = self.user if self.user_copy is None else self.user_copy
        said = self.said
        to = split_addresses(one_line(action.to.render(values, user, said)))
        if not to:
            self.warnings.append("email skipped: no valid address in 'to'")
            return
        cc = split_addresses(one_line(action.cc.render(values, user, said))) if action.cc is not None else []
        reply_to = None
        if action.reply_to is not None:
            reply_to = clean_address(one_line(action.reply_to.render(values, user, said)))
        message = self.message
        self.emails.append(
            EmailJob(
                id=f"{message.id}/e{len(self.emails)}",
                to=tuple(to),
                cc=tuple(address for address in cc if address not in to),
                reply_to=reply_to,
                subject=one_line(action.subject.render(values, user, said)),
                text=action.body.render(values, user, said),
                html=action.html.render(values, user, said) if action.html is not None else None,
                channel=message.channel,
                chat=message.chat,
                user=message.user,
                created_at=self.now,
            )
        )

    def call_api(self, action: CallApi) -> str | None:
        """Use the answer of this call, or stop the run for it; the ``on_error`` step when it failed."""
        user = self.user if self.user_copy is None else self.user_copy
        if self.calls >= MAX_CALLS:
            answer = HttpAnswer.failed("too many calls")
        else:
            scope = SecretValues(self.values, self.secrets)
            url = render_url(action.url, scope, user, self.said)
            if url is None:
                answer = HttpAnswer.failed("bad URL")
                self.warnings.append(f"http at {action.where}: the url does not render to an http(s) URL")
            elif self.calls < len(self.answers):  # made before this run: the same request, not built again
                answer = self.answers[self.calls]
                self.calls += 1
            else:
                key = f"{self.message.id}/h{self.calls}"
                raise _NeedsAnswer(build_request(action, url, scope, user, self.said, key))
        return self.use_answer(action, answer)

    def use_answer(self, action: CallApi, answer: HttpAnswer) -> str | None:
        error = answer.error
        document: object = None
        if error is None and action.needs_json:
            try:
                document = answer.document()
            except NotJson:
                error = "not JSON"
        if error is not None:
            self.values["http_error"] = error
            return action.on_error
        self.values.pop("http_error", None)
        for name, path in action.save_session:
            _put(self.values, name, self.picked(document, path, answer.status))
        if action.save_user:
            if self.user_copy is None:
                self.user_copy = dict(self.user)
            for name, path in action.save_user:
                value = self.picked(document, path, answer.status)
                _put(self.user_copy, name, value)
                self.user_changes[name] = value
        return None

    def picked(self, document: object, path: SavePath, status: int) -> str | None:
        """What ``path`` finds to save (None: nothing); a secret the API echoed is replaced by ***."""
        try:
            value = find(document, path, status)
        except NotJson:  # an object nested too deep to write back as text
            return None
        if value is not None:
            for secret in self.secrets.values():
                if secret and secret in value:
                    value = value.replace(secret, REDACTED)
        return value

    # -- output -----------------------------------------------------------------------------------

    def reply(self, text: str, buttons: tuple[Button, ...] = (), image: Image | None = None) -> None:
        message = self.message
        self.replies.append(
            Reply(
                id=f"{message.id}/r{len(self.replies)}",
                in_reply_to=message.id,
                channel=message.channel,
                chat=message.chat,
                user=message.user,
                text=text,
                image=image,
                buttons=buttons,
                meta=message.meta,
                created_at=self.now,
            )
        )

    def turn(self, session: Session | None, route: str | None) -> Turn:
        return Turn(
            session, self.user_changes, self.replies, self.emails, route, tuple(self.warnings),
            follow_ups=tuple(self.follow_ups), handoff=self.handoff,
        )  # fmt: skip

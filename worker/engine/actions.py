"""Read one action of a step: message (with quick replies), image, set_session/set_user, email, goto, jump,
http (in :mod:`worker.engine.http_reader`), follow_up, handoff (in :mod:`worker.engine.handoff_reader`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from worker.engine.conditions import Condition
from worker.engine.entities import clean_address
from worker.engine.handoff_reader import read_handoff
from worker.engine.http_reader import HttpActionReader
from worker.engine.model import (
    Action,
    ButtonSpec,
    FollowUp,
    Goto,
    Jump,
    SendEmail,
    SendImage,
    SendMessage,
    SetValues,
    Where,
)
from worker.engine.problems import Problem
from worker.engine.reader import ID, Entries
from worker.engine.templates import Template, TemplateError, compile_template
from worker.engine.timer_specs import FOLLOW_UP_KEYS, read_flag, read_timer
from worker.engine.yaml_source import MappingNode, Node, Source, is_null

ACTION_KINDS = (
    "message", "image", "set_session", "set_user", "email", "goto", "jump", "http", "follow_up", "handoff",
)  # fmt: skip
ACTION_EXTRAS = {"message": ("quick_replies",), "image": ("caption",)}
ACTION_KEYS = (*ACTION_KINDS, "quick_replies", "caption", "if", "unless")
EMAIL_KEYS = ("to", "subject", "body", "body_file", "cc", "reply_to", "html", "html_file")
BUTTON_KEYS = ("title", "goto", "jump")
MAX_PAYLOAD_BYTES = 64  # Telegram's callback_data limit


@dataclass(slots=True)
class StepContext:
    """Where an action is, and what it leaves for its story to check (goto targets, the sure hop)."""

    story: str
    step: str
    buttons: int = 0
    step_refs: list[tuple[str, Where]] = field(default_factory=list)
    hop: Where | None = None  # the first unconditional goto/jump of the step


class ActionReader(HttpActionReader):
    """Reads actions; collects story references (checked once every file is read) and button payloads."""

    def __init__(self, emails_dir: Path) -> None:
        super().__init__()
        self.emails_dir = emails_dir
        self.story_refs: list[tuple[str, Where, str]] = []  # (story id, where, what refers to it)
        self.buttons: dict[str, ButtonSpec] = {}
        self.email_files: dict[tuple[Path, bool], Template] = {}

    def read_action(self, node: Node, context: StepContext) -> Action | None:
        found = self.entries(node, ACTION_KEYS, "an action")
        if found is None:
            return None
        kinds = [key for key in found if key in ACTION_KINDS]
        if not kinds:
            self.problem(node, f"an action needs one of {', '.join(ACTION_KINDS)}")
            return None
        kind = kinds[0]
        for extra in kinds[1:]:
            self.problem(found[extra][0], f"an action has exactly one of {', '.join(ACTION_KINDS)}; "
                         f"this one has both {kind!r} and {extra!r} (start a new '- ' item)")  # fmt: skip
        for key, (key_node, _) in found.items():
            if key in ("quick_replies", "caption") and key not in ACTION_EXTRAS.get(kind, ()):
                owner = "a 'message'" if key == "quick_replies" else "an 'image'"
                self.problem(key_node, f"'{key}' belongs to {owner} action, not to '{kind}'")
        when: list[Condition] = []
        for key, negate in (("if", False), ("unless", True)):
            if key in found:
                condition = self.condition(found[key][1], negate)
                if condition is not None:
                    when.append(condition)
        conditions = tuple(when)
        value_node = found[kind][1]
        if kind == "message":
            return self.read_message(value_node, found, context, conditions)
        if kind == "image":
            return self.read_image(value_node, found, conditions)
        if kind in ("set_session", "set_user"):
            return self.read_set(kind, value_node, conditions)
        if kind == "email":
            return self.read_email(value_node, conditions)
        if kind == "http":
            return self.read_http(value_node, context.step_refs, conditions)
        if kind == "follow_up":
            return self.read_follow_up(value_node, context, conditions)
        if kind == "handoff":
            return read_handoff(self, value_node, self.story_refs, conditions)
        target_where = self.where(value_node)
        if kind == "goto":
            step = self.identifier(value_node, "goto step")
            if step is None:
                return None
            context.step_refs.append((step, target_where))
            if not conditions and context.hop is None:
                context.hop = target_where
            return Goto(step, conditions)
        story = self.identifier(value_node, "jump story")
        if story is None:
            return None
        self.story_refs.append((story, target_where, "jump"))
        if not conditions and context.hop is None:
            context.hop = target_where
        return Jump(story, conditions)

    def read_follow_up(
        self, node: Node, context: StepContext, when: tuple[Condition, ...]
    ) -> FollowUp | None:
        draft = read_timer(self, node, "follow_up", FOLLOW_UP_KEYS, context.story)
        if draft is None:
            return None
        keep = False
        if "keep_on_reply" in draft.entries:
            flag = read_flag(self, draft.entries["keep_on_reply"][1], "keep_on_reply")
            if flag is None:
                return None
            keep = flag
        self.timer_ref(draft.target.story, draft.target.step, draft.target_where, context)
        return FollowUp(draft.after, draft.target, keep, when)

    def timer_ref(self, story: str, step: str | None, where: Where, context: StepContext) -> None:
        """A timer's target, checked once its story (a goto) or every file (a jump) is read."""
        if step is not None:
            context.step_refs.append((step, where))
        else:
            self.story_refs.append((story, where, "jump"))

    def read_message(
        self, node: Node, found: Entries, context: StepContext, when: tuple[Condition, ...]
    ) -> SendMessage | None:
        text = self.template(node, "message")
        buttons: list[ButtonSpec] = []
        if "quick_replies" in found:
            for button_node in self.items(found["quick_replies"][1], "quick_replies") or ():
                button = self.read_button(button_node, context)
                if button is not None:
                    buttons.append(button)
        if text is None:
            return None
        return SendMessage(text, tuple(buttons), when)

    def read_button(self, node: Node, context: StepContext) -> ButtonSpec | None:
        index = context.buttons
        context.buttons += 1
        goto = jump = None
        if isinstance(node, MappingNode):
            found = self.entries(node, BUTTON_KEYS, "a quick reply")
            if found is None:
                return None
            if "title" not in found:
                self.problem(node, "a quick reply needs a 'title'")
                return None
            title_node = found["title"][1]
            if "goto" in found and "jump" in found:
                self.problem(found["jump"][0], "a quick reply has either 'goto' or 'jump', not both")
            elif "goto" in found:
                goto = self.identifier(found["goto"][1], "goto step")
                if goto is not None:
                    context.step_refs.append((goto, self.where(found["goto"][1])))
            elif "jump" in found:
                jump = self.identifier(found["jump"][1], "jump story")
                if jump is not None:
                    self.story_refs.append((jump, self.where(found["jump"][1]), "jump"))
        else:
            title_node = node
        title = self.template(title_node, "a quick reply title")
        if title is None:
            return None
        payload = button_payload(context.story, context.step, index)
        button = ButtonSpec(title=title, payload=payload, story=context.story, goto=goto, jump=jump)
        self.buttons[payload] = button
        return button

    def read_image(self, node: Node, found: Entries, when: tuple[Condition, ...]) -> SendImage | None:
        url = self.template(node, "image")
        caption = self.template(found["caption"][1], "caption") if "caption" in found else None
        if url is None:
            return None
        if url.constant is not None and not url.constant.strip().lower().startswith(("http://", "https://")):
            self.problem(node, "image must be an http:// or https:// URL")
            return None
        return SendImage(url, caption, when)

    def read_set(self, kind: str, node: Node, when: tuple[Condition, ...]) -> SetValues | None:
        found = self.entries(node, None, kind)
        if found is None:
            return None
        if not found:
            self.problem(node, f"{kind} needs at least one NAME: value")
            return None
        values: list[tuple[str, Template | None]] = []
        for name, (key_node, value_node) in found.items():
            if not ID.fullmatch(name):
                self.problem(key_node, f"name {name!r} may only use letters, digits, '_' and '-'")
                continue
            if is_null(value_node):
                values.append((name, None))
                continue
            template = self.template(value_node, f"{kind}.{name}")
            if template is not None:
                values.append((name, template))
        return SetValues("session" if kind == "set_session" else "user", tuple(values), when)

    def read_email(self, node: Node, when: tuple[Condition, ...]) -> SendEmail | None:
        found = self.entries(node, EMAIL_KEYS, "email")
        if found is None:
            return None
        complete = True
        for required in ("to", "subject"):
            if required not in found:
                self.problem(node, f"email needs '{required}'")
                complete = False
        for inline, from_file, needed in (("body", "body_file", True), ("html", "html_file", False)):
            if inline in found and from_file in found:
                self.problem(found[from_file][0], f"email has both '{inline}' and '{from_file}'; keep one")
                complete = False
            elif needed and inline not in found and from_file not in found:
                self.problem(node, "email needs 'body' (or 'body_file')")
                complete = False
        to = self.addresses(found, "to", single=False)
        cc = self.addresses(found, "cc", single=False)
        reply_to = self.addresses(found, "reply_to", single=True)
        subject = self.template(found["subject"][1], "email subject") if "subject" in found else None
        body = self.email_body(found, "body", escape=False)
        html = self.email_body(found, "html", escape=True)
        if not complete or to is None or subject is None or body is None:
            return None
        if ("cc" in found and cc is None) or ("reply_to" in found and reply_to is None):
            return None
        if ("html" in found or "html_file" in found) and html is None:
            return None
        return SendEmail(to=to, subject=subject, body=body, cc=cc, reply_to=reply_to, html=html, when=when)

    def addresses(self, found: Entries, key: str, single: bool) -> Template | None:
        if key not in found:
            return None
        node = found[key][1]
        template = self.template(node, f"email {key}")
        if template is None or template.constant is None:
            return template
        parts = [template.constant] if single else template.constant.split(",")
        valid = True
        for part in parts:
            if clean_address(part) is None:
                self.problem(node, f"email {key}: {part.strip()!r} is not an email address")
                valid = False
        return template if valid else None

    def email_body(self, found: Entries, key: str, escape: bool) -> Template | None:
        if key in found:
            return self.template(found[key][1], f"email {key}", escape)
        file_key = f"{key}_file"
        if file_key not in found:
            return None
        node = found[file_key][1]
        name = self.text(node, file_key)
        if name is None:
            return None
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not name.strip():
            self.problem(node, f"{file_key} must name a file inside the emails folder {self.emails_dir}")
            return None
        path = self.emails_dir / relative
        cache_key = (path, escape)
        compiled = self.email_files.get(cache_key)
        if compiled is None:
            compiled = self.read_email_file(node, path, file_key, escape)
            if compiled is not None:  # a failure is reported again at each place that names the file
                self.email_files[cache_key] = compiled
        return compiled

    def read_email_file(self, node: Node, path: Path, file_key: str, escape: bool) -> Template | None:
        try:
            raw = path.read_bytes()
        except OSError:
            self.problem(node, f"{file_key}: no such file {str(path)!r}")
            return None
        text = self.decode(str(path), raw)
        if text is None:
            return None
        try:
            return compile_template(text, escape)
        except TemplateError as exc:
            line, col = Source(str(path), text).line_col(exc.offset)
            self.problems.append(Problem(str(path), line, col, f"bad template: {exc.message}"))
            return None


def button_payload(story: str, step: str, index: int) -> str:
    """``b:<story>:<step>:<n>``; a hash when that would not fit a Telegram callback (64 bytes)."""
    payload = f"b:{story}:{step}:{index}"
    if len(payload.encode()) <= MAX_PAYLOAD_BYTES:
        return payload
    return "b:" + hashlib.sha256(payload.encode()).hexdigest()[:32]

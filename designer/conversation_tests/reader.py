"""Read conversation test files (format: docs/testing.md) with a positioned problem for each mistake.

Built on the stories loader's positioned reader, so a broken test file is reported the way ``gateway
check`` reports a broken story: ``FILE:LINE:COL: message``, every problem at once, never a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

from designer.conversation_tests.canned import CannedReader
from designer.conversation_tests.model import (
    AgentSays,
    ConversationFile,
    ConversationTest,
    ExpectDesk,
    ExpectEmail,
    ExpectImage,
    ExpectReply,
    HandBack,
    Item,
    Press,
    Say,
    TextMatch,
    Wait,
)
from gateway.core.durations import parse_duration
from worker.engine.model import Where
from worker.engine.problems import Problem
from worker.engine.reader import Entries
from worker.engine.yaml_source import (
    Node,
    ScalarNode,
    SequenceNode,
    Source,
    YamlProblem,
    is_null,
    locate,
    parse,
    scalar_text,
)

FILE_KEYS = ("tests",)
TEST_KEYS = ("name", "channel", "user_id", "user_attributes", "http", "conversation")
ITEM_KINDS = ("user", "press", "bot", "image", "email", "wait", "agent", "desk")
ITEM_EXTRAS = {"bot": ("buttons",), "image": ("caption",)}
ITEM_KEYS = (*ITEM_KINDS, "buttons", "caption")
EMAIL_KEYS = ("to", "cc", "reply_to", "subject", "body_contains", "html_contains")
SESSION_EXPIRES = "session_expires"
HAND_BACK = "hand_back"
BARE_LINES = (SESSION_EXPIRES, HAND_BACK)
CHANNEL = re.compile(r"[A-Za-z0-9_-]{1,64}")
USER_ID = re.compile(r"[^\s\x00-\x1f\x7f]{1,256}")

DEFAULT_CHANNEL = "test"
DEFAULT_USER = "tester"


def read_test_file(path: Path) -> tuple[ConversationFile, list[Problem]]:
    """The tests of one file, and its problems (a file with problems should not be run)."""
    reader = _TestReader()
    tests = reader.read(path)
    return ConversationFile(str(path), tuple(tests)), sorted(reader.problems)


class _TestReader(CannedReader):
    def read(self, path: Path) -> list[ConversationTest]:
        name = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self.problems.append(Problem(name, 1, 1, f"cannot read the file: {exc.strerror or exc}"))
            return []
        text = self.decode(name, raw)
        if text is None:
            return []
        self.source = Source(name, text)
        try:
            root = parse(self.source)
        except YamlProblem as exc:
            self.problems.append(Problem(name, exc.line, exc.col, exc.message))
            return []
        if root is None or is_null(root):
            self.problems.append(Problem(name, 1, 1, "the file is empty; expected 'tests:'"))
            return []
        top = self.entries(root, FILE_KEYS, "a test file")
        if top is None:
            return []
        if "tests" not in top:
            self.problem(root, "a test file needs 'tests:', a list of tests")
            return []
        test_nodes = self.items(top["tests"][1], "tests")
        if not test_nodes:
            if test_nodes is not None:
                self.problem(top["tests"][0], "'tests:' is empty")
            return []
        tests: list[ConversationTest] = []
        names: dict[str, str] = {}
        for node in test_nodes:
            test = self.read_test(node)
            if test is None:
                continue
            if test.name in names:
                self.problem(node, f"duplicate test name {test.name!r}; the first is at {names[test.name]}")
                continue
            names[test.name] = str(test.where)
            tests.append(test)
        return tests

    def read_test(self, node: Node) -> ConversationTest | None:
        found = self.entries(node, TEST_KEYS, "a test")
        if found is None:
            return None
        ok = True
        for required in ("name", "conversation"):
            if required not in found:
                self.problem(node, f"a test needs '{required}'")
                ok = False
        name = self.text(found["name"][1], "name") if "name" in found else None
        channel = self.word(found, "channel", DEFAULT_CHANNEL, CHANNEL, "letters, digits, '_' and '-'")
        user = self.word(found, "user_id", DEFAULT_USER, USER_ID, "1 to 256 characters, no spaces")
        attributes: dict[str, str] = {}
        if "user_attributes" in found:
            entries = self.entries(found["user_attributes"][1], None, "user_attributes")
            for key, (_, value_node) in (entries or {}).items():
                value = self.text(value_node, f"user attribute {key!r}")
                if value is not None:
                    attributes[key] = value
        canned = self.read_canned(found["http"][1]) if "http" in found else ()
        items: list[Item] = []
        if "conversation" in found:
            problems_before = len(self.problems)
            item_nodes = self.items(found["conversation"][1], "conversation")
            if item_nodes == []:
                self.problem(found["conversation"][0], "the conversation is empty")
            for item_node in item_nodes or ():
                item = self.read_item(item_node)
                if item is not None:
                    items.append(item)
            clean = len(self.problems) == problems_before
            if items and clean and not any(isinstance(item, (Say, Press)) for item in items):
                self.problem(found["conversation"][0], "the conversation has no 'user:' or 'press:' line")
        if not ok or name is None or channel is None or user is None or canned is None:
            return None
        return ConversationTest(name, channel, user, attributes, tuple(items), self.where(node), canned)

    def word(self, found: Entries, key: str, default: str, rule: re.Pattern[str], says: str) -> str | None:
        if key not in found:
            return default
        value = self.text(found[key][1], key)
        if value is not None and not rule.fullmatch(value):
            self.problem(found[key][1], f"{key} {value!r}: use {says}")
            return None
        return value

    # -- conversation items -----------------------------------------------------------------------

    def read_item(self, node: Node) -> Item | None:
        if isinstance(node, ScalarNode):
            if scalar_text(node) == SESSION_EXPIRES:
                return Wait(None, self.where(node))
            if scalar_text(node) == HAND_BACK:
                return HandBack(self.where(node))
            written = (scalar_text(node) or "").strip().lower().replace(" ", "_").replace("-", "_")
            hint = f" (did you mean '{written}'?)" if written in BARE_LINES else ""
            self.problem(
                node,
                f"a conversation line is 'KEY: value' ({', '.join(ITEM_KINDS)}), "
                f"'{SESSION_EXPIRES}' or '{HAND_BACK}'{hint}",
            )
            return None
        found = self.entries(node, ITEM_KEYS, "a conversation line")
        if found is None:
            return None
        kinds = [key for key in found if key in ITEM_KINDS]
        if not kinds:
            if found or not node.value:  # (keys that are all unknown were reported already)
                self.problem(node, f"a conversation line needs one of {', '.join(ITEM_KINDS)}")
            return None
        kind = kinds[0]
        for extra in kinds[1:]:
            self.problem(
                found[extra][0],
                f"a conversation line has only one of {', '.join(ITEM_KINDS)}; this one has both "
                f"{kind!r} and {extra!r} (start a new '- ' item)",
            )
            return None
        for key, (key_node, _) in found.items():
            if key in ("buttons", "caption") and key not in ITEM_EXTRAS.get(kind, ()):
                owner = "a 'bot:' line" if key == "buttons" else "an 'image:' line"
                self.problem(key_node, f"'{key}' belongs to {owner}, not to '{kind}:'")
                return None
        key_node, value = found[kind]
        where = self.where(key_node)
        if kind in ("user", "press"):
            text = self.text(value, kind)
            if text is None:
                return None
            return Say(text, where) if kind == "user" else Press(text, where)
        if kind == "wait":
            return self.read_wait(value, where)
        if kind == "agent":
            return self.read_agent(value, where)
        if kind == "desk":
            desk = self.match(value, "desk")
            return ExpectDesk(desk, where) if desk is not None else None
        if kind == "bot":
            match = self.match(value, "bot")
            buttons = self.read_buttons(found["buttons"][1]) if "buttons" in found else None
            if match is None or ("buttons" in found and buttons is None):
                return None
            return ExpectReply(match, buttons, where)
        if kind == "image":
            url = self.match(value, "image")
            caption = self.match(found["caption"][1], "caption") if "caption" in found else None
            if url is None or ("caption" in found and caption is None):
                return None
            return ExpectImage(url, caption, where)
        return self.read_email(value, where)

    def read_wait(self, node: Node, where: Where) -> Wait | None:
        value = self.text(node, "wait")
        if value is None:
            return None
        if value == SESSION_EXPIRES:
            return Wait(None, where)
        try:
            seconds = parse_duration(value)
        except ValueError:
            self.problem(node, f"bad duration {value!r}: use a number with s, m, h or d, such as 10m")
            return None
        return Wait(seconds, where)

    def read_agent(self, node: Node, where: Where) -> AgentSays | None:
        if is_null(node):  # `agent: #bot` unquoted: YAML reads a comment there, and the line is empty
            self.problem(
                node,
                'agent: needs the person\'s answer; to hand back write agent: "#bot" (quoted: an unquoted '
                f"# starts a YAML comment) or a '{HAND_BACK}' line",
            )
            return None
        text = self.text(node, "agent")
        return AgentSays(text, where) if text is not None else None

    def read_buttons(self, node: Node) -> tuple[TextMatch, ...] | None:
        nodes = self.items(node, "buttons")
        if nodes is None:
            return None
        titles = [self.match(title_node, "a button title") for title_node in nodes]
        if any(title is None for title in titles):
            return None
        return tuple(title for title in titles if title is not None)

    def read_email(self, node: Node, where: Where) -> ExpectEmail | None:
        found = self.entries(node, EMAIL_KEYS, "email")
        if found is None:
            return None
        if not found:
            self.problem(node, f"email needs at least one of {', '.join(EMAIL_KEYS)}")
            return None
        ok = True
        fields: dict[str, tuple[str, ...] | None] = {}
        for key in ("to", "cc", "body_contains", "html_contains"):
            if key in found:
                texts = self.texts(found[key][1], f"email {key}")
                ok = ok and texts is not None
                if key in ("to", "cc") and texts is not None:
                    texts = tuple(address.strip().lower() for text in texts for address in text.split(","))
                fields[key] = texts
        reply_to = self.text(found["reply_to"][1], "email reply_to") if "reply_to" in found else None
        subject = self.match(found["subject"][1], "email subject") if "subject" in found else None
        if not ok or ("reply_to" in found and reply_to is None) or ("subject" in found and subject is None):
            return None
        return ExpectEmail(
            where=where,
            lines={key: self.where(key_node) for key, (key_node, _) in found.items()},
            to=fields.get("to"),
            cc=fields.get("cc"),
            reply_to=reply_to.strip().lower() if reply_to is not None else None,
            subject=subject,
            body_contains=fields.get("body_contains") or (),
            html_contains=fields.get("html_contains") or (),
        )

    # -- values -----------------------------------------------------------------------------------

    def texts(self, node: Node, what: str) -> tuple[str, ...] | None:
        """One text, or a list of texts."""
        if isinstance(node, SequenceNode):
            values = [self.text(item, what) for item in node.value]
            if any(value is None for value in values):
                return None
            return tuple(value for value in values if value is not None)
        value = self.text(node, what)
        return (value,) if value is not None else None

    def match(self, node: Node, what: str) -> TextMatch | None:
        """Exact text, or ``re:`` and a Python regular expression (its errors positioned in the file)."""
        value = self.text(node, what)
        if value is None:
            return None
        if not value.startswith("re:"):
            return TextMatch(value)
        body = value[3:]
        lead = len(body) - len(body.lstrip())
        pattern = body.strip()
        if not pattern:
            self.problem(node, "empty regular expression after 're:'")
            return None
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            line, col = locate(self.source, node, 3 + lead + (exc.pos or 0))
            self.problems.append(Problem(self.source.name, line, col, f"bad regular expression: {exc.msg}"))
            return None
        return TextMatch(value, compiled)

"""A conversation test as read from its file: what the user does and what the bot must answer.

Every item keeps the line it was written on, so a failure points back at the expectation that failed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from worker.engine.calls import HttpRequest
from worker.engine.model import Where
from worker.http.canned import Canned


@dataclass(frozen=True, slots=True)
class TextMatch:
    """Exact text (surrounding whitespace ignored), or ``re:`` and a regular expression found in it."""

    written: str
    pattern: re.Pattern[str] | None = None

    def matches(self, text: str) -> bool:
        if self.pattern is not None:
            return self.pattern.search(text) is not None
        return text.strip() == self.written.strip()

    def __str__(self) -> str:
        return self.written if self.pattern is not None else repr(self.written.strip())

    @property
    def plain(self) -> str:
        """Unquoted, as in a list of button titles."""
        return self.written if self.pattern is not None else self.written.strip()


@dataclass(frozen=True, slots=True)
class Say:
    """The user sends ``text``."""

    text: str
    where: Where


@dataclass(frozen=True, slots=True)
class Press:
    """The user presses the button titled ``title`` among the buttons last offered."""

    title: str
    where: Where


@dataclass(frozen=True, slots=True)
class Wait:
    """Simulated time passes; ``seconds`` None: just past the TTL of the session now open."""

    seconds: float | None
    where: Where


@dataclass(frozen=True, slots=True)
class AgentSays:
    """A person answers from the support desk of the handed-over conversation (``#bot`` alone on a line
    of ``text`` hands back)."""

    text: str
    where: Where


@dataclass(frozen=True, slots=True)
class HandBack:
    """The desk's "Hand back" button is pressed."""

    where: Where


@dataclass(frozen=True, slots=True)
class ExpectReply:
    """The next reply's text; ``buttons`` None: not checked, () : none."""

    text: TextMatch
    buttons: tuple[TextMatch, ...] | None
    where: Where


@dataclass(frozen=True, slots=True)
class ExpectImage:
    url: TextMatch
    caption: TextMatch | None
    where: Where


@dataclass(frozen=True, slots=True)
class ExpectEmail:
    """The next email sent; each field present is checked, ``body_contains`` are substrings."""

    where: Where
    to: tuple[str, ...] | None = None
    cc: tuple[str, ...] | None = None
    reply_to: str | None = None
    subject: TextMatch | None = None
    body_contains: tuple[str, ...] = ()
    html_contains: tuple[str, ...] = ()
    lines: Mapping[str, Where] = field(default_factory=dict)  # where each field was written

    def line_of(self, key: str) -> Where:
        return self.lines.get(key, self.where)


@dataclass(frozen=True, slots=True)
class ExpectDesk:
    """The next message the support desk got (a ticket email, a Slack desk post) contains ``text``:
    plain text is a substring, ``re:`` is searched."""

    text: TextMatch
    where: Where

    def found_in(self, text: str) -> bool:
        if self.text.pattern is not None:
            return self.text.matches(text)
        return self.text.written.strip() in text


@dataclass(frozen=True, slots=True)
class CannedAnswer:
    """What an API answers, in a test, to the calls whose URL (and method, when given) match."""

    url: TextMatch  # exact: compared with the URL as sent (normalised, percent-encoded)
    method: str | None
    status: int
    body: bytes
    error: str | None
    where: Where

    def matches(self, request: HttpRequest) -> bool:
        if self.method is not None and request.method != self.method:
            return False
        if self.url.pattern is not None:
            return self.url.matches(request.url)
        return request.url == self.url.written

    def canned(self) -> Canned:
        return Canned(self.matches, self.status, self.body, self.error)


Action = Say | Press | Wait | AgentSays | HandBack
Expectation = ExpectReply | ExpectImage | ExpectEmail | ExpectDesk
Item = Action | Expectation


@dataclass(frozen=True, slots=True)
class ConversationTest:
    name: str
    channel: str
    user: str
    user_attributes: Mapping[str, str]
    items: tuple[Item, ...]
    where: Where
    http: tuple[CannedAnswer, ...] = ()  # what the APIs the stories call answer in this test


@dataclass(frozen=True, slots=True)
class ConversationFile:
    path: str
    tests: tuple[ConversationTest, ...] = field(default=())

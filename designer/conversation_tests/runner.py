"""Play one conversation test through an in-process gateway and check every expectation in order.

Replies and emails are consumed in the order the bot produced them. The check is strict: a reply or an
email the test does not expect fails the test too (at the user line that caused it), so a test also
says what the bot does *not* do. So does an http call that no canned answer of the test expects.

A handed-over conversation has three parties: what a person at the desk answers (``agent:``, the
``hand_back`` button) is played like a user's line; what the user then receives, the person's answer
included, is expected by ``bot:`` lines; what the desk gets (ticket emails, Slack desk posts) by
``desk:`` lines, in their own order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable
from email.message import EmailMessage
from email.utils import getaddresses
from typing import NoReturn

from designer.conversation_tests.desk import (
    DeskMessage,
    desk_email,
    desk_post,
    is_desk_email,
    is_desk_post,
)
from designer.conversation_tests.failure import (
    Failure,
    show_buttons,
    show_email,
    show_replies,
    show_reply,
    show_text,
)
from designer.conversation_tests.model import (
    Action,
    AgentSays,
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
from designer.conversation_tests.rig import TEST_INBOX_ADDRESS, InProcessGateway
from gateway.core.bus.base import DeadLetter
from gateway.core.durations import format_duration
from gateway.core.metrics import Metrics
from gateway.core.schema import ButtonPress, ConversationKey, Reply
from worker.engine import Engine
from worker.http import CannedCaller


class _Failed(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.expected)
        self.failure = failure


async def run_conversation(
    test: ConversationTest, engine: Engine, *, mail_from: str, metrics: Metrics | None = None
) -> Failure | None:
    """None when every expectation held; else the first that did not."""
    key = ConversationKey(test.channel, test.user, test.user)
    caller = CannedCaller([answer.canned() for answer in test.http])
    async with InProcessGateway(engine, key, mail_from=mail_from, metrics=metrics, caller=caller) as gateway:
        if test.user_attributes:
            await gateway.preset(test.user_attributes)
        conversation = _Conversation(test, gateway, engine)
        try:
            for item in test.items:
                await conversation.play(item)
            conversation.nothing_left()
        except _Failed as failed:
            return failed.failure
    return None


class _Conversation:
    def __init__(self, test: ConversationTest, gateway: InProcessGateway, engine: Engine) -> None:
        self.test = test
        self.gateway = gateway
        self.longest_ttl = max(
            [engine.stories.bot.session_ttl, *(story.ttl for story in engine.stories.stories.values())]
        )
        self.replies: deque[Reply] = deque()
        self.emails: deque[EmailMessage] = deque()
        self.desk: deque[DeskMessage] = deque()
        self.last: Action | None = None  # the latest line that made the bot act
        self.turn: list[Reply] = []  # every reply to it
        self.unexpected_calls = 0  # calls no canned answer expected, reported so far

    def fail(
        self, item: Item, expected: str, actual: str, label: str = "bot said", context: str = ""
    ) -> NoReturn:
        raise _Failed(Failure(item.where, self.test.name, expected, actual, label, context))

    async def play(self, item: Item) -> None:
        if isinstance(item, Say | Press | Wait | AgentSays | HandBack):
            self.nothing_left()
        if isinstance(item, Say):
            await self.send(item, item.text, None)
        elif isinstance(item, Press):
            await self.press(item)
        elif isinstance(item, Wait):
            await self.wait(item)
        elif isinstance(item, AgentSays):
            await self.acting(item, self.gateway.agent_says(item.text))
        elif isinstance(item, HandBack):
            await self.acting(item, self.gateway.hand_back())
        elif isinstance(item, ExpectReply):
            self.expect_reply(item)
        elif isinstance(item, ExpectImage):
            self.expect_image(item)
        elif isinstance(item, ExpectDesk):
            self.expect_desk(item)
        else:
            self.expect_email(item)

    # -- the user ---------------------------------------------------------------------------------

    async def send(self, item: Say | Press, text: str, button: ButtonPress | None) -> None:
        await self.acting(item, self.gateway.send(text, button))

    async def acting(self, item: Action, action: Awaitable[list[DeadLetter]]) -> None:
        """Run what a line does, and collect what the bot did because of it."""
        delivered, transport = self.gateway.replies, self.gateway.transport
        replies_before, emails_before = len(delivered), len(transport.messages)
        dead = await action
        self.last = item
        self.turn = []
        for reply in delivered[replies_before:]:
            if is_desk_post(reply):
                self.desk.append(desk_post(reply))
            else:
                self.turn.append(reply)
        self.replies.extend(self.turn)
        for message in transport.messages[emails_before:]:
            if is_desk_email(message, TEST_INBOX_ADDRESS):
                self.desk.append(desk_email(message))
            else:
                self.emails.append(message)
        if dead:
            self.dead_lettered(item, dead[0])
        self.calls_expected(item)

    def calls_expected(self, item: Action) -> None:
        caller = self.gateway.caller
        if not isinstance(caller, CannedCaller) or len(caller.unexpected) == self.unexpected_calls:
            return
        request = caller.unexpected[self.unexpected_calls]
        self.unexpected_calls = len(caller.unexpected)
        self.fail(
            item,
            f"no http call {self.said()} (or an 'http:' answer of the test for it)",
            f"{request.shown} (at {request.where})",
            "bot called",
        )

    async def press(self, item: Press) -> None:
        offered = self.gateway.channel.offered
        wanted = item.title.strip().casefold()
        for button in offered:
            if button.title.strip().casefold() == wanted:
                await self.send(item, button.title, ButtonPress(payload=button.payload, title=button.title))
                return
        shown = " | ".join(button.title for button in offered)
        self.fail(
            item,
            f"a button {show_text(item.title)} to press",
            f"[{shown}]" if offered else "no buttons so far",
            "bot offered",
        )

    async def wait(self, item: Wait) -> None:
        """Time passes: the timers due meanwhile fire, and what they say is expected after this line."""
        seconds = item.seconds
        if seconds is None:  # just past the TTL of the open session (nothing to expire: the longest)
            seconds = (await self.gateway.session_ttl() or self.longest_ttl) + 1.0
        await self.acting(item, self.gateway.pass_time(seconds))

    def dead_lettered(self, item: Action, letter: DeadLetter) -> NoReturn:
        self.fail(
            item,
            "the message handled all the way (worker, delivery, mailer)",
            f"{letter.topic} dead-lettered it: {letter.reason}",
            "gateway",
        )

    # -- the bot ----------------------------------------------------------------------------------

    def said(self) -> str:
        """What the user's latest line was, for the context of a failure."""
        if self.last is None:
            return "before the first user line"
        if isinstance(self.last, Wait):
            if self.last.seconds is None:
                return "after session_expires"
            return f"after wait {format_duration(self.last.seconds)}"
        if isinstance(self.last, AgentSays):
            return f"after agent {show_text(self.last.text)}"
        if isinstance(self.last, HandBack):
            return "after hand_back"
        kind = "user" if isinstance(self.last, Say) else "press"
        return f"after {kind} {show_text(self.last.text if isinstance(self.last, Say) else self.last.title)}"

    def next_reply(self, item: ExpectReply | ExpectImage, expected: str) -> Reply:
        if not self.replies:
            context = f"its replies {self.said()}: {show_replies(self.turn)}" if self.turn else ""
            self.fail(item, expected, f"nothing more {self.said()}", context=context)
        return self.replies.popleft()

    def expect_reply(self, item: ExpectReply) -> None:
        reply = self.next_reply(item, str(item.text))
        if reply.image is not None and not reply.text:
            self.fail(item, str(item.text), show_reply(reply))
        if not item.text.matches(reply.text):
            author = f" (from {reply.author})" if reply.author is not None else ""
            self.fail(item, str(item.text), show_text(reply.text) + author)
        if item.buttons is not None and not _buttons_match(item.buttons, reply):
            wanted = "[" + " | ".join(match.plain for match in item.buttons) + "]" if item.buttons else "none"
            self.fail(item, f"buttons {wanted}", show_buttons(reply), "bot offered")

    def expect_image(self, item: ExpectImage) -> None:
        reply = self.next_reply(item, f"image {item.url}")
        image = reply.image
        if image is None:
            self.fail(item, f"image {item.url}", show_reply(reply))
        if not item.url.matches(image.url):
            self.fail(item, f"image {item.url}", f"image {image.url}")
        if item.caption is not None and not item.caption.matches(image.caption or ""):
            self.fail(item, f"caption {item.caption}", show_text(image.caption or ""))

    def expect_email(self, item: ExpectEmail) -> None:
        if not self.emails:
            wanted = f" to {', '.join(item.to)}" if item.to else ""
            self.fail(item, f"an email{wanted}", f"no more emails {self.said()}", "sent")
        message = self.emails.popleft()
        for key, expected in (("to", item.to), ("cc", item.cc)):
            if expected is not None:
                got = _addresses(message, key)
                if sorted(got) != sorted(expected):
                    self.fail_email(item, key, ", ".join(expected) or "nobody", ", ".join(got) or "nobody")
        if item.reply_to is not None:
            got = _addresses(message, "reply-to")
            if got != [item.reply_to]:
                self.fail_email(item, "reply_to", item.reply_to, ", ".join(got) or "none")
        subject = str(message.get("Subject", ""))
        if item.subject is not None and not item.subject.matches(subject):
            self.fail_email(item, "subject", str(item.subject), show_text(subject))
        for key, needles, kind in (
            ("body_contains", item.body_contains, "plain"),
            ("html_contains", item.html_contains, "html"),
        ):
            body = _body(message, kind)
            for text in needles:
                if text not in body:
                    self.fail_email(item, key, f"{kind} body containing {show_text(text)}", show_text(body))

    def expect_desk(self, item: ExpectDesk) -> None:
        expected = f"the desk gets a message containing {item.text}"
        if item.text.pattern is not None:
            expected = f"the desk gets a message matching {item.text}"
        if not self.desk:
            self.fail(item, expected, f"nothing more {self.said()}", "desk got")
        message = self.desk.popleft()
        if not item.found_in(message.text):
            self.fail(item, expected, message.shown, "desk got")

    def fail_email(self, item: ExpectEmail, key: str, expected: str, actual: str) -> NoReturn:
        failure = Failure(
            item.line_of(key), self.test.name, f"{key}: {expected}", actual, f"email {key}" if key in (
                "to", "cc", "reply_to", "subject") else "email body"
        )  # fmt: skip
        raise _Failed(failure)

    def nothing_left(self) -> None:
        """Everything the bot did so far was expected; fails at the user line that caused the rest."""
        at = self.last
        if at is None:
            return
        if self.replies:
            self.fail(
                at,
                f"nothing more from the bot {self.said()} (add a 'bot:' line for what it says)",
                show_replies(list(self.replies)),
            )
        if self.emails:
            self.fail(
                at,
                f"no email {self.said()} (add an 'email:' line for it)",
                "; ".join(show_email(message) for message in self.emails),
                "sent",
            )
        if self.desk:
            self.fail(
                at,
                f"nothing more to the desk {self.said()} (add a 'desk:' line for it)",
                self.desk[0].shown + (f" (and {len(self.desk) - 1} more)" if len(self.desk) > 1 else ""),
                "desk got",
            )


def _buttons_match(expected: tuple[TextMatch, ...], reply: Reply) -> bool:
    titles = [button.title for button in reply.buttons]
    return len(titles) == len(expected) and all(m.matches(t) for m, t in zip(expected, titles, strict=True))


def _addresses(message: EmailMessage, header: str) -> list[str]:
    return [address.lower() for _, address in getaddresses([str(v) for v in message.get_all(header, [])])]


def _body(message: EmailMessage, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    if part is None:
        return ""
    content = part.get_content()  # type: ignore[attr-defined]
    return content if isinstance(content, str) else ""

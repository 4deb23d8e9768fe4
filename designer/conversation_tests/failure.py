"""What a failed conversation test prints: where, what was expected, what the bot did."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from gateway.core.schema import Reply
from worker.engine.model import Where

MAX_SHOWN = 3  # replies listed when the bot said more than expected


@dataclass(frozen=True, slots=True)
class Failure:
    """The first expectation of a test that did not hold (the rest of that test is not run)."""

    where: Where
    test: str
    expected: str
    actual: str
    actual_label: str = "bot said"
    context: str = ""

    def format(self) -> str:
        """``FILE:LINE: FAIL name`` then indented ``expected:`` / ``bot said:`` lines."""
        width = max(len("expected"), len(self.actual_label)) + 2
        lines = [
            f"{self.where.file}:{self.where.line}: FAIL {self.test}",
            f"  {'expected:'.ljust(width)}{self.expected}",
            f"  {(self.actual_label + ':').ljust(width)}{self.actual}",
        ]
        if self.context:
            lines.append(f"  {self.context}")
        return "\n".join(lines)


def show_text(text: str) -> str:
    """Text quoted on one line, line breaks visible."""
    return repr(text)


def show_reply(reply: Reply) -> str:
    """``'Where do you live?' [Paris | London]``, ``image https://... ('caption')``, or a person's answer
    ``'On its way' (from Agent)``."""
    if reply.image is not None:
        caption = f" ({show_text(reply.image.caption)})" if reply.image.caption else ""
        shown = f"image {reply.image.url}{caption}"
        if reply.text:
            shown = f"{show_text(reply.text)} + {shown}"
    else:
        shown = show_text(reply.text)
    if reply.buttons:
        shown += f" {show_buttons(reply)}"
    if reply.author is not None:
        shown += f" (from {reply.author})"
    return shown


def show_buttons(reply: Reply) -> str:
    return "[" + " | ".join(button.title for button in reply.buttons) + "]" if reply.buttons else "no buttons"


def show_replies(replies: Sequence[Reply]) -> str:
    shown = ", ".join(show_reply(reply) for reply in replies[:MAX_SHOWN])
    more = len(replies) - MAX_SHOWN
    return shown + (f" (and {more} more)" if more > 0 else "")


def show_email(message: EmailMessage) -> str:
    return f"to {message.get('To', '')!s}, subject {show_text(str(message.get('Subject', '')))}"

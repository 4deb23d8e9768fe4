"""What a support desk got during a conversation test, as the ``desk:`` lines check it.

A desk gets two kinds of messages: posts to a Slack desk (replies marked with the conversation they are
about) and ticket emails (sent with the conversation's signed reply address of the desk's inbox). Both
are taken out of what the user and the support inbox received, so ``bot:`` and ``email:`` lines never see
them, and each becomes one :class:`DeskMessage`.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

from gateway.core.desk import DESK_OF, token_of_address
from gateway.core.schema import Reply


@dataclass(frozen=True, slots=True)
class DeskMessage:
    text: str  # what a ``desk:`` line searches: a post's text, or an email's subject and plain body
    shown: str  # how a failure shows it


def is_desk_post(reply: Reply) -> bool:
    return DESK_OF in reply.meta


def is_desk_email(message: EmailMessage, inbox_address: str) -> bool:
    """An email whose Reply-To is a conversation's reply address at the desk's inbox."""
    reply_to = getaddresses([str(value) for value in message.get_all("Reply-To", [])])
    return any(token_of_address(address, inbox_address) is not None for _, address in reply_to)


def desk_post(reply: Reply) -> DeskMessage:
    return DeskMessage(reply.text, f"post to {reply.chat}: {_short(reply.text)}")


def desk_email(message: EmailMessage) -> DeskMessage:
    subject = str(message.get("Subject", ""))
    part = message.get_body(preferencelist=("plain",))
    content = part.get_content() if part is not None else ""  # type: ignore[attr-defined]
    body = content if isinstance(content, str) else ""
    shown = f"email to {message.get('To', '')!s}, subject {subject!r}, body {_short(body)}"
    return DeskMessage(f"{subject}\n{body}", shown)


SHOWN_CHARACTERS = 300  # of a desk message in a failure: a ticket is long


def _short(text: str) -> str:
    if len(text) <= SHOWN_CHARACTERS:
        return repr(text)
    return repr(text[:SHOWN_CHARACTERS]) + f" (and {len(text) - SHOWN_CHARACTERS} more characters)"

"""What goes to a desk: the ticket that opens a handoff, and the user's later messages in its thread.

Email desk: email jobs to the desk's address, whose ``Reply-To`` is the conversation's signed reply
address (``desk+TOKEN@domain``), the later ones threaded under the first (``EmailJob.thread``). Slack desk:
replies to the desk channel, marked (:data:`~gateway.core.desk.DESK_POST`) so that the Slack channel
opens the conversation's thread with the first and posts the others in it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.core.desk import DESK_OF, DESK_POST, DESK_TOKEN, DESK_TTL, HANDBACK_PREFIX
from gateway.core.schema import Button, EmailJob, Inbound, Reply
from worker.engine.engine import HandOffOrder
from worker.engine.entities import split_addresses
from worker.handoff.state import Handoff
from worker.handoff.transcript import Transcript

LINK_GRACE = 7 * 86400.0  # a Slack thread's links outlive the handoff, for late answers to be refused


def who(message: Inbound, user: Mapping[str, str]) -> str:
    """The user as a desk sees them: a name when one is known, and where they write from."""
    name = message.user_name or user.get("FirstName") or user.get("first_name") or message.user
    return f"{name} ({message.channel})"


def ticket_text(
    order: HandOffOrder,
    message: Inbound,
    transcript: Transcript,
    values: Mapping[str, str],
    user: Mapping[str, str],
    how_to_answer: str,
) -> str:
    lines = [order.summary.strip()] if order.summary.strip() else []
    lines += ["", f"User: {who(message, user)}", f"Conversation: {message.conversation}", ""]
    lines.append(f"Last messages ({len(transcript.entries)}):")
    lines += [f"  {entry.who}: {entry.text}" for entry in transcript.entries] or ["  (none)"]
    lines += ["", "Session values:"]
    lines += [f"  {name}: {value}" for name, value in sorted(values.items())] or ["  (none)"]
    lines += ["", "User attributes:"]
    lines += [f"  {name}: {value}" for name, value in sorted(user.items())] or ["  (none)"]
    lines += ["", how_to_answer]
    return "\n".join(lines).lstrip("\n")


EMAIL_HOW = (
    "Reply to this email to answer the user. Write #bot alone on a line to hand the conversation back."
)
SLACK_HOW = (
    "Reply in this thread to answer the user. Write #bot alone on a line, or press Hand back, to hand back."
)


def user_post_text(message: Inbound, user: Mapping[str, str]) -> str:
    """A user's message as the desk sees it: the text, then its attachments' links."""
    lines = [message.text] if message.text else []
    lines += [f"[{a.kind}] {a.url}" for a in message.attachments]
    return f"{who(message, user)}: " + ("\n".join(lines) or "(empty message)")


def ticket_email(
    job_id: str, order: HandOffOrder, message: Inbound, reply_to: str | None, text: str, now: float
) -> EmailJob | None:
    to = split_addresses(order.to)
    if not to:
        return None
    return EmailJob(
        id=job_id, to=tuple(to), reply_to=reply_to, subject=order.subject, text=text,
        channel=message.channel, chat=message.chat, user=message.user, created_at=now,
    )  # fmt: skip


def follow_up_email(
    job_id: str, handoff: Handoff, message: Inbound, reply_to: str | None, text: str, now: float
) -> EmailJob:
    subject = handoff.subject if handoff.subject.lower().startswith("re:") else f"Re: {handoff.subject}"
    return EmailJob(
        id=job_id, to=tuple(split_addresses(handoff.to)), reply_to=reply_to, subject=subject, text=text,
        channel=message.channel, chat=message.chat, user=message.user, created_at=now, thread=handoff.ticket,
    )  # fmt: skip


def slack_post(
    reply_id: str, handoff: Handoff, message: Inbound, text: str, now: float, *, root: bool
) -> Reply:
    """A post to the Slack desk: the thread's root (with the Hand back button) or a reply in it."""
    meta = {
        DESK_OF: str(message.conversation),
        DESK_POST: "root" if root else "thread",
        DESK_TOKEN: handoff.ticket,
        DESK_TTL: str(round(handoff.deadline - now + LINK_GRACE)),
    }
    buttons: Sequence[Button] = (
        (Button(title="Hand back", payload=HANDBACK_PREFIX + handoff.ticket),) if root else ()
    )
    return Reply(
        id=reply_id, in_reply_to=message.id, channel="slack", chat=handoff.to, user=handoff.to, text=text,
        buttons=tuple(buttons), meta=meta, created_at=now,
    )  # fmt: skip

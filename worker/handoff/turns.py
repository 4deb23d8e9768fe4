"""The story worker's side of handoffs: what a message does to a handed-over conversation.

A conversation is handed over when its committed ``handoff`` record says so (:mod:`worker.handoff.state`);
the record is read by the same load as the session and written by the same commit as the turn, so the
decision "bot or person" is part of the conversation's order: a message handled after the handoff's commit
goes to the desk, never to the bot.

- A turn whose story ran a ``handoff`` action opens it (:meth:`DeskTurns.after_engine`): the record, the
  ticket (an email job, or a Slack post that opens the thread), the ``until`` timer.
- While handed over (:meth:`DeskTurns.intercept`): the user's messages go to the desk and nothing of the
  bot runs (story timers and broadcasts are dropped); a person's answer (an ``Inbound`` of kind ``staff``)
  goes to the user and restarts ``until``; ``#bot`` on a line of its own, the Hand back button (kind
  ``handback``) or the ``until`` timer firing hand back, and the worker then runs ``resume``.
- A person's answer or hand-back for a conversation not handed over (any more) is dropped with a log line.

Changes outside the conversation's slot (the timer schedule, the live group of handed-over conversations)
are recorded with the turn's outputs and applied after the commit, like publishing, so that a replay
applies them again (both are idempotent).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from gateway.core.desk import HANDED_OVER, reply_address, sign
from gateway.core.metrics import Metrics
from gateway.core.schema import EmailJob, Image, Inbound, Reply
from gateway.core.store.base import Record, Session, Snapshot, Store
from gateway.core.store.keys import digest
from worker.engine import Engine, Stories, Turn
from worker.engine.engine import HandOffOrder
from worker.engine.model import HandOff
from worker.handoff import tickets
from worker.handoff.state import GRACE, KIND, Handoff
from worker.handoff.transcript import KIND as TRANSCRIPT
from worker.handoff.transcript import Entry, Transcript, said_by_bot
from worker.timers.pending import KIND as TIMERS
from worker.timers.pending import timer_id
from worker.timers.plan import due_ms
from worker.timers.turns import SCHEDULE_TAG

log = logging.getLogger("gateway.handoff")

GROUP_TAG = b"G"  # a recorded output that changes the live group of handed-over conversations
UNTIL_PREFIX = "hb."  # the ids of `until` timers (a story timer's id never has a dot)
HAND_BACK_LINE = "#bot"


def until_timer(message_id: str) -> str:
    return UNTIL_PREFIX + timer_id(message_id, 0)


@dataclass(frozen=True, slots=True)
class DeskTurn:
    """What a message does to a handed-over conversation, or a desk's message to any conversation."""

    dropped: str | None = None  # why nothing is committed (a stale firing, an answer after hand back)
    replies: list[Reply] = field(default_factory=list)  # to the user: a person's answers
    emails: list[EmailJob] = field(default_factory=list)  # to the email desk
    desk_replies: list[Reply] = field(default_factory=list)  # to the Slack desk
    records: dict[str, Record | None] = field(default_factory=dict)
    effects: list[bytes] = field(default_factory=list)  # schedule and group changes, after the commit
    session: Session | None = None
    route: Inbound | None = None  # the message as its replies are routed (the user's latest meta)
    resume: str | None = None  # handed back: the story to start (None: none)
    handed_back: str | None = None  # how: "staff" (#bot), "button", "until"
    events: tuple[str, ...] = ()  # for metrics once committed: opened, staff_reply, desk_message
    desk: str = ""
    first_answer_after: float | None = None  # seconds from the handoff to this first answer
    transcript: Transcript | None = None


def uses_handoff(stories: Stories) -> bool:
    return any(
        isinstance(action, HandOff)
        for story in stories.stories.values()
        for step in story.steps.values()
        for action in step.actions
    )


class DeskTurns:
    records = (KIND, TRANSCRIPT)

    def __init__(self, secret_key: str, inbox_address: str | None, *, metrics: Metrics | None = None) -> None:
        if not secret_key:
            raise ValueError("desks need GATEWAY_SECRET_KEY (it signs reply addresses and hand-back buttons)")
        self.secret_key = secret_key
        self.inbox_address = inbox_address
        self.metrics = metrics or Metrics()
        self._uses: tuple[int, bool] | None = None  # (id of the stories, whether they hand over)

    def keeps_transcript(self, engine: Engine) -> bool:
        """Whether the turns keep a transcript: only when some story can hand over."""
        stories = engine.stories
        if self._uses is None or self._uses[0] != id(stories):
            self._uses = (id(stories), uses_handoff(stories))
        return self._uses[1]

    # -- a conversation handed over, or a message from a desk -------------------------------------

    def intercept(self, snapshot: Snapshot, message: Inbound, now: float) -> DeskTurn | None:
        """The turn of ``message`` when a desk decides it; None when the bot handles it as usual."""
        key = message.conversation
        handoff = Handoff.decode(snapshot.records.get(KIND), key)
        if message.timer is not None and message.timer.startswith(UNTIL_PREFIX):
            if handoff is None or handoff.timer != message.timer:
                return DeskTurn(dropped="an `until` timer of a handoff that ended or was answered since")
            return self._hand_back(snapshot, message, handoff, now, "until", [])
        if message.kind in ("staff", "handback"):
            if handoff is None:
                return DeskTurn(dropped="a desk's message for a conversation not handed over (any more)")
            if message.kind == "handback":
                return self._hand_back(snapshot, message, handoff, now, "button", [])
            return self._answer(snapshot, message, handoff, now)
        if handoff is None:
            return None
        if message.timer is not None or message.kind != "message":
            return DeskTurn(
                dropped=f"the conversation is handed over: a {message.kind} of the bot does not run"
            )
        return self._to_desk(snapshot, message, handoff, now)

    def _to_desk(self, snapshot: Snapshot, message: Inbound, handoff: Handoff, now: float) -> DeskTurn:
        text = tickets.user_post_text(message, snapshot.user)
        updated = replace(handoff, meta=dict(message.meta))
        emails, posts = [], []
        if handoff.desk == "email":
            emails.append(
                tickets.follow_up_email(
                    f"{message.id}/e0", handoff, message, self._reply_to(message), text, now
                )
            )
        else:
            posts.append(tickets.slack_post(f"{message.id}/d0", handoff, message, text, now, root=False))
        transcript = self._transcript(snapshot, message).add([Entry("user", _said(message), now)])
        records: dict[str, Record | None] = {
            TRANSCRIPT: Record(transcript.encode(), handoff.deadline - now + GRACE)
        }
        if updated != handoff:
            records[KIND] = updated.record(now)
        return DeskTurn(
            emails=emails,
            desk_replies=posts,
            records=records,
            session=_kept(snapshot.session, handoff, now),
            route=message,
            events=("desk_message",),
            desk=handoff.desk,
        )

    def _answer(self, snapshot: Snapshot, message: Inbound, handoff: Handoff, now: float) -> DeskTurn:
        lines = message.text.splitlines()
        hands_back = any(line.strip().casefold() == HAND_BACK_LINE for line in lines)
        text = "\n".join(line for line in lines if line.strip().casefold() != HAND_BACK_LINE).strip()
        route = message.model_copy(update={"meta": dict(handoff.meta)})
        author = shown_author(message.user_name)
        replies: list[Reply] = []
        if text:
            replies.append(_reply(route, len(replies), now, author, text=text))
        for attachment in message.attachments:
            if attachment.kind == "image":
                replies.append(_reply(route, len(replies), now, author, image=Image(url=attachment.url)))
        first = None if handoff.answered else max(0.0, now - handoff.since)
        if hands_back:
            turn = self._hand_back(snapshot, message, handoff, now, "staff", replies)
            return replace(turn, first_answer_after=first if replies else None)
        timer = until_timer(message.id)
        answered = handoff.answered_at(now, timer)
        transcript = self._transcript(snapshot, message).add(said_by_bot(replies, "agent"))
        return DeskTurn(
            replies=replies,
            records={
                KIND: answered.record(now),
                TRANSCRIPT: Record(transcript.encode(), answered.deadline - now + GRACE),
            },
            effects=[
                _schedule_change([(answered.deadline, timer)], [(handoff.deadline, handoff.timer)]),
                _group_change(message, answered.deadline),
            ],
            session=_kept(snapshot.session, answered, now),
            route=route,
            events=("staff_reply",) if replies else (),
            desk=handoff.desk,
            first_answer_after=first,
        )

    def _hand_back(
        self,
        snapshot: Snapshot,
        message: Inbound,
        handoff: Handoff,
        now: float,
        how: str,
        replies: list[Reply],
    ) -> DeskTurn:
        route = message.model_copy(update={"meta": dict(handoff.meta)})
        posts = []
        if handoff.desk == "slack":
            note = {"until": "no answer for a while", "button": "the Hand back button", "staff": "#bot"}[how]
            text = f"Handed back to the bot ({note})."
            posts.append(tickets.slack_post(f"{message.id}/d0", handoff, message, text, now, root=False))
        transcript = self._transcript(snapshot, message).add(said_by_bot(replies, "agent"))
        session = snapshot.session
        return DeskTurn(
            replies=replies,
            desk_replies=posts,
            records={KIND: None, TRANSCRIPT: Record(transcript.encode(), GRACE)},
            effects=[_schedule_change([], [(handoff.deadline, handoff.timer)]), _group_change(message, None)],
            session=Session(session.story, None, session.values, (), session.ttl)
            if session is not None
            else None,
            route=route,
            resume=handoff.resume,
            handed_back=how,
            desk=handoff.desk,
            events=("staff_reply",) if replies else (),
            transcript=transcript,
        )

    # -- a turn of the bot --------------------------------------------------------------------------

    def after_engine(
        self,
        engine: Engine,
        snapshot: Snapshot,
        message: Inbound,
        turn: Turn,
        now: float,
        transcript: Transcript | None = None,
    ) -> DeskTurn:
        """What the bot's turn adds: the transcript (``transcript``: the one this turn has so far, else
        the committed one), and the handoff its story ran, if any."""
        if not self.keeps_transcript(engine):
            return DeskTurn()
        entries = (
            [Entry("user", _said(message), message.sent_at)]
            if message.kind == "message" and message.timer is None
            else []
        )
        before = transcript if transcript is not None else self._transcript(snapshot, message)
        transcript = before.add([*entries, *said_by_bot(turn.replies)])
        ttl = turn.session.ttl if turn.session is not None else engine.stories.bot.session_ttl
        records: dict[str, Record | None] = {TRANSCRIPT: Record(transcript.encode(), ttl)}
        order = turn.handoff
        if order is None:
            return DeskTurn(records=records)
        return self._open(snapshot, message, turn, order, transcript, now)

    def _open(
        self,
        snapshot: Snapshot,
        message: Inbound,
        turn: Turn,
        order: HandOffOrder,
        transcript: Transcript,
        now: float,
    ) -> DeskTurn:
        key = message.conversation
        user = dict(snapshot.user)
        for name, value in turn.user_changes.items():
            if value is None:
                user.pop(name, None)
            else:
                user[name] = value
        values = turn.session.values if turn.session is not None else {}
        subject = order.subject or f"Conversation with {tickets.who(message, user)}"
        order = replace(order, subject=subject)
        timer = until_timer(message.id)
        deadline = now + order.until
        emails, posts = [], []
        if order.desk == "email":
            job_id = f"{message.id}/e{len(turn.emails)}"
            reply_to = self._reply_to(message)
            how = (
                tickets.EMAIL_HOW
                if reply_to
                else "Answering by email is not set up here (GATEWAY_INBOX_ADDRESS)."
            )
            text = tickets.ticket_text(order, message, transcript, values, user, how)
            email = tickets.ticket_email(job_id, order, message, reply_to, text, now)
            if email is None:
                log.warning("handoff of %s not opened: no valid desk address in %r", key, order.to)
                return DeskTurn(records={TRANSCRIPT: Record(transcript.encode(), GRACE)})
            emails.append(email)
            ticket = job_id
        else:
            ticket = sign(self.secret_key, key)
        handoff = Handoff(
            desk=order.desk,
            to=order.to,
            subject=subject,
            resume=order.resume,
            until=order.until,
            since=now,
            deadline=deadline,
            ticket=ticket,
            timer=timer,
            meta=dict(message.meta),
        )
        if order.desk == "slack":
            text = tickets.ticket_text(order, message, transcript, values, user, tickets.SLACK_HOW)
            posts.append(tickets.slack_post(f"{message.id}/d0", handoff, message, text, now, root=True))
        return DeskTurn(
            emails=emails,
            desk_replies=posts,
            records={
                KIND: handoff.record(now),
                TRANSCRIPT: Record(transcript.encode(), deadline - now + GRACE),
                TIMERS: None,  # the story's timers end: the bot says nothing while a person has it
            },
            effects=[_schedule_change([(deadline, timer)], []), _group_change(message, deadline)],
            session=_kept(turn.session, handoff, now),
            events=("opened",),
            desk=order.desk,
        )

    # -- after the commit ---------------------------------------------------------------------------

    def committed(self, turn: DeskTurn) -> None:
        """Count what a committed turn did (once: never for a replay)."""
        metrics = self.metrics
        for event in turn.events:
            if event == "opened":
                metrics.handoffs.labels("opened").inc()
            elif event == "staff_reply":
                metrics.staff_replies.labels(turn.desk).inc()
            elif event == "desk_message":
                metrics.desk_messages.labels(turn.desk).inc()
        if turn.handed_back is not None:
            metrics.handoffs.labels(f"handed_back_{turn.handed_back}").inc()
        if turn.first_answer_after is not None:
            metrics.first_staff_answer.observe(turn.first_answer_after)

    async def apply(self, store: Store, message: Inbound, recorded: Sequence[bytes], now: float) -> None:
        """Apply the group changes recorded with a committed turn (again on a replay), and show the
        number of conversations handed over now."""
        changed = False
        for item in recorded:
            if item[:1] != GROUP_TAG:
                continue
            member, until = json.loads(item[1:])
            if until is None:
                await store.remove_live_member(HANDED_OVER, member)
            else:
                await store.add_live_member(HANDED_OVER, member, until)
            changed = True
        if changed:
            self.metrics.handoffs_open.set(await store.count_live_members(HANDED_OVER, now))

    # -- helpers ------------------------------------------------------------------------------------

    def _reply_to(self, message: Inbound) -> str | None:
        if self.inbox_address is None:
            return None
        return reply_address(self.secret_key, message.conversation, self.inbox_address)

    @staticmethod
    def _transcript(snapshot: Snapshot, message: Inbound) -> Transcript:
        return Transcript.decode(snapshot.records.get(TRANSCRIPT), message.conversation)


_SLACK_USER_ID = re.compile(r"[UW][A-Z0-9]{6,}")


def shown_author(name: str | None) -> str:
    """The name a person's answer shows to the user: never their email address or a Slack user id."""
    if not name or "@" in name or _SLACK_USER_ID.fullmatch(name):
        return "Support"
    return name


def _said(message: Inbound) -> str:
    parts = [message.button.title or message.text if message.button else message.text]
    parts += [f"[{a.kind} {a.url[:200]}]" for a in message.attachments]
    return " ".join(p for p in parts if p)


def _kept(session: Session | None, handoff: Handoff, now: float) -> Session | None:
    """The session kept through the handoff (for ``resume``): nothing waits, no button works, and it
    lasts as long as the handoff can."""
    if session is None:
        return None
    return Session(session.story, None, session.values, (), max(session.ttl, handoff.deadline - now + GRACE))


def _reply(
    route: Inbound, n: int, now: float, author: str, text: str = "", image: Image | None = None
) -> Reply:
    return Reply(
        id=f"{route.id}/r{n}",
        in_reply_to=route.id,
        channel=route.channel,
        chat=route.chat,
        user=route.user,
        text=text,
        image=image,
        meta=route.meta,
        created_at=now,
        author=author,
    )


def _schedule_change(add: Sequence[tuple[float, str]], remove: Sequence[tuple[float, str]]) -> bytes:
    """In the format of :func:`worker.timers.turns.encode_change`, applied by the same code."""
    body = [[[due_ms(at, 0), timer] for at, timer in add], [[due_ms(at, 0), timer] for at, timer in remove]]
    return SCHEDULE_TAG + json.dumps(body, separators=(",", ":")).encode()


def _group_change(message: Inbound, until: float | None) -> bytes:
    return GROUP_TAG + json.dumps([digest(str(message.conversation)), until]).encode()

"""The story worker: consume inbound messages, run the engine, commit, publish, and only then ack.

Effects happen exactly once per inbound message: the new session, the attribute changes and the outputs
are committed in one store transaction keyed by the message id *before* anything is published. A message
delivered again after a crash finds that commit and re-publishes the recorded outputs (which carry
deterministic ids, so the deliverer and the mailer drop the copies they already sent) instead of running
the story a second time. Per-conversation order comes from the bus: one conversation's messages are never
handled at the same time or out of order.

A turn with ``http`` actions stops at each call (``Turn.call``): the worker makes the call outside its
concurrency slot (``Delivery.aside``: other conversations go on meanwhile) and runs the turn again with one
more answer, until it is finished; only then is it committed, calls included, so a redelivered message
reuses their outcome. The answers of a message not committed yet are kept in the process, so an in-place
retry (Redis away at the commit) does not call again; a worker that dies before the commit leaves the call
to the next one, which sends the same ``Idempotency-Key``.

Replies to a message whose ``meta`` names a serve instance (the web chat) go to that instance's direct
destination, since only that process holds the browser's socket; if the instance is gone they are
dropped with a log line (the browser, reconnecting elsewhere, sends its next message there).

Timers (:mod:`worker.timers`): a timer's firing is one more message of its conversation, handled by the
same load, commit, publish, ack; the pending timers are a record committed with the turn, and the turn's
change to the schedule is recorded with its outputs and applied after the commit (again on a replay).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from gateway.core import timeline, tracing
from gateway.core.bus.base import REPLAY_HEADER, Bus, Delivery, Envelope, Subscription, Topic
from gateway.core.errors import Rejected, SchemaError
from gateway.core.faults import FaultPoints
from gateway.core.metrics import Metrics
from gateway.core.schema import INSTANCE_META, Inbound, parse_inbound, parse_reply
from gateway.core.store.base import Commit, Snapshot, Store
from gateway.core.store.users.base import UserIndex, direct_chat
from worker.engine import Engine, Turn
from worker.engine.calls import HttpAnswer, HttpRequest
from worker.handoff import DeskTurn, DeskTurns
from worker.handoff.turns import GROUP_TAG
from worker.http.base import Caller, NoCalls
from worker.timers.turns import TimedTurn, TimerTurns

log = logging.getLogger("gateway.worker")

T = TypeVar("T", Turn, Turn | None)

MAX_REMEMBERED = 10_000  # messages whose calls are kept for an in-place retry of their commit
_REPLY_TAG = b"R"
_EMAIL_TAG = b"E"
_DESK_TAG = b"D"  # a post to a Slack desk: a reply to another conversation than the message's


def record_outputs(turn: Turn, desk: DeskTurn | None = None) -> list[bytes]:
    """Serialize a turn's outputs for the commit: a one-byte topic tag, then the message JSON; then what
    the desks add (their emails, their posts, their changes applied after the commit)."""
    outputs = [_REPLY_TAG + r.to_json() for r in turn.replies] + [
        _EMAIL_TAG + e.to_json() for e in turn.emails
    ]
    if desk is not None:
        outputs += [_EMAIL_TAG + e.to_json() for e in desk.emails]
        outputs += [_DESK_TAG + r.to_json() for r in desk.desk_replies]
        outputs += desk.effects
    return outputs


def recorded_output(item: bytes) -> tuple[Topic, bytes] | None:
    """One output as :func:`record_outputs` recorded it: the topic it goes to, and its message JSON; None
    for a recorded item that is not a message (a timer schedule change)."""
    tag = item[:1]
    if tag not in (_REPLY_TAG, _EMAIL_TAG, _DESK_TAG):
        return None
    return (Topic.EMAIL if tag == _EMAIL_TAG else Topic.OUTBOUND), item[1:]


def envelopes_of(message: Inbound, recorded: Sequence[bytes], replay: bool) -> dict[Topic, list[Envelope]]:
    """Turn recorded outputs back into envelopes; the ids were fixed when the turn ran.

    Outputs re-published for a message committed before carry :data:`REPLAY_HEADER`, telling the
    deliverer and the mailer that they may have sent them already. Recorded items that are not messages
    (a schedule change) are left to their owners.
    """
    key = str(message.conversation)
    headers = tracing.carried({REPLAY_HEADER: "1"} if replay else {})
    out: dict[Topic, list[Envelope]] = {Topic.OUTBOUND: [], Topic.EMAIL: []}
    for item in recorded:
        tag, body = item[:1], item[1:]
        if tag not in (_REPLY_TAG, _EMAIL_TAG):
            continue
        topic, kind = (Topic.OUTBOUND, "r") if tag == _REPLY_TAG else (Topic.EMAIL, "e")
        envelopes = out[topic]
        message_id = f"{message.id}/{kind}{len(envelopes)}"
        envelopes.append(Envelope(body=body, message_id=message_id, key=key, headers=headers))
    return out


def desk_envelopes_of(message: Inbound, recorded: Sequence[bytes], replay: bool) -> list[Envelope]:
    """The recorded posts to a Slack desk: replies, on the user's conversation's key (so that a thread's
    root goes out before the posts in it), never to the web chat instance of the user's message."""
    headers = tracing.carried({REPLAY_HEADER: "1"} if replay else {})
    bodies = [item[1:] for item in recorded if item[:1] == _DESK_TAG]
    key = str(message.conversation)
    return [
        Envelope(body=body, message_id=f"{message.id}/d{n}", key=key, headers=headers)
        for n, body in enumerate(bodies)
    ]


def _route_of_replay(message: Inbound, recorded: Sequence[bytes]) -> Inbound:
    """A desk's message replayed: its replies were routed by the user's meta of the time; they carry it."""
    for item in recorded:
        if item[:1] == _REPLY_TAG:
            return message.model_copy(update={"meta": parse_reply(item[1:]).meta})
    return message


class StoryWorker:
    def __init__(
        self,
        bus: Bus,
        store: Store,
        engine: Callable[[], Engine],
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        users: UserIndex | None = None,
        caller: Caller | None = None,
        timers: TimerTurns | None = None,
        desks: DeskTurns | None = None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.engine = engine  # a provider, so hot reload can swap the stories between two messages
        self.users = users  # the channels' user index, told of each user's messages
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.caller = caller or NoCalls()
        # Calls made for messages not committed yet, by message id: (request, answer) in call order.
        self._made: OrderedDict[str, list[tuple[HttpRequest, HttpAnswer]]] = OrderedDict()
        self.timers = timers  # None: stories run without timers (benchmarks of the bare pipeline)
        self.desks = desks  # None: handoff actions do not hand over (the bare pipeline, again)
        self._faults = FaultPoints()
        self._subscription: Subscription | None = None

    async def start(self, concurrency: int = 64) -> None:
        self._subscription = await self.bus.subscribe(Topic.INBOUND, self.handle, concurrency=concurrency)

    async def stop(self, timeout: float = 10.0) -> None:
        if self._subscription is not None:
            await self._subscription.stop(timeout)
            self._subscription = None

    async def handle(self, delivery: Delivery) -> None:
        with tracing.consuming("handle message", delivery.envelope):
            await self._handle(delivery)

    async def _handle(self, delivery: Delivery) -> None:
        started = time.perf_counter()
        try:
            message = parse_inbound(delivery.envelope.body)
        except SchemaError as exc:
            self.metrics.handled.labels("rejected").inc()
            raise Rejected(str(exc)) from None
        key = message.conversation
        timers = self.timers
        if timers is not None:
            timers.consumed(key)
            await timers.wait_until_due(message, self.clock)
        desks = self.desks
        kinds = (
            *(timers.records if timers is not None else ()),
            *(desks.records if desks is not None else ()),
        )
        snapshot = await self.store.load(key, message.id, kinds)
        timeline.mark("turn.loaded", message.id)
        outcome = "handled"
        recorded = snapshot.outputs
        route = message  # the message whose meta routes the replies (a desk's answer: the user's latest)
        if recorded is None:
            now = self.clock()
            engine = self.engine()  # one engine for the whole turn, whatever a reload does meanwhile
            if desks is not None:
                desk = desks.intercept(snapshot, message, now)
            elif message.kind in ("staff", "handback"):
                desk = DeskTurn(dropped="this worker runs no desks (GATEWAY_SECRET_KEY is not set)")
            else:
                desk = None
            if desk is not None and desk.dropped is not None:
                log.info("%s of %s dropped: %s", message.id, key, desk.dropped)
                self.metrics.handled.labels("dropped").inc()
                return
            timed: TimedTurn | None = None
            if desk is not None:
                assert desks is not None
                turn, outputs, commit, timed = await self._desk_turn(
                    delivery, engine, snapshot, message, desk, now
                )
                route = desk.route or message
            else:
                if timers is None:
                    turn = await self._turn(delivery, message, self._handling(engine, snapshot, message, now))
                else:
                    state = timers.start(snapshot, message)
                    if state is None:
                        log.debug("timer firing %s: the timer is no longer pending; dropped", message.id)
                        self.metrics.handled.labels("dropped").inc()
                        return
                    run = timers.runner(engine, snapshot, message, state, now)
                    ran = await self._turn(delivery, message, run)
                    timed = timers.finish(engine, snapshot, message, state, ran, now)
                    turn = timed.turn
                desk = desks.after_engine(engine, snapshot, message, turn, now) if desks is not None else None
                outputs = record_outputs(turn, desk) + (timed.outputs if timed is not None else [])
                session = desk.session if desk is not None and desk.session is not None else turn.session
                records = {**(timed.records if timed is not None else {}), **(desk.records if desk else {})}
                commit = Commit(message.id, session, turn.user_changes, outputs, records)
            if await self.store.commit(key, commit):
                recorded = tuple(outputs)
                if timers is not None and timed is not None:
                    timers.committed(timed, message, now)
                if desks is not None and desk is not None:
                    desks.committed(desk)
            else:  # committed meanwhile by a worker that lost its partition: use its record
                recorded = (await self.store.load(key, message.id)).outputs or ()
                outcome = "replayed"
            if not turn.replies and not turn.emails and turn.session is None and desk is None:
                log.info("no story handles %s from %s: %r", message.id, key, message.text[:80])
        else:
            outcome = "replayed"
            log.info(
                "message %s was committed before; re-publishing its %d outputs", message.id, len(recorded)
            )
            if desks is not None and message.kind != "message":
                route = _route_of_replay(message, recorded)
        self._made.pop(message.id, None)
        timeline.mark("turn.committed", message.id)
        self._faults.reach("after_commit", message.id)
        # Replies and email jobs at once: the bus sends the publishes of one loop turn as one batch, with
        # one wait for the broker's confirms, where one topic after the other waited twice.
        replay = outcome == "replayed"
        topics = envelopes_of(message, recorded, replay).items()
        publishes = [self._publish(route, topic, envelopes) for topic, envelopes in topics if envelopes]
        desk_posts = desk_envelopes_of(message, recorded, replay)
        if desk_posts:
            publishes.append(self.bus.publish(Topic.OUTBOUND, desk_posts))
        if len(publishes) == 1:
            await publishes[0]  # most turns: no task, no extra turn of the loop
        elif publishes:
            for failure in await asyncio.gather(*publishes, return_exceptions=True):
                if isinstance(failure, BaseException):
                    raise failure
        if timers is not None:
            await timers.apply(message, recorded)
        if desks is not None and any(item[:1] == GROUP_TAG for item in recorded):
            await desks.apply(self.store, message, recorded, self.clock())
        self._faults.reach("after_publish", message.id)
        if self.users is not None and message.kind == "message" and message.timer is None:
            await self._note_user(message)
        self.metrics.handled.labels(outcome).inc()
        self.metrics.handle_seconds.observe(time.perf_counter() - started)

    async def _desk_turn(
        self,
        delivery: Delivery,
        engine: Engine,
        snapshot: Snapshot,
        message: Inbound,
        desk: DeskTurn,
        now: float,
    ) -> tuple[Turn, list[bytes], Commit, TimedTurn | None]:
        """The turn a desk decided: a person's answers and the desk's posts, and, once handed back, the
        ``resume`` story run like any turn (its http calls, its timers)."""
        session = desk.session
        turn = Turn(session, {}, list(desk.replies), [], "desk")
        timed: TimedTurn | None = None
        records = dict(desk.records)
        extra: list[bytes] = []
        if desk.handed_back is not None:
            route = desk.route or message
            resumed: Turn | None = None
            if desk.resume is not None:
                story = desk.resume
                # Its own id: the answers' replies keep theirs, the resumed story's start at r0 of this one.
                start = route.model_copy(update={"id": f"{message.id}/resume"})
                resumed = await self._turn(
                    delivery,
                    start,
                    lambda answers: engine.resume(session, snapshot.user, start, story, now, answers),
                )
                replies = [*desk.replies, *resumed.replies]
                turn = Turn(resumed.session, resumed.user_changes, replies, resumed.emails, "resume",
                            resumed.warnings, follow_ups=resumed.follow_ups)  # fmt: skip
            if self.timers is not None:
                timed = self.timers.finish(
                    engine, snapshot, route, self.timers.state_of(snapshot, route), turn, now
                )
                records.update(timed.records)
                extra = timed.outputs
            if resumed is not None and self.desks is not None:
                after = self.desks.after_engine(engine, snapshot, message, resumed, now, desk.transcript)
                records.update(after.records)  # the transcript, or a handoff the resumed story opened again
                extra += record_outputs(Turn(None, {}, [], []), after)
                if after.events:
                    desk = replace(desk, events=(*desk.events, *after.events))
        outputs = record_outputs(turn, desk) + extra
        return turn, outputs, Commit(message.id, turn.session, turn.user_changes, outputs, records), timed

    async def _note_user(self, message: Inbound) -> None:
        """Tell the user index the user wrote (retention counts from it) and, from a direct chat, where a
        broadcast reaches them. After the commit, so a replay (after a failure here) does it again."""
        assert self.users is not None
        chat = message.chat if direct_chat(message.channel, message.chat, message.user) else None
        instance = message.meta.get(INSTANCE_META)
        meta = {INSTANCE_META: instance} if instance else {}
        await self.users.touch(message.channel, message.user, message.sent_at, chat, meta)

    @staticmethod
    def _handling(
        engine: Engine, snapshot: Snapshot, message: Inbound, now: float
    ) -> Callable[[Sequence[HttpAnswer]], Turn]:
        return lambda answers: engine.handle(snapshot.session, snapshot.user, message, now, answers)

    async def _turn(
        self, delivery: Delivery, message: Inbound, run: Callable[[Sequence[HttpAnswer]], T]
    ) -> T:
        """The finished turn: ``run`` (the engine, given the answers so far) again with one more answer
        after each call it stops at (a timer's target that is gone gives no turn at all)."""
        turn = run(())
        if turn is None or turn.call is None:
            return turn
        made = self._made.setdefault(message.id, [])
        self._made.move_to_end(message.id)
        while len(self._made) > MAX_REMEMBERED:
            self._made.popitem(last=False)
        answers: list[HttpAnswer] = []
        while turn is not None and turn.call is not None:
            request, n = turn.call, len(answers)
            if n < len(made) and made[n][0] == request:
                answer = made[n][1]  # made before this in-place retry: not again
            else:
                del made[n:]
                async with delivery.aside():  # other conversations use the slot while this one waits
                    answer = await self.caller.call(request)
                made.append((request, answer))
                self._faults.reach("after_call", message.id)
            answers.append(answer)
            turn = run(answers)
        return turn

    async def _publish(self, message: Inbound, topic: Topic, envelopes: list[Envelope]) -> None:
        instance = message.meta.get(INSTANCE_META)
        if topic is not Topic.OUTBOUND or not instance:
            await self.bus.publish(topic, envelopes)
        elif not await self.bus.publish_direct(topic, instance, envelopes):
            log.info(
                "serve instance %s is gone: %d replies to %s dropped", instance, len(envelopes), message.id
            )
        timeline.mark(f"{topic}.published", message.id)

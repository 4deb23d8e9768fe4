"""One gateway in this process for one conversation test: the real worker, deliverer and mailer path.

The embedded bus and the in-memory store carry the messages; a simulated clock drives the store's
expiry, the worker's timestamps and the timers, so "the session expires here" moves time instead of
sleeping, and the timers due meanwhile fire at their due times (:func:`worker.timers.simulation.pass_time`).
The stories' http calls get the test's canned answers (``caller``), never the network.
Support desks are the real worker side of a handoff with fixed test values for the secret key and the
desk's inbox address; a person's answer is published as the inbox or the Slack channel would publish it,
and what the desks get is captured: Slack desk posts by a capturing "slack" channel, ticket emails by the
mail transport.
Each test gets its own rig, so no state leaks between tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Literal

from channels.delivery import Deliverer
from designer.conversation_tests.capture import CapturingChannel, CapturingTransport
from gateway.core.bus.base import DeadLetter, Envelope, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.metrics import Metrics
from gateway.core.schedule.memory import MemorySchedule
from gateway.core.schema import ButtonPress, ConversationKey, Inbound, Reply
from gateway.core.store.base import Commit
from gateway.core.store.memory import MemoryStore
from mailer.service import Mailer
from worker.engine import Engine
from worker.handoff import DeskTurns
from worker.http import Caller, CannedCaller
from worker.service import StoryWorker
from worker.timers.poller import TimerPoller
from worker.timers.simulation import pass_time
from worker.timers.turns import TimerTurns

START_TIME = 1_700_000_000.0
SECONDS_PER_MESSAGE = 1.0  # simulated time between two messages of the user
# The desks of every conversation test: a handoff to an email desk needs a key to sign its reply
# address with and the desk's inbox address (GATEWAY_SECRET_KEY, GATEWAY_INBOX_ADDRESS in production).
TEST_SECRET_KEY = "conversation-tests-secret-key"
TEST_INBOX_ADDRESS = "desk@bot.example.com"
AGENT_NAME = "Agent"  # the name a person's answer from the desk is signed with
DESK_CHANNEL = "slack"  # where Slack desk posts go


class SimulatedClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = START_TIME) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set_to(self, now: float) -> None:
        self.now = max(self.now, now)


class InProcessGateway:
    """Bus, store, story worker, deliverer and mailer for one conversation on one channel."""

    def __init__(
        self,
        engine: Engine,
        key: ConversationKey,
        *,
        mail_from: str,
        metrics: Metrics | None = None,
        caller: Caller | None = None,
    ) -> None:
        self.key = key
        self.clock = SimulatedClock()
        metrics = metrics or Metrics()
        # max_attempts=1: a handler that raises is dead-lettered at once (and reported), never retried
        # with real back-off sleeps.
        self.bus = MemoryBus(partitions=1, max_attempts=1)
        self.store = MemoryStore(clock=self.clock)
        self.replies: list[Reply] = []  # to the user and to a Slack desk, in the order delivered
        self.channel = CapturingChannel(key.channel, self.replies)
        channels = {key.channel: self.channel}
        if key.channel != DESK_CHANNEL:
            channels[DESK_CHANNEL] = CapturingChannel(DESK_CHANNEL, self.replies)
        self.transport = CapturingTransport()
        self.schedule = MemorySchedule(clock=self.clock)
        self.poller = TimerPoller(self.schedule, self.bus, holder="test", clock=self.clock, metrics=metrics)
        timers = TimerTurns(self.schedule, self.bus.partitions, metrics=metrics, poller=self.poller)
        self.caller = caller if caller is not None else CannedCaller()
        self.worker = StoryWorker(
            self.bus,
            self.store,
            lambda: engine,
            metrics=metrics,
            clock=self.clock,
            caller=self.caller,
            timers=timers,
            desks=DeskTurns(secret_key=TEST_SECRET_KEY, inbox_address=TEST_INBOX_ADDRESS, metrics=metrics),
        )
        self.deliverer = Deliverer(self.bus, self.store, channels, metrics, rate_limits=False)
        self.mailer = Mailer(self.bus, self.store, self.transport, mail_from=mail_from)
        self._ids = itertools.count(1)
        self._dead_seen: dict[Topic, int] = dict.fromkeys(Topic, 0)

    async def __aenter__(self) -> InProcessGateway:
        await self.bus.start()
        await self.mailer.start(concurrency=1)  # one at a time: emails are captured in the order sent
        await self.deliverer.start(concurrency=1)
        await self.worker.start(concurrency=1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.worker.stop(1.0)
        await self.deliverer.stop(1.0)
        await self.mailer.stop(1.0)
        await self.bus.close()

    async def preset(self, attributes: Mapping[str, str]) -> None:
        """Give the user these attributes before the conversation starts (as an earlier story would)."""
        commit = Commit(f"{self.key.channel}:preset", None, dict(attributes))
        await self.store.commit(self.key, commit)

    async def send(self, text: str, button: ButtonPress | None = None) -> list[DeadLetter]:
        """One message from the user, handled completely; returns what the pipeline dead-lettered."""
        self.clock.advance(SECONDS_PER_MESSAGE)
        number = next(self._ids)
        message = Inbound(
            id=f"{self.key.channel}:test:{number}",
            channel=self.key.channel,
            chat=self.key.chat,
            user=self.key.user,
            channel_message_id=str(number),
            text=text,
            button=button,
            sent_at=self.clock.now,
        )
        return await self._handle(message)

    async def agent_says(self, text: str) -> list[DeadLetter]:
        """A person's answer from the desk of this conversation, as the inbox or the Slack channel
        publishes it; handled completely. Returns what the pipeline dead-lettered."""
        return await self._from_desk("staff", text)

    async def hand_back(self) -> list[DeadLetter]:
        """The desk's "Hand back" button, as the Slack channel publishes it; handled completely."""
        return await self._from_desk("handback", "")

    async def _from_desk(self, kind: Literal["staff", "handback"], text: str) -> list[DeadLetter]:
        self.clock.advance(SECONDS_PER_MESSAGE)
        number = next(self._ids)
        message = Inbound(
            id=f"{self.key.channel}:test:{kind}:{number}",
            channel=self.key.channel,
            chat=self.key.chat,
            user=self.key.user,
            text=text,
            sent_at=self.clock.now,
            user_name=AGENT_NAME,
            kind=kind,
        )
        return await self._handle(message)

    async def _handle(self, message: Inbound) -> list[DeadLetter]:
        envelope = Envelope(message.to_json(), message.id, str(message.conversation))
        await self.bus.publish(Topic.INBOUND, [envelope])
        await self.bus.join()
        return await self._new_dead_letters()

    async def pass_time(self, seconds: float) -> list[DeadLetter]:
        """Simulated time passes; each timer due meanwhile fires at its due time and is handled completely.
        Returns what the pipeline dead-lettered."""
        await pass_time(self.poller, self.clock, self.clock() + seconds, self.bus.join)
        return await self._new_dead_letters()

    async def session_ttl(self) -> float | None:
        """The idle TTL of the session open now, or None when there is none."""
        snapshot = await self.store.load(self.key, "-")
        return snapshot.session.ttl if snapshot.session is not None else None

    async def _new_dead_letters(self) -> list[DeadLetter]:
        new: list[DeadLetter] = []
        for topic in Topic:
            letters = await self.bus.dead_letters(topic, limit=1_000_000)
            new.extend(letters[self._dead_seen[topic] :])
            self._dead_seen[topic] = len(letters)
        return new

"""Timers in tests. In one process on simulated time (:class:`TimerRig`): the real story worker, timer
poller and deliverer on the embedded bus, the in-memory store and schedule, a channel that records, and a
clock the test moves (never a sleep). Across processes (e2e, clusters): stories whose question nudges
after a timeout, and checks that each nudge reached the fake Telegram once, never before its due time."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from channels.delivery import Deliverer
from designer.conversation_tests.capture import CapturingChannel
from gateway.core.bus.base import Delivery, Envelope, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.errors import StoreUnavailable
from gateway.core.metrics import Metrics
from gateway.core.schedule.base import DueTimers, Schedule, Scheduled
from gateway.core.schedule.memory import MemorySchedule
from gateway.core.schema import ConversationKey, EmailJob, Inbound, Reply, parse_email
from gateway.core.store.base import Store
from gateway.core.store.memory import MemoryStore
from gateway.core.store.users.base import UserIndex
from tests.support.engine import write
from tests.support.fakes import FakeTelegram
from worker.engine import Engine, load_stories
from worker.handoff import DeskTurns
from worker.service import StoryWorker
from worker.timers.pending import KIND, PendingTimers
from worker.timers.poller import TimerPoller
from worker.timers.simulation import pass_time
from worker.timers.turns import TimerTurns

START = 1_700_000_000.0


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set_to(self, now: float) -> None:
        assert now >= self.now, "simulated time never goes back"
        self.now = now


DESK_KEY = "test-secret-key"  # GATEWAY_SECRET_KEY of the rigs with desks
DESK_INBOX = "desk@bot.example.com"  # GATEWAY_INBOX_ADDRESS of the rigs with desks


class TimerRig:
    """One worker with its poller; ``say`` a message, ``wait`` simulated time, read ``replies``."""

    def __init__(
        self,
        tmp_path: Path,
        stories: str,
        *,
        partitions: int = 4,
        schedule: Schedule | None = None,
        holder: str = "worker-1",
        users: UserIndex | None = None,
        desks: bool = False,
    ) -> None:
        self.folder = write(tmp_path / "stories", {"bot.yml": stories})
        self.engine = Engine(load_stories(self.folder, tmp_path / "emails"))
        self.clock = Clock()
        self.metrics = Metrics()
        self.bus = MemoryBus(partitions=partitions, max_attempts=3)
        self.store = MemoryStore(clock=self.clock)
        self.schedule = schedule if schedule is not None else MemorySchedule(clock=self.clock)
        self.poller = TimerPoller(
            self.schedule, self.bus, holder=holder, clock=self.clock, metrics=self.metrics
        )
        self.timers = TimerTurns(self.schedule, partitions, metrics=self.metrics, poller=self.poller)
        self.worker = StoryWorker(
            self.bus,
            self.store,
            lambda: self.engine,
            metrics=self.metrics,
            clock=self.clock,
            timers=self.timers,
            users=users,
            desks=DeskTurns(DESK_KEY, DESK_INBOX, metrics=self.metrics) if desks else None,
        )
        self.channel = CapturingChannel("test")
        self.slack = CapturingChannel("slack")  # a Slack desk's posts
        self.emails: list[EmailJob] = []  # the email jobs published (a ticket and its follow-ups)
        self.deliverer = Deliverer(
            self.bus, self.store, {"test": self.channel, "slack": self.slack}, self.metrics, rate_limits=False
        )
        self._ids = itertools.count(1)

    @property
    def replies(self) -> list[Reply]:
        """Every reply delivered to the channel, in order."""
        return self.channel.replies

    def reload(self, stories: str) -> None:
        """A redeploy with changed stories."""
        write(self.folder, {"bot.yml": stories})
        self.engine = Engine(load_stories(self.folder, self.folder.parent / "emails"))

    async def __aenter__(self) -> TimerRig:
        await self.bus.start()
        await self.bus.subscribe(Topic.EMAIL, self._email, concurrency=1)
        await self.deliverer.start(concurrency=1)
        await self.worker.start(concurrency=8)
        await self.poller.renew()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.worker.stop(1.0)
        await self.deliverer.stop(1.0)
        await self.bus.close()

    async def _email(self, delivery: Delivery) -> None:
        self.emails.append(parse_email(delivery.envelope.body))

    def message(self, text: str, user: str = "u1", **meta: str) -> Inbound:
        number = next(self._ids)
        return Inbound(
            id=f"test:{user}:{number}", channel="test", chat=user, user=user, text=text,
            sent_at=self.clock(), meta=meta,
        )  # fmt: skip

    async def publish(self, messages: Sequence[Inbound]) -> None:
        """Put messages on the inbound topic together (one batch: their order is the order given)."""
        await self.bus.publish(
            Topic.INBOUND, [Envelope(m.to_json(), m.id, str(m.conversation)) for m in messages]
        )
        await self.bus.join()

    async def say(self, text: str, user: str = "u1", **meta: str) -> list[str]:
        """A message from ``user``, handled completely; the texts of the replies it caused."""
        before = len(self.replies)
        await self.publish([self.message(text, user, **meta)])
        return [reply.text for reply in self.replies[before:]]

    async def wait(self, seconds: float) -> list[str]:
        """Let simulated time pass; the texts of the replies of the timers that fired meanwhile."""
        before = len(self.replies)
        await pass_time(self.poller, self.clock, self.clock() + seconds, self.bus.join)
        return [reply.text for reply in self.replies[before:]]

    async def pending(self, user: str = "u1") -> PendingTimers:
        key = ConversationKey("test", user, user)
        snapshot = await self.store.load(key, "-", (KIND,))
        return PendingTimers.decode(snapshot.records.get(KIND), key)

    async def scheduled(self) -> int:
        return sum([await self.schedule.count(p) for p in range(self.bus.partitions)])


class CountingSchedule(Schedule):
    """A schedule that counts its calls and can be told to fail, like Redis going away."""

    def __init__(self, inner: Schedule) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}
        self.failing = False

    def _call(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.failing:
            raise StoreUnavailable("redis: away")

    async def change(
        self, partition: int, add: Sequence[Scheduled] = (), remove: Sequence[Scheduled] = ()
    ) -> None:
        self._call("change")
        await self.inner.change(partition, add, remove)

    async def due(self, partition: int, now_ms: int, limit: int) -> DueTimers:
        self._call("due")
        return await self.inner.due(partition, now_ms, limit)

    async def count(self, partition: int) -> int:
        self._call("count")
        return await self.inner.count(partition)

    async def hold(
        self, holder: str, partitions: int, ttl: float, *, claim: Collection[int] = (), release: bool = False
    ) -> frozenset[int]:
        self._call("hold")
        return await self.inner.hold(holder, partitions, ttl, claim=claim, release=release)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        await self.inner.close()


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll a condition of this process until it holds, with a deadline (for what no event tells, such as
    a poller's background loop having done something)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- across processes -------------------------------------------------------------------------------

ASKED = ["Your email?", "Still there?"]


def nudge_stories(after: float) -> str:
    """ "ask" asks for an email and nudges once after ``after`` seconds with no answer."""
    return f"""\
bot:
  fallback: fallback
stories:
  ask:
    triggers: [ask]
    steps:
      - id: question
        actions:
          - message: {ASKED[0]}
        expect: email
        next: thanks
        timeout: {{after: {after:g}s, goto: nudge}}
      - id: nudge
        actions:
          - message: {ASKED[1]}
        expect: email
        next: thanks
      - id: thanks
        actions:
          - message: Thanks.
  fallback:
    steps:
      - id: sorry
        actions:
          - message: Say ask.
"""


def chat_key(chat: int) -> ConversationKey:
    """A Telegram private chat's conversation."""
    return ConversationKey("telegram", str(chat), str(chat))


async def pending_due_times(store: Store, chats: Sequence[int]) -> dict[int, float]:
    """When each chat's one pending timer is due, as committed (seconds since the epoch)."""
    found = {}
    for chat in chats:
        snapshot = await store.load(chat_key(chat), "-", (KIND,))
        (timer,) = PendingTimers.decode(snapshot.records.get(KIND), chat_key(chat)).timers
        found[chat] = timer.due_ms / 1000
    return found


def assert_nudged_once_never_early(telegram: FakeTelegram, due: Mapping[int, float]) -> None:
    """Each chat got the question and one nudge, which arrived no sooner than its due time."""
    for chat, at in due.items():
        calls = [
            c for c in telegram.calls_to("sendMessage", ok=True) if str(c.params.get("chat_id")) == str(chat)
        ]
        assert [c.params.get("text") for c in calls] == ASKED, chat
        arrived = calls[1].at
        assert arrived >= at, f"chat {chat}: nudged {at - arrived:.3f} s early"

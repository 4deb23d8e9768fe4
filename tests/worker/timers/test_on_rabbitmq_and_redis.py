"""Timers on the real parts, in one process: the story worker and the poller on RabbitMQ (packed batches,
partitions) and Redis (the store's commit script, the schedule's scripts), in real time with one-second
timers. The separate-process faults (kill -9, broker cut, Redis restart) are in tests/e2e/test_timers.py."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.core.bus.base import Delivery, Envelope, Topic
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.metrics import Metrics
from gateway.core.schedule.redis import RedisSchedule
from gateway.core.schema import ConversationKey, Inbound, Reply, parse_reply
from gateway.core.store.redis import RedisStore
from tests.support.engine import write
from tests.support.timers import until
from worker.engine import Engine, load_stories
from worker.service import StoryWorker
from worker.timers.pending import KIND, PendingTimer, PendingTimers, firing
from worker.timers.poller import TimerPoller
from worker.timers.turns import TimerTurns

STORIES = """\
stories:
  signup:
    triggers: [signup]
    steps:
      - id: ask
        actions:
          - message: Your email?
        expect: email
        next: saved
        timeout: {after: 1s, goto: nudge}
      - id: nudge
        actions:
          - message: Still there?
        expect: email
        next: saved
      - id: saved
        actions:
          - message: Saved.
"""


class Deployment:
    def __init__(self, bus: RabbitBus, store: RedisStore, schedule: RedisSchedule, engine: Engine) -> None:
        self.bus, self.store, self.schedule = bus, store, schedule
        self.metrics = Metrics()
        self.poller = TimerPoller(schedule, bus, holder="w1", metrics=self.metrics, renew_every=0.5)
        timers = TimerTurns(schedule, bus.partitions, metrics=self.metrics, poller=self.poller)
        self.worker = StoryWorker(bus, store, lambda: engine, metrics=self.metrics, timers=timers)
        self.replies: list[Reply] = []

    async def capture(self, delivery: Delivery) -> None:
        self.replies.append(parse_reply(delivery.envelope.body))

    def said(self, user: str) -> list[str]:
        return [reply.text for reply in self.replies if reply.user == user]

    async def send(self, *messages: Inbound) -> None:
        """Published together: one packed broker message per partition, in this order."""
        await self.bus.publish(
            Topic.INBOUND, [Envelope(m.to_json(), m.id, str(m.conversation)) for m in messages]
        )

    async def pending(self, user: str) -> tuple[PendingTimer, ...]:
        key = ConversationKey("test", user, user)
        snapshot = await self.store.load(key, "-", (KIND,))
        return PendingTimers.decode(snapshot.records.get(KIND), key).timers


def message(user: str, n: int, text: str) -> Inbound:
    return Inbound(id=f"test:{user}:{n}", channel="test", chat=user, user=user, text=text)


@pytest.fixture
async def deployment(
    tmp_path: Path, amqp_url: str, queue_prefix: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Deployment]:
    engine = Engine(load_stories(write(tmp_path / "stories", {"bot.yml": STORIES}), tmp_path / "emails"))
    bus = RabbitBus(amqp_url, prefix=queue_prefix, partitions=2)
    store = RedisStore(redis_url, prefix=redis_prefix)
    schedule = RedisSchedule(redis_url, prefix=redis_prefix)
    await bus.start()
    deployed = Deployment(bus, store, schedule, engine)
    await bus.subscribe(Topic.OUTBOUND, deployed.capture)
    await deployed.worker.start()
    try:
        yield deployed
    finally:
        await deployed.poller.stop()
        await deployed.worker.stop(2.0)
        await bus.close()
        await store.close()
        await schedule.close()


async def test_a_timeout_fires_once_and_never_early(deployment: Deployment) -> None:
    deployment.poller.start()
    await deployment.send(message("ann", 1, "signup"))
    await until(lambda: deployment.said("ann") == ["Your email?"])
    (timeout,) = await deployment.pending("ann")
    await until(lambda: len(deployment.said("ann")) == 2, timeout=10)
    nudge = deployment.replies[-1]
    assert nudge.text == "Still there?" and nudge.created_at >= timeout.due_ms / 1000
    assert await deployment.pending("ann") == ()
    assert sum([await deployment.schedule.count(p) for p in range(2)]) == 0
    await deployment.send(message("ann", 2, "ann@example.com"))
    await until(lambda: deployment.said("ann") == ["Your email?", "Still there?", "Saved."])
    assert deployment.metrics.timers_fired.labels("timeout")._value.get() == 1


@pytest.mark.parametrize("first", ["user", "timer"])
async def test_a_message_and_a_firing_published_together_keep_their_order(
    deployment: Deployment, first: str
) -> None:
    """The poller is not running: the test publishes the firing itself, in one packed batch with the
    answer, as if both had arrived at the same instant."""
    await deployment.send(message("bob", 1, "signup"))
    await until(lambda: deployment.said("bob") == ["Your email?"])
    (timeout,) = await deployment.pending("bob")
    fire = firing(ConversationKey("test", "bob", "bob"), timeout.id, timeout.due_ms)
    answer = message("bob", 2, "bob@example.com")
    await until(lambda: time.time() * 1000 >= timeout.due_ms)  # the firing is due now
    await deployment.send(*([answer, fire] if first == "user" else [fire, answer]))
    expected = ["Your email?", "Saved."] if first == "user" else ["Your email?", "Still there?", "Saved."]
    await until(lambda: len(deployment.said("bob")) >= len(expected), timeout=10)
    await deployment.send(message("bob", 3, "signup"))  # one more turn: anything else would show by now
    await until(
        lambda: deployment.said("bob")[-1:] == ["Your email?"] and len(deployment.said("bob")) > len(expected)
    )
    assert deployment.said("bob") == [*expected, "Your email?"]

"""The timer poller on its own loop, in real (short) time: it sleeps until the next due time, wakes for a
nearer timer scheduled in its process, polls the partitions its process consumes, takes over those whose
poller died, and retries through outages. Waits are for events, with deadlines."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.core.bus.base import Delivery, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.schedule.base import Scheduled
from gateway.core.schedule.memory import MemorySchedule
from gateway.core.schema import ConversationKey, Inbound, parse_inbound
from tests.support.timers import CountingSchedule, TimerRig, until
from worker.timers.poller import TimerPoller

ANN = ConversationKey("test", "ann", "ann")


class Firings:
    """The firings a poller publishes, with when they arrived."""

    def __init__(self) -> None:
        self.got: list[tuple[float, Inbound]] = []

    async def handle(self, delivery: Delivery) -> None:
        self.got.append((time.time(), parse_inbound(delivery.envelope.body)))


async def started(bus: MemoryBus, firings: Firings) -> None:
    await bus.start()
    await bus.subscribe(Topic.INBOUND, firings.handle)


def now_ms(offset: float = 0.0) -> int:
    return int((time.time() + offset) * 1000)


async def test_it_sleeps_until_the_next_due_time_and_fires_then(tmp_path: Path) -> None:
    bus, firings = MemoryBus(partitions=2), Firings()
    await started(bus, firings)
    schedule = CountingSchedule(MemorySchedule())
    due = now_ms(0.4)
    await schedule.change(1, add=[Scheduled(due, ANN, "t0")])
    poller = TimerPoller(schedule, bus, holder="w", renew_every=60.0)
    poller.start()
    try:
        await until(lambda: firings.got, timeout=5)
        ((arrived, message),) = firings.got
        assert arrived * 1000 >= due, "never early"
        assert (message.id, message.timer, message.sent_at) == ("timer:test/ann/ann:t0", "t0", due / 1000)
        assert schedule.calls["due"] <= 4, f"no busy polling while waiting: {schedule.calls}"
        assert await schedule.count(1) == 0, "a fired timer leaves the schedule"
    finally:
        await poller.stop()
        await bus.close()


async def test_a_nearer_timer_scheduled_in_its_process_wakes_it(tmp_path: Path) -> None:
    bus, firings = MemoryBus(partitions=1), Firings()
    await started(bus, firings)
    schedule = MemorySchedule()
    await schedule.change(0, add=[Scheduled(now_ms(3600), ANN, "far")])
    poller = TimerPoller(schedule, bus, holder="w", renew_every=60.0)
    poller.start()
    try:
        await until(lambda: poller.held == {0})
        near = now_ms(0.2)
        await schedule.change(0, add=[Scheduled(near, ANN, "near")])
        poller.scheduled(0, near)  # what the worker does after applying a turn's schedule change
        await until(lambda: firings.got, timeout=2)
        assert [m.timer for _, m in firings.got] == ["near"]
    finally:
        await poller.stop()
        await bus.close()


async def test_the_process_consuming_a_partition_claims_its_lease(tmp_path: Path) -> None:
    """A worker handling a message of a partition polls that partition from then on."""
    schedule = MemorySchedule()
    other = TimerPoller(schedule, MemoryBus(partitions=4), holder="other", renew_every=60.0)
    await other.renew()
    assert other.held == {0, 1, 2, 3}
    async with TimerRig(tmp_path, _STORIES, schedule=schedule, holder="me") as rig:
        assert rig.poller.held == frozenset()
        rig.poller.start()
        try:
            await rig.say("hi")
            partition = rig.timers.partition(ConversationKey("test", "u1", "u1"))
            await until(lambda: rig.poller.held == {partition})
            await other.renew()
            assert other.held == {0, 1, 2, 3} - {partition}
        finally:
            await rig.poller.stop()


async def test_a_dead_pollers_partitions_are_taken_over_when_its_leases_run_out() -> None:
    bus, firings = MemoryBus(partitions=2), Firings()
    await started(bus, firings)
    schedule = MemorySchedule()
    dead = TimerPoller(schedule, bus, holder="dead", lease_ttl=0.3)
    await dead.renew()  # it holds both partitions, then dies without a word
    await schedule.change(0, add=[Scheduled(now_ms(), ANN, "t0")])
    alive = TimerPoller(schedule, bus, holder="alive", lease_ttl=0.3, renew_every=0.1)
    alive.start()
    try:
        await until(lambda: firings.got, timeout=5)
        assert alive.held == {0, 1}
    finally:
        await alive.stop()
        await bus.close()


async def test_a_clean_stop_hands_the_leases_over_at_once() -> None:
    schedule = MemorySchedule()
    bus = MemoryBus(partitions=2)
    leaving = TimerPoller(schedule, bus, holder="leaving", lease_ttl=3600)
    await leaving.renew()
    await leaving.stop()
    staying = TimerPoller(schedule, bus, holder="staying", lease_ttl=3600)
    await staying.renew()
    assert staying.held == {0, 1}


async def test_an_outage_is_retried_and_nothing_is_lost() -> None:
    bus, firings = MemoryBus(partitions=1), Firings()
    await started(bus, firings)
    schedule = CountingSchedule(MemorySchedule())
    await schedule.change(0, add=[Scheduled(now_ms(), ANN, "t0")])
    schedule.failing = True
    poller = TimerPoller(schedule, bus, holder="w", retry_max=0.05)
    poller.start()
    try:
        await until(lambda: schedule.calls.get("hold", 0) >= 3)
        assert firings.got == []
        schedule.failing = False
        await until(lambda: firings.got, timeout=5)
        assert [m.timer for _, m in firings.got] == ["t0"]
    finally:
        await poller.stop()
        await bus.close()


_STORIES = """\
stories:
  hello:
    triggers: [hi]
    steps:
      - id: hello
        actions:
          - message: Hello.
"""

"""One contract for every Schedule: the same tests run on MemorySchedule and on RedisSchedule (real Redis).

Time: the memory schedule's leases read an injected clock, which the tests move; Redis times leases by its
own clock, so there the tests use a short TTL and poll with a deadline for it to run out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from gateway.core.schedule.base import DueTimers, Schedule, Scheduled
from gateway.core.schedule.memory import MemorySchedule
from gateway.core.schedule.redis import RedisSchedule, decode_member, encode_member
from gateway.core.schema import ConversationKey
from tests.support.clusters import RedisCluster

ANN = ConversationKey("telegram", "42", "42")
BOB = ConversationKey("slack", "C1", "U2")
T0 = 1_700_000_000_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    schedule: Schedule
    clock: FakeClock | None  # None: Redis's own clock
    lease_ttl: float

    def let_leases_run_out(self) -> None:
        """Memory: move the clock past the TTL. Redis runs out on its own clock: the test polls."""
        if self.clock is not None:
            self.clock.now += self.lease_ttl


@pytest.fixture(params=["memory", "redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)])
async def harness(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = FakeClock()
        h = Harness(MemorySchedule(clock=clock), clock, lease_ttl=30.0)
    elif request.param == "redis-cluster":  # the same contract on a 6-node Redis Cluster of its own
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        h = Harness(RedisSchedule(cluster.url, prefix=redis_prefix, cluster=True), None, lease_ttl=0.2)
    else:
        h = Harness(RedisSchedule(redis_url, prefix=redis_prefix), None, lease_ttl=0.2)
    try:
        yield h
    finally:
        await h.schedule.close()


@pytest.fixture
def schedule(harness: Harness) -> Schedule:
    return harness.schedule


def at(offset_ms: int, conversation: ConversationKey = ANN, timer: str = "t0") -> Scheduled:
    return Scheduled(T0 + offset_ms, conversation, timer)


async def test_nothing_is_due_in_an_empty_schedule(schedule: Schedule) -> None:
    assert await schedule.due(0, T0, 100) == DueTimers((), None)
    assert await schedule.count(0) == 0
    assert await schedule.ping() is True


async def test_due_entries_come_earliest_first_and_the_rest_wait(schedule: Schedule) -> None:
    late, early, middle = at(3000, timer="c"), at(1000, BOB, "a"), at(2000, timer="b")
    await schedule.change(3, add=[late, early, middle])
    assert await schedule.due(3, T0 + 999, 100) == DueTimers((), T0 + 1000), "never early"
    assert await schedule.due(3, T0 + 1000, 100) == DueTimers((early,), T0 + 2000), "due at its very ms"
    assert await schedule.due(3, T0 + 5000, 100) == DueTimers((early, middle, late), None)
    assert await schedule.due(3, T0 + 5000, 2) == DueTimers((early, middle), T0 + 3000)
    assert await schedule.count(3) == 3
    # due() leaves them in place: the poller removes what it has fired
    await schedule.change(3, remove=[early, middle])
    assert await schedule.due(3, T0 + 5000, 100) == DueTimers((late,), None)


async def test_partitions_are_apart(schedule: Schedule) -> None:
    await schedule.change(0, add=[at(0)])
    await schedule.change(1, add=[at(5, BOB)])
    assert (await schedule.due(0, T0 + 10, 10)).timers == (at(0),)
    assert (await schedule.due(1, T0 + 10, 10)).timers == (at(5, BOB),)
    assert (await schedule.count(0), await schedule.count(1), await schedule.count(2)) == (1, 1, 0)


async def test_changes_applied_again_change_nothing(schedule: Schedule) -> None:
    """A turn's schedule changes are re-applied when its message is handled again after a crash."""
    one, two, gone = at(10, timer="x1"), at(10, timer="x2"), at(20, timer="x3")
    for _ in range(2):
        await schedule.change(0, add=[one, two, gone], remove=[])
        await schedule.change(0, add=[], remove=[gone])
    await schedule.change(0, remove=[at(99, BOB, "never-added")])
    assert await schedule.due(0, T0 + 100, 10) == DueTimers((one, two), None)
    await schedule.change(0)  # nothing at all is fine too


async def test_ids_with_separators_survive_the_round_trip(schedule: Schedule) -> None:
    odd = ConversationKey("web chat", "room:1{x}%", "user:1 {y}")
    same = ConversationKey("sms", "+4470:0", "+4470:0")
    entries = [at(1, odd, "a_b-1"), at(2, same, "Zz9"), at(3, ConversationKey("x", "u", "u"), "t")]
    await schedule.change(7, add=entries)
    assert (await schedule.due(7, T0 + 3, 10)).timers == tuple(entries)


def test_members_are_short_and_read_back() -> None:
    # the chat is left out when it is the user
    assert encode_member(ANN, "AbCdEfGh0") == "telegram::42:AbCdEfGh0"
    assert decode_member("telegram::42:AbCdEfGh0") == (ANN, "AbCdEfGh0")
    assert decode_member(encode_member(BOB, "t")) == (BOB, "t")


async def test_many_entries_in_one_change(schedule: Schedule) -> None:
    entries = [at(n, ConversationKey("c", f"u{n}", f"u{n}"), "t") for n in range(2500)]
    await schedule.change(2, add=entries)
    assert await schedule.count(2) == 2500
    assert (await schedule.due(2, T0 + 10_000, 3000)).timers == tuple(entries)
    await schedule.change(2, remove=entries)
    assert await schedule.count(2) == 0


async def test_the_first_holder_takes_the_free_partitions_and_keeps_them(harness: Harness) -> None:
    schedule = harness.schedule
    ttl = harness.lease_ttl * 5
    assert await schedule.hold("a", 4, ttl) == frozenset({0, 1, 2, 3})
    assert await schedule.hold("b", 4, ttl) == frozenset(), "held by another: not taken"
    assert await schedule.hold("a", 4, ttl) == frozenset({0, 1, 2, 3}), "renewed"


async def test_a_claim_takes_a_partition_from_its_holder(harness: Harness) -> None:
    """The process consuming a partition claims it, so the timers it schedules wake its own poller."""
    schedule = harness.schedule
    ttl = harness.lease_ttl * 5
    await schedule.hold("a", 4, ttl)
    assert await schedule.hold("b", 4, ttl, claim={2}) == frozenset({2})
    assert await schedule.hold("a", 4, ttl) == frozenset({0, 1, 3}), "a learns it lost partition 2"
    assert await schedule.hold("b", 4, ttl) == frozenset({2})


async def test_leases_that_run_out_are_taken_by_another(harness: Harness) -> None:
    schedule = harness.schedule
    assert await schedule.hold("a", 3, harness.lease_ttl) == frozenset({0, 1, 2})
    harness.let_leases_run_out()
    deadline = time.monotonic() + 5
    while (held := await schedule.hold("b", 3, harness.lease_ttl * 50)) != frozenset({0, 1, 2}):
        assert time.monotonic() < deadline, f"b holds only {held}"
        await asyncio.sleep(0.02)
    assert await schedule.hold("a", 3, harness.lease_ttl) == frozenset(), "a's were taken: it holds none"


async def test_release_frees_only_the_holders_own(harness: Harness) -> None:
    schedule = harness.schedule
    ttl = harness.lease_ttl * 50
    await schedule.hold("a", 4, ttl)
    await schedule.hold("b", 4, ttl, claim={3})
    assert await schedule.hold("a", 4, ttl, release=True) == frozenset()
    assert await schedule.hold("c", 4, ttl) == frozenset({0, 1, 2}), "a's released leases are free at once"
    assert await schedule.hold("b", 4, ttl) == frozenset({3}), "b's lease was not a's to release"

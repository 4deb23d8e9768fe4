"""The Redis schedule's buckets: small sorted sets (compact in Redis's memory) that stay consistent with
their index through adds, removes and splits, and leave no key behind once empty. Checked against the
in-memory schedule on random operations."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateway.core.schedule.base import Scheduled
from gateway.core.schedule.buckets import BUCKET_SIZE, GRACE_MS
from gateway.core.schedule.memory import MemorySchedule
from gateway.core.schedule.redis import RedisSchedule
from gateway.core.schema import ConversationKey

T0 = 1_700_000_000_000


@pytest.fixture
async def schedule(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisSchedule]:
    made = RedisSchedule(redis_url, prefix=redis_prefix)
    yield made
    await made.close()


def entry(n: int, due: int) -> Scheduled:
    user = str(100_000_000 + n)
    return Scheduled(T0 + due, ConversationKey("telegram", user, user), f"t{n}")


async def buckets(schedule: RedisSchedule, partition: int) -> dict[str, tuple[float, int, str]]:
    """Bucket id → (lower bound, entries, encoding)."""
    client: aioredis.Redis = schedule.client
    found = {}
    for raw, bound in await client.zrange(schedule.keys.schedule(partition), 0, -1, withscores=True):
        key = schedule.keys.schedule_bucket(partition, raw.decode())
        found[raw.decode()] = (
            bound,
            await client.zcard(key),
            (await client.object("encoding", key)).decode(),
        )
    return found


async def test_buckets_stay_small_and_compact(schedule: RedisSchedule) -> None:
    rng = random.Random(7)
    entries = [entry(n, rng.randrange(0, 86_400_000)) for n in range(2000)]
    for first in range(0, 2000, 100):
        await schedule.change(0, add=entries[first : first + 100])
    found = await buckets(schedule, 0)
    assert len(found) >= 2000 // BUCKET_SIZE
    assert all(size <= BUCKET_SIZE and encoding == "listpack" for _, size, encoding in found.values())
    assert await schedule.count(0) == 2000
    due = await schedule.due(0, T0 + 86_400_000, 5000)
    assert due.timers == tuple(sorted(entries, key=lambda e: (e.due_ms, e.conversation.user)))


async def test_many_timers_due_at_one_millisecond_share_a_bucket(schedule: RedisSchedule) -> None:
    same = [entry(n, 1000) for n in range(300)]
    await schedule.change(0, add=[entry(9000, 5), *same, entry(9001, 2000)])
    sizes = sorted(size for _, size, _ in (await buckets(schedule, 0)).values())
    assert max(sizes) >= 300, "never split between two entries due at the same millisecond"
    await schedule.change(0, remove=same[:150])
    assert (await schedule.due(0, T0 + 1000, 1000)).timers == (entry(9000, 5), *same[150:])


async def test_an_emptied_partition_leaves_no_key(schedule: RedisSchedule) -> None:
    rng = random.Random(3)
    entries = [entry(n, rng.randrange(0, 10_000)) for n in range(500)]
    await schedule.change(1, add=entries)
    rng.shuffle(entries)
    for first in range(0, 500, 37):
        await schedule.change(1, remove=entries[first : first + 37])
    client: aioredis.Redis = schedule.client
    left = [key async for key in client.scan_iter(match=f"{schedule.keys.prefix}:*")]
    assert left == []


async def test_random_changes_agree_with_the_memory_schedule(schedule: RedisSchedule) -> None:
    rng = random.Random(11)
    model = MemorySchedule()
    live: list[Scheduled] = []
    for step in range(300):
        if live and rng.random() < 0.4:
            gone = rng.sample(live, k=min(len(live), rng.randrange(1, 20)))
            live = [e for e in live if e not in gone]
            changes = {"remove": gone}
        else:
            new = [
                entry(step * 100 + i, rng.choice([rng.randrange(0, 50_000), 777]))
                for i in range(rng.randrange(1, 30))
            ]
            live += new
            changes = {"add": new}
        await schedule.change(2, **changes)
        await model.change(2, **changes)
        now = T0 + rng.randrange(0, 60_000)
        limit = rng.randrange(1, 80)
        assert await schedule.due(2, now, limit) == await model.due(2, now, limit), step
    assert await schedule.count(2) == await model.count(2) == len(live)


async def test_every_key_expires_a_day_after_its_last_timer_is_due(schedule: RedisSchedule) -> None:
    """A backstop: a schedule that no poller reads any more does not stay forever."""
    soon = int(time.time() * 1000) + 60_000
    entries = [entry(n, soon - T0 + n * 1000) for n in range(500)]
    await schedule.change(0, add=entries)
    client: aioredis.Redis = schedule.client
    keys = [key async for key in client.scan_iter(match=f"{schedule.keys.prefix}:*")]
    assert len(keys) > 3
    for key in keys:
        expires = await client.pexpiretime(key)
        if key.decode() == schedule.keys.schedule(0):
            last = max(e.due_ms for e in entries)
        else:
            last = int(max(score for _, score in await client.zrange(key, 0, -1, withscores=True)))
        assert last + GRACE_MS <= expires <= last + GRACE_MS + 5000, key


async def test_a_bucket_that_expired_is_forgotten_and_the_rest_still_fire(schedule: RedisSchedule) -> None:
    entries = [entry(n, n * 10) for n in range(300)]
    await schedule.change(0, add=entries)
    found = await buckets(schedule, 0)
    first = min(found, key=lambda id_: found[id_][0])
    gone = found[first][1]
    await schedule.client.delete(schedule.keys.schedule_bucket(0, first))  # as if it had expired
    due = await schedule.due(0, T0 + 10_000, 1000)
    assert due.timers == tuple(entries[gone:])
    assert first not in await buckets(schedule, 0)

"""One contract for the broadcasts kept in the store, on memory and on the real Redis: one runner at a
time, progress written only by the runner holding the claim, a claim that runs out taken over."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from gateway.core.services import build_user_stores
from gateway.core.store.base import Store
from gateway.core.store.broadcasts.base import Broadcast, Broadcasts, Progress
from gateway.core.store.memory import MemoryStore
from gateway.core.store.redis import RedisStore
from tests.support.clusters import RedisCluster


def make_store(request: pytest.FixtureRequest, redis_url: str, redis_prefix: str) -> Store:
    """Memory, the local Redis, or a 6-node Redis Cluster of this run's own (marked ``cluster``)."""
    if request.param == "memory":
        return MemoryStore()
    if request.param == "redis":
        return RedisStore(redis_url, prefix=redis_prefix)
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return RedisStore(cluster.url, prefix=redis_prefix, cluster=True)


@pytest.fixture(params=["memory", "redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)])
async def broadcasts(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Broadcasts]:
    store = make_store(request, redis_url, redis_prefix)
    try:
        yield build_user_stores(store).broadcasts
    finally:
        await store.close()


def broadcast(broadcast_id: str = "b1") -> Broadcast:
    return Broadcast(broadcast_id, "promo", "telegram", '@user.Plan == "pro"', created_at=1.5, by="ops")


async def test_a_new_broadcast_is_pending_and_readable(broadcasts: Broadcasts) -> None:
    assert await broadcasts.get("b1") is None
    await broadcasts.create(broadcast())
    assert await broadcasts.get("b1") == broadcast()
    assert await broadcasts.pending() == ["b1"]
    assert broadcast().as_json()["matched"] == 0


async def test_one_runner_at_a_time_and_only_it_records_progress(broadcasts: Broadcasts) -> None:
    await broadcasts.create(broadcast())
    assert await broadcasts.claim("b1", "runner-a", 30) == broadcast()
    assert await broadcasts.claim("b1", "runner-b", 30) is None
    assert await broadcasts.claim("b1", "runner-a", 30) is not None, "the holder may claim again"
    progress = Progress(shard=3, cursor="user:ü", walked=30, matched=10, started=8, failed=2)
    assert await broadcasts.checkpoint("b1", "runner-b", progress, 30) is False
    assert await broadcasts.checkpoint("b1", "runner-a", progress, 30) is True
    kept = await broadcasts.get("b1")
    assert kept is not None and kept.progress == progress and kept.status == "running"
    await broadcasts.release("b1", "runner-b")  # not b's: nothing happens
    assert await broadcasts.claim("b1", "runner-b", 30) is None
    await broadcasts.release("b1", "runner-a")
    resumed = await broadcasts.claim("b1", "runner-b", 30)
    assert resumed is not None and resumed.progress == progress, "taken over where it was"
    assert await broadcasts.checkpoint("b1", "runner-a", Progress(), 30) is False


async def test_a_claim_that_runs_out_is_taken_over(broadcasts: Broadcasts) -> None:
    await broadcasts.create(broadcast())
    assert await broadcasts.claim("b1", "runner-a", 0.05) is not None
    deadline = time.monotonic() + 5
    while (await broadcasts.claim("b1", "runner-b", 30)) is None:
        assert time.monotonic() < deadline, "the claim never ran out"
        await asyncio.sleep(0.01)  # the claim runs out on the store's clock: nothing to wait on
    assert await broadcasts.checkpoint("b1", "runner-a", Progress(matched=1), 30) is False


async def test_finish_marks_it_done_keeps_the_counts_and_forgets_the_cursor(broadcasts: Broadcasts) -> None:
    await broadcasts.create(broadcast())
    await broadcasts.create(broadcast("b2"))
    await broadcasts.claim("b1", "runner-a", 30)
    final = Progress(shard=15, cursor="last-user", walked=9, matched=5, started=4, failed=1)
    assert await broadcasts.finish("b1", "runner-b", final, 99.0) is False
    assert await broadcasts.finish("b1", "runner-a", final, 99.0) is True
    done = await broadcasts.get("b1")
    assert done is not None
    assert (done.status, done.finished_at) == ("done", 99.0)
    assert done.progress == Progress(walked=9, matched=5, started=4, failed=1)
    assert done.progress.cursor == "", "a finished broadcast names no user"
    assert await broadcasts.pending() == ["b2"]
    assert await broadcasts.claim("b1", "runner-a", 30) is None
    assert await broadcasts.claim("unknown", "runner-a", 30) is None


async def test_an_id_that_could_break_a_key_is_refused(broadcasts: Broadcasts) -> None:
    for call in (broadcasts.get("a}b"), broadcasts.create(broadcast("a:b")), broadcasts.claim("", "r", 1)):
        with pytest.raises(ValueError, match="broadcast id"):
            await call

"""The store on a real Redis Cluster (GATEWAY_REDIS_CLUSTER=true): calls routed to their slot's master,
pipelined per master, and a master killed with kill -9 is an outage of a few seconds that the store reports
as StoreUnavailable (so the bus retries in place) and then rides out, nothing lost."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.crc import key_slot

from gateway.core.errors import StoreUnavailable
from gateway.core.schema import ConversationKey
from gateway.core.store.base import Commit, Record, Session
from gateway.core.store.keys import KeyBuilder
from gateway.core.store.redis import RedisStore
from tests.support.clusters import RedisCluster

pytestmark = pytest.mark.cluster


def conversations(count: int) -> list[ConversationKey]:
    return [ConversationKey("telegram", f"c{n}", f"u{n}-{uuid.uuid4().hex[:6]}") for n in range(count)]


async def test_conversations_spread_over_every_master(
    redis_cluster: RedisCluster,
) -> None:
    store = RedisStore(redis_cluster.url, prefix=f"gwtest{uuid.uuid4().hex[:6]}", cluster=True)
    keys = KeyBuilder(store.keys.prefix)
    try:
        many = conversations(60)
        results = await asyncio.gather(
            *(store.commit(key, Commit("m1", Session("s", "w"), {"n": key.user}, [b"r"])) for key in many)
        )
        assert all(results)
        snapshots = await asyncio.gather(*(store.load(key, "m1") for key in many))
        assert all(
            s.outputs == (b"r",) and s.user == {"n": key.user} for s, key in zip(snapshots, many, strict=True)
        )
        slots = {key_slot(keys.session(key).encode()) for key in many}
        owners = {redis_cluster.master_of_slot(slot) for slot in slots}
        assert len(owners) == 3, "the conversations live on all three masters"
        assert await store.ping()
    finally:
        await store.close()


async def test_a_master_killed_is_an_outage_of_seconds_then_nothing_is_lost(
    redis_cluster: RedisCluster,
) -> None:
    store = RedisStore(redis_cluster.url, prefix=f"gwtest{uuid.uuid4().hex[:6]}", cluster=True)
    keys = KeyBuilder(store.keys.prefix)
    key = conversations(1)[0]
    try:
        timers = Record(b"[1]", 600.0)
        assert await store.commit(
            key, Commit("m1", Session("s", "w"), {"name": "Ada"}, [b"r1"], {"timers": timers})
        )
        await asyncio.to_thread(redis_cluster.wait_replicated)
        owner = redis_cluster.master_of_slot(key_slot(keys.session(key).encode()))

        killed_at = time.monotonic()
        dead = redis_cluster.kill_master(owner)
        unavailable = 0
        while True:  # what the bus does with StoreUnavailable: retry in place until it goes through
            try:
                committed = await store.commit(
                    key, Commit("m2", Session("s", "x"), {"city": "Paris"}, [b"r2"])
                )
                break
            except StoreUnavailable:
                unavailable += 1
                assert time.monotonic() - killed_at < 30, "the cluster did not fail over within 30 s"
                await asyncio.sleep(0.1)
        recovered = time.monotonic() - killed_at
        print(f"master {dead} killed: {unavailable} failed tries, committing again after {recovered:.1f} s")
        assert committed is True and unavailable > 0
        loaded = await store.load(key, "m1", ("timers",))
        assert loaded.outputs == (b"r1",), "the commit before the kill was replicated and kept"
        assert loaded.user == {"name": "Ada", "city": "Paris"} and loaded.records == {"timers": b"[1]"}
        assert loaded.session is not None and loaded.session.step == "x"
        assert await store.commit(key, Commit("m2", None)) is False, "once, even across the failover"
    finally:
        await store.close()
        await asyncio.to_thread(redis_cluster.restart_node, dead)
        await asyncio.to_thread(redis_cluster.wait_healthy)

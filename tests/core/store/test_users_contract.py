"""One contract for the user data and the user index: the same tests on memory and on the real Redis.

The data is written the way the gateway writes it (the store's commit, its opt-out), then read, changed
and erased through :class:`UserData`; the index is written as the worker and the admin API write it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from gateway.core.schema import ConversationKey
from gateway.core.services import UserStores, build_user_stores
from gateway.core.store.base import Commit, Record, Session, Store
from gateway.core.store.keys import USER_INDEX_SHARDS, shard_of
from gateway.core.store.memory import MemoryStore
from gateway.core.store.redis import RedisStore
from gateway.core.store.users.base import IndexEntry, direct_chat
from tests.support.clusters import RedisCluster

KEY = ConversationKey("telegram", "chat-1", "user-1")
GROUP = ConversationKey("telegram", "group-9", "user-1")
OTHER = ConversationKey("telegram", "chat-2", "user-2")


@dataclass
class Backend:
    store: Store
    users: UserStores


def make_store(request: pytest.FixtureRequest, redis_url: str, redis_prefix: str) -> Store:
    """Memory, the local Redis, or a 6-node Redis Cluster of this run's own (marked ``cluster``)."""
    if request.param == "memory":
        return MemoryStore()
    if request.param == "redis":
        return RedisStore(redis_url, prefix=redis_prefix)
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    return RedisStore(cluster.url, prefix=redis_prefix, cluster=True)


@pytest.fixture(params=["memory", "redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)])
async def backend(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Backend]:
    store = make_store(request, redis_url, redis_prefix)
    try:
        yield Backend(store, build_user_stores(store))
    finally:
        await store.close()


def session(**values: str) -> Session:
    return Session(story="greet", step="save", values=values, ttl=600.0)


async def test_read_finds_every_conversation_of_the_user_and_nothing_of_others(backend: Backend) -> None:
    store, data = backend.store, backend.users.data
    before = time.time()
    assert await store.commit(KEY, Commit("m1", session(City="Paris"), {"Name": "Ada"}, [b"Rreply-1"]))
    assert await store.commit(GROUP, Commit("m2", session(), records={"timers": Record(b'{"t": 1}', 60)}))
    assert await store.commit(OTHER, Commit("m3", session(), {"Name": "Bob"}, [b"Rother"]))
    await store.set_opted_out(KEY.channel, KEY.user, True)

    found = await data.read(KEY.channel, KEY.user)
    assert found.attributes == {"Name": "Ada"}
    assert found.opted_out is True
    assert sorted(kept.chat for kept in found.sessions) == ["chat-1", "group-9"]
    paris = next(kept for kept in found.sessions if kept.chat == "chat-1")
    assert paris.session.values == {"City": "Paris"} and paris.session.story == "greet"
    assert before + 590 < paris.expires_at < time.time() + 610
    (timers,) = found.records
    assert (timers.chat, timers.kind, timers.value) == ("group-9", "timers", b'{"t": 1}')
    assert found.messages == (), "the processed messages only when asked for"

    with_messages = await data.read(KEY.channel, KEY.user, messages=True)
    assert sorted((m.message_id, m.outputs) for m in with_messages.messages) == [
        ("m1", (b"Rreply-1",)),
        ("m2", ()),
    ]
    assert (await data.read("telegram", "nobody")).empty


async def test_erase_removes_everything_once_and_leaves_other_users_alone(backend: Backend) -> None:
    store, data = backend.store, backend.users.data
    assert await store.commit(KEY, Commit("m1", session(), {"Name": "Ada"}, [b"Eemail"]))
    assert await store.commit(GROUP, Commit("m2", None, records={"handoff": Record(b"h", 60)}))
    assert await store.commit(OTHER, Commit("m3", session(), {"Name": "Bob"}))
    await store.set_opted_out(KEY.channel, KEY.user, True)

    erased = await data.erase(KEY.channel, KEY.user)
    assert erased.attributes == {"Name": "Ada"} and erased.opted_out
    assert [s.chat for s in erased.sessions] == ["chat-1"]
    assert [(r.kind, r.chat) for r in erased.records] == [("handoff", "group-9")]
    assert sorted(m.message_id for m in erased.messages) == ["m1", "m2"]

    assert (await data.erase(KEY.channel, KEY.user)).empty, "a second erase finds nothing"
    snapshot = await store.load(KEY, "m1", records=["handoff"])
    assert snapshot.session is None and snapshot.user == {} and snapshot.outputs is None
    assert not await store.opted_out(KEY.channel, KEY.user)
    assert (await store.load(GROUP, "m2", records=["handoff"])).records == {}
    assert await store.commit(KEY, Commit("m1", None)), "the message may be handled again, as new"
    other = await store.load(OTHER, "m3")
    assert other.user == {"Name": "Bob"} and other.session is not None and other.outputs == ()


async def test_change_attributes_sets_and_deletes(backend: Backend) -> None:
    store, data = backend.store, backend.users.data
    assert await store.commit(KEY, Commit("m1", None, {"Name": "Ada", "Old": "x"}))
    after = await data.change_attributes(KEY.channel, KEY.user, {"Name": "Grace", "Old": None, "New": "é"})
    assert after == {"Name": "Grace", "New": "é"}
    assert (await store.load(KEY, "m2")).user == after
    assert (
        await data.change_attributes(KEY.channel, KEY.user, {"Name": None, "New": None, "Gone": None}) == {}
    )
    assert (await data.read(KEY.channel, KEY.user)).empty


async def test_the_index_keeps_last_seen_and_the_direct_chat(backend: Backend) -> None:
    index = backend.users.index
    assert await index.entry("telegram", "u1") is None
    await index.touch("telegram", "u1", 1000.0, "u1", {"instance": "a"})
    await index.touch("telegram", "u1", 2000.5)  # a group message: last seen moves, the chat stays
    await index.touch("telegram", "u1", 1500.0, "u1", {})  # handled late: last seen does not move back
    assert await index.entry("telegram", "u1") == IndexEntry("u1", 2000.5, "u1", {})
    await index.add("telegram", "u1", 3000.0)
    assert (await index.entry("telegram", "u1")) == IndexEntry("u1", 2000.5, "u1", {})
    await index.add("telegram", "u2", 3000.0)
    assert await index.entry("telegram", "u2") == IndexEntry("u2", 3000.0, None, {})
    assert await index.entry("slack", "u1") is None, "channels are apart"
    assert await index.count("telegram") == 2


async def test_pages_walk_every_user_of_a_shard_once_in_order(backend: Backend) -> None:
    index = backend.users.index
    users = [f"user-{n}" for n in range(300)] + ["ü-1", "a:b", "{x}"]
    for n, user in enumerate(users):
        await index.touch("sms", user, 1000.0 + n, user)
    walked: list[str] = []
    for shard in range(USER_INDEX_SHARDS):
        after = ""
        while page := await index.page("sms", shard, after, 7):
            assert all(shard_of(entry.user) == shard for entry in page)
            assert [e.user.encode() for e in page] == sorted(e.user.encode() for e in page)
            walked += [entry.user for entry in page]
            after = page[-1].user
    assert sorted(walked) == sorted(users) and len(walked) == len(users)
    await index.touch("sms", "zzz-late", 5000.0)  # a user added behind the cursor is walked too
    shard = shard_of("zzz-late")
    assert [e.user for e in await index.page("sms", shard, "zzz-kate", 5)] == ["zzz-late"]


async def test_idle_users_and_conditional_removal(backend: Backend) -> None:
    index = backend.users.index
    for n in range(40):
        await index.touch("webchat", f"w{n}", 1000.0 + n, f"w{n}")
    idle = [u for s in range(USER_INDEX_SHARDS) for u in await index.idle("webchat", s, 1010.0, 100)]
    assert sorted(idle) == sorted(f"w{n}" for n in range(10))
    shard = shard_of("w3")
    in_shard = [u for u in (f"w{n}" for n in range(10)) if shard_of(u) == shard]
    assert await index.idle("webchat", shard, 1010.0, 100) == in_shard  # longest idle first
    await index.touch("webchat", "w3", 2000.0)  # w3 writes again before the sweeper removes it
    assert await index.remove("webchat", "w3", idle_before=1010.0) is False
    assert await index.remove("webchat", "w4", idle_before=1010.0) is True
    assert await index.remove("webchat", "w4") is False
    assert await index.entry("webchat", "w4") is None
    assert await index.remove("webchat", "w3") is True
    assert await index.count("webchat") == 38


def test_direct_chats() -> None:
    assert direct_chat("telegram", "42", "42") and not direct_chat("telegram", "-100", "42")
    assert direct_chat("slack", "D0123", "U1") and not direct_chat("slack", "C0123", "U1")
    assert direct_chat("sms", "+15550001", "+15550001") and direct_chat("webchat", "abc", "abc")

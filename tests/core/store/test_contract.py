"""One contract for every Store: the same tests run on MemoryStore and on RedisStore (the real Redis).

Time: the memory store reads an injected clock, which the tests move; Redis expires keys on its own, so
there the tests use a short TTL and poll for the expiry with a deadline (Redis sends no event for it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from gateway.core.schema import Button, ConversationKey
from gateway.core.store.base import Commit, Record, Session, Snapshot, Store
from gateway.core.store.memory import MemoryStore
from gateway.core.store.redis import RedisStore
from tests.support.clusters import RedisCluster

KEY = ConversationKey("telegram", "chat-1", "user-1")
EXPIRY_DEADLINE = 5.0  # seconds Redis may take past a TTL before a test gives up


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """A store under test, a way to make more like it, and a way to let a short TTL run out."""

    kind: str
    make: Callable[..., Store]  # make(processed_ttl=...) -> a store on the same backend
    short_ttl: float  # a TTL the tests can wait out
    clock: FakeClock | None = None
    made: list[Store] = field(default_factory=list)

    @property
    def store(self) -> Store:
        return self.made[0]

    def new_store(self, **options: float) -> Store:
        store = self.make(**options)
        self.made.append(store)
        return store

    async def before_expiry(self) -> None:
        """Let most of ``short_ttl`` pass (memory only; on Redis the check runs right after the write)."""
        if self.clock is not None:
            self.clock.advance(self.short_ttl * 0.9)

    async def until_expired(self, expired: Callable[[], Awaitable[bool]]) -> None:
        """Let ``short_ttl`` run out, then require ``expired()``."""
        if self.clock is not None:
            self.clock.advance(self.short_ttl)
            assert await expired()
            return
        deadline = time.monotonic() + self.short_ttl + EXPIRY_DEADLINE
        while not await expired():
            assert time.monotonic() < deadline, "the TTL ran out but the entry is still there"
            await asyncio.sleep(0.02)


@pytest.fixture(params=["memory", "redis", pytest.param("redis-cluster", marks=pytest.mark.cluster)])
async def harness(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = FakeClock()
        h = Harness(
            "memory", lambda **options: MemoryStore(clock=clock, **options), short_ttl=60.0, clock=clock
        )
    elif request.param == "redis-cluster":  # the same contract on a 6-node Redis Cluster of its own
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        h = Harness(
            "redis-cluster",
            lambda **options: RedisStore.from_url(cluster.url, prefix=redis_prefix, cluster=True, **options),
            short_ttl=0.3,
        )
    else:
        h = Harness(
            "redis",
            lambda **options: RedisStore.from_url(redis_url, prefix=redis_prefix, **options),
            short_ttl=0.3,
        )
    h.new_store()
    try:
        yield h
    finally:
        for store in h.made:
            await store.close()


@pytest.fixture
def store(harness: Harness) -> Store:
    return harness.store


def session(step: str = "ask_name", ttl: float = 1800.0, **values: str) -> Session:
    return Session(
        story="onboarding",
        step=step,
        values=values,
        buttons=(Button(title="Yes", payload="yes"), Button(title="Nö {x}", payload="no:1")),
        ttl=ttl,
    )


def output(n: int) -> bytes:
    return json.dumps({"type": "reply", "id": f"m1/r{n}", "text": f"hello {n}\n"}).encode()


async def test_empty_load(store: Store) -> None:
    assert await store.load(KEY, "m1") == Snapshot(session=None, user={}, outputs=None)
    assert await store.user_attributes(KEY.channel, KEY.user) == {}


async def test_ping(store: Store) -> None:
    assert await store.ping() is True


async def test_commit_then_load(store: Store) -> None:
    written = session(name="Ann", city="Zürich")
    commit = Commit("m1", written, {"email": "ann@example.com", "lang": "de"}, [output(1), output(2)])
    assert await store.commit(KEY, commit) is True

    snapshot = await store.load(KEY, "m1")
    assert snapshot.session == written
    assert snapshot.user == {"email": "ann@example.com", "lang": "de"}
    assert snapshot.outputs == (output(1), output(2))
    # The next message finds the session and attributes, and no commit of its own.
    assert await store.load(KEY, "m2") == Snapshot(written, {"email": "ann@example.com", "lang": "de"}, None)
    assert await store.user_attributes(KEY.channel, KEY.user) == {"email": "ann@example.com", "lang": "de"}


async def test_the_store_keeps_what_was_committed_not_a_live_reference(store: Store) -> None:
    values = {"name": "Ann"}
    assert await store.commit(KEY, Commit("m1", Session("s", "w", values))) is True
    values["name"] = "changed after the commit"
    assert (await store.load(KEY, "m2")).session == Session("s", "w", {"name": "Ann"})


async def test_commit_with_no_outputs_is_still_recorded(store: Store) -> None:
    assert await store.commit(KEY, Commit("m1", None)) is True
    assert (await store.load(KEY, "m1")).outputs == ()
    assert await store.commit(KEY, Commit("m1", session())) is False


async def test_second_commit_of_a_message_returns_false_and_writes_nothing(store: Store) -> None:
    first = Commit("m1", session("one", a="1"), {"kept": "1", "gone": "x"}, [output(1)])
    assert await store.commit(KEY, first) is True

    second = Commit("m1", session("two", a="2"), {"kept": "2", "gone": None, "new": "y"}, [output(9)])
    assert await store.commit(KEY, second) is False
    ended = Commit("m1", None, {"kept": None}, [])
    assert await store.commit(KEY, ended) is False

    assert await store.load(KEY, "m1") == Snapshot(first.session, {"kept": "1", "gone": "x"}, (output(1),))


async def test_recorded_outputs_come_back_byte_exact(store: Store) -> None:
    outputs = [
        bytes(range(256)),  # every byte value, NUL and invalid UTF-8 included
        b"",
        b"line one\nline two\r\n\n",
        "héllo wörld ✓ 你好 🎉".encode(),
        b"\xff\xfe\x00{}:%",
        json.dumps({"text": 'quote " backslash \\ newline \n', "emoji": "🎉"}, ensure_ascii=False).encode(),
        b"x" * 1_000_000,
    ]
    assert await store.commit(KEY, Commit("m1", None, {}, outputs)) is True
    assert (await store.load(KEY, "m1")).outputs == tuple(outputs)


async def test_many_outputs_come_back_in_order(store: Store) -> None:
    outputs = [str(n).encode() for n in range(2500)]
    assert await store.commit(KEY, Commit("m1", None, {}, outputs)) is True
    assert (await store.load(KEY, "m1")).outputs == tuple(outputs)


async def test_session_expires_after_its_ttl(harness: Harness, store: Store) -> None:
    assert await store.commit(KEY, Commit("m1", session(ttl=harness.short_ttl))) is True
    await harness.before_expiry()
    assert (await store.load(KEY, "m2")).session == session(ttl=harness.short_ttl)

    async def expired() -> bool:
        return (await store.load(KEY, "m2")).session is None

    await harness.until_expired(expired)


async def test_a_new_commit_replaces_the_session_ttl(harness: Harness, store: Store) -> None:
    canary = ConversationKey("telegram", "canary", "user-9")
    assert await store.commit(KEY, Commit("m1", session(ttl=harness.short_ttl))) is True
    assert await store.commit(KEY, Commit("m2", session("next", ttl=1800.0))) is True
    assert await store.commit(canary, Commit("m1", session(ttl=harness.short_ttl))) is True

    async def canary_gone() -> bool:
        return (await store.load(canary, "m2")).session is None

    await harness.until_expired(canary_gone)  # written after KEY's first session, with the same TTL
    assert (await store.load(KEY, "m3")).session == session("next", ttl=1800.0)


async def test_user_attributes_never_expire_and_outlive_the_session(harness: Harness, store: Store) -> None:
    commit = Commit("m1", session(ttl=harness.short_ttl), {"email": "ann@example.com"})
    assert await store.commit(KEY, commit) is True

    async def session_gone() -> bool:
        return (await store.load(KEY, "m2")).session is None

    await harness.until_expired(session_gone)
    if harness.clock is not None:
        harness.clock.advance(10 * 365 * 86400.0)
    assert (await store.load(KEY, "m2")).user == {"email": "ann@example.com"}
    assert await store.user_attributes(KEY.channel, KEY.user) == {"email": "ann@example.com"}


async def test_none_ends_the_session_and_deletes_an_attribute(store: Store) -> None:
    assert await store.commit(KEY, Commit("m1", session(), {"email": "a@x.org", "lang": "en"})) is True
    assert await store.commit(KEY, Commit("m2", None, {"lang": None, "missing": None, "plan": "pro"})) is True

    snapshot = await store.load(KEY, "m3")
    assert snapshot.session is None
    assert snapshot.user == {"email": "a@x.org", "plan": "pro"}
    assert await store.commit(KEY, Commit("m3", None, {"email": None, "plan": None})) is True
    assert await store.user_attributes(KEY.channel, KEY.user) == {}


async def test_attributes_belong_to_the_user_and_sessions_to_the_conversation(store: Store) -> None:
    group = ConversationKey("telegram", "group-9", "user-1")  # same user, another chat
    neighbour = ConversationKey("telegram", "chat-1", "user-2")  # same chat, another user
    elsewhere = ConversationKey("slack", "chat-1", "user-1")  # same ids, another channel
    assert await store.commit(KEY, Commit("m1", session(a="1"), {"email": "one@x.org"})) is True

    in_group = await store.load(group, "m2")
    assert in_group.session is None
    assert in_group.user == {"email": "one@x.org"}
    assert await store.load(neighbour, "m2") == Snapshot(None, {}, None)
    assert await store.load(elsewhere, "m2") == Snapshot(None, {}, None)

    assert await store.commit(group, Commit("m2", session("group_step"), {"lang": "fr"})) is True
    assert (await store.load(KEY, "m3")).session == session(a="1")
    assert (await store.load(group, "m3")).session == session("group_step")
    assert (await store.load(KEY, "m3")).user == {"email": "one@x.org", "lang": "fr"}


async def test_processed_records_expire_after_processed_ttl(harness: Harness) -> None:
    store = harness.new_store(processed_ttl=harness.short_ttl)
    assert await store.commit(KEY, Commit("m1", None, {}, [output(1)])) is True
    await harness.before_expiry()
    assert (await store.load(KEY, "m1")).outputs == (output(1),)

    async def forgotten() -> bool:
        return (await store.load(KEY, "m1")).outputs is None

    await harness.until_expired(forgotten)
    assert await store.commit(KEY, Commit("m1", None, {}, [output(2)])) is True


async def test_mark_seen_and_is_seen_expire(harness: Harness, store: Store) -> None:
    assert await store.is_seen("inbound", "tg:1") is False
    assert await store.mark_seen("inbound", "tg:1", harness.short_ttl) is True
    assert await store.mark_seen("inbound", "tg:1", harness.short_ttl) is False
    assert await store.is_seen("inbound", "tg:1") is True
    assert await store.is_seen("sent", "tg:1") is False  # namespaces are apart
    assert await store.is_seen("inbound", "tg:2") is False
    await harness.before_expiry()
    assert await store.is_seen("inbound", "tg:1") is True

    async def forgotten() -> bool:
        return not await store.is_seen("inbound", "tg:1")

    await harness.until_expired(forgotten)
    assert await store.mark_seen("inbound", "tg:1", harness.short_ttl) is True


async def test_concurrent_commits_on_different_conversations(store: Store) -> None:
    keys = [ConversationKey("web", f"chat-{n}", f"user-{n % 50}") for n in range(300)]

    async def converse(key: ConversationKey) -> bool:
        message_id = f"web:{key.chat}"  # message ids are unique per channel
        assert (await store.load(key, message_id)).outputs is None
        commit = Commit(message_id, session(chat=key.chat), {key.chat: "1"}, [key.chat.encode()])
        return await store.commit(key, commit)

    assert await asyncio.gather(*(converse(key) for key in keys)) == [True] * len(keys)
    snapshots = await asyncio.gather(*(store.load(key, f"web:{key.chat}") for key in keys))
    for key, snapshot in zip(keys, snapshots, strict=True):
        assert snapshot.session == session(chat=key.chat)
        assert snapshot.outputs == (key.chat.encode(),)
        assert snapshot.user[key.chat] == "1"
        assert len(snapshot.user) == 6  # user-k chats in chat-k, chat-k+50, ... chat-k+250


async def test_concurrent_commits_of_one_message_have_one_winner(store: Store) -> None:
    commits = [Commit("m1", session(str(n)), {"winner": str(n)}, [str(n).encode()]) for n in range(40)]
    results = await asyncio.gather(*(store.commit(KEY, commit) for commit in commits))
    assert results.count(True) == 1
    winner = str(results.index(True))
    assert await store.load(KEY, "m1") == Snapshot(session(winner), {"winner": winner}, (winner.encode(),))


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # Joined naively with ':' these share their keys; escaping must keep them apart.
        (ConversationKey("a:b", "c", "d"), ConversationKey("a", "c", "b:d")),
        (ConversationKey("a", "c:session:x", "u"), ConversationKey("a", "c", "u")),
        (ConversationKey("{a", "c", "u}"), ConversationKey("{a}", "c", "u")),
        (ConversationKey("a", "c", "u}:session:c"), ConversationKey("a", "c", "u")),
        (ConversationKey("a", "%3A", "u"), ConversationKey("a", ":", "u")),
        (ConversationKey("a b", "c", "u"), ConversationKey("a%20b", "c", "u")),
    ],
)
async def test_ids_with_separators_do_not_collide(
    store: Store, one: ConversationKey, other: ConversationKey
) -> None:
    same_user = (one.channel, one.user) == (other.channel, other.user)  # then attributes are shared
    mine, theirs = session(who="one"), session(who="other")
    assert await store.commit(one, Commit("m:1}", mine, {"who": "one"}, [b"one"])) is True
    assert await store.load(other, "m:2}") == Snapshot(None, {"who": "one"} if same_user else {}, None)
    assert await store.commit(other, Commit("m:2}", theirs, {"who": "other"}, [b"other"])) is True
    assert await store.load(one, "m:1}") == Snapshot(
        mine, {"who": "other" if same_user else "one"}, (b"one",)
    )
    assert await store.load(other, "m:2}") == Snapshot(theirs, {"who": "other"}, (b"other",))


async def test_memory_store_forgets_conversations_that_ended() -> None:
    """Conversations come and go; only users with attributes stay in memory."""
    clock = FakeClock()
    store = MemoryStore(processed_ttl=3600.0, clock=clock)
    for n in range(2000):
        key = ConversationKey("web", f"chat-{n}", f"user-{n}")
        attributes = {"email": "x@y.org"} if n % 100 == 0 else {}
        assert await store.commit(key, Commit(f"m{n}", session(ttl=600.0), attributes, [b"r"])) is True
        await store.mark_seen("inbound", f"m{n}", 600.0)
        clock.advance(1.0)
    assert store.entry_count() > 2000  # the last hour's sessions, records and markers are still there
    clock.advance(3600.0)
    await store.is_seen("inbound", "anything")  # any call purges what has expired
    assert store.entry_count() == 20  # the 20 users with attributes


async def test_forget_seen_removes_a_marker(store: Store) -> None:
    assert await store.mark_seen("optout", "+15550001111", 3600)
    await store.forget_seen("optout", "+15550001111")
    assert not await store.is_seen("optout", "+15550001111")
    assert await store.mark_seen("optout", "+15550001111", 3600), "a forgotten marker can be set again"
    await store.forget_seen("optout", "never-set")  # no error


async def test_an_opt_out_is_a_fact_about_the_user_that_never_expires(harness: Harness, store: Store) -> None:
    assert not await store.opted_out("sms", "+15550001111")
    await store.set_opted_out("sms", "+15550001111", True)
    await store.set_opted_out("sms", "+15550001111", True)  # twice changes nothing
    assert await store.opted_out("sms", "+15550001111")
    assert not await store.opted_out("sms", "+15550002222") and not await store.opted_out("x", "+15550001111")
    if harness.clock is not None:
        harness.clock.advance(1000 * 86400.0)
    assert await store.opted_out("sms", "+15550001111"), "kept like the user's attributes"
    await store.set_opted_out("sms", "+15550001111", False)
    assert not await store.opted_out("sms", "+15550001111")
    await store.set_opted_out("sms", "+15550003333", False)  # lifting none is no error


async def test_a_lease_has_one_holder_at_a_time(store: Store) -> None:
    assert await store.lease("email", "m1/e0", "mailer-a", 60) is True
    assert await store.lease("email", "m1/e0", "mailer-b", 60) is False
    assert await store.lease("email", "m1/e0", "mailer-a", 60) is True, "the holder extends its own lease"
    assert await store.lease("email", "m2/e0", "mailer-b", 60) is True, "items are apart"
    assert await store.lease("other", "m1/e0", "mailer-b", 60) is True, "namespaces are apart"
    await store.release("email", "m1/e0", "mailer-b")  # not the holder: nothing happens
    assert await store.lease("email", "m1/e0", "mailer-b", 60) is False
    await store.release("email", "m1/e0", "mailer-a")
    assert await store.lease("email", "m1/e0", "mailer-b", 60) is True
    await store.release("email", "never-leased", "mailer-a")  # no error


async def test_concurrent_takers_of_one_lease_have_one_winner(store: Store) -> None:
    results = await asyncio.gather(*(store.lease("email", "m1/e0", f"mailer-{n}", 60) for n in range(40)))
    assert results.count(True) == 1


async def test_a_lease_ends_after_its_ttl_and_a_late_release_frees_nothing(
    harness: Harness, store: Store
) -> None:
    assert await store.lease("email", "m1/e0", "mailer-a", harness.short_ttl)
    await harness.before_expiry()
    assert await store.lease("email", "m1/e0", "mailer-b", harness.short_ttl) is False

    async def free() -> bool:
        return await store.lease("email", "m1/e0", "mailer-b", 600)

    await harness.until_expired(free)  # mailer-a died: mailer-b takes over once the lease has run out
    await store.release("email", "m1/e0", "mailer-a")  # mailer-a was only slow: its release is too late
    assert await store.lease("email", "m1/e0", "mailer-a", 600) is False, "mailer-b's lease stays"


async def test_records_are_kept_beside_the_session_with_their_own_ttl(harness: Harness, store: Store) -> None:
    """A conversation record (timers, a handoff) is written by the atomic commit, read back by load only
    when asked for, outlives the session, and expires on its own."""
    timers = Record(b'[{"due": 1}]', harness.short_ttl)
    handoff = Record(b"\x00binary\xff", 3600.0)
    commit = Commit("m1", session(ttl=1.0), records={"timers": timers, "handoff": handoff})
    assert await store.commit(KEY, commit) is True
    assert (await store.load(KEY, "m2")).records == {}, "none asked for"
    loaded = await store.load(KEY, "m2", ("timers", "handoff", "transcript"))
    assert loaded.records == {"timers": timers.value, "handoff": handoff.value}
    other = await store.load(ConversationKey(KEY.channel, "other-chat", KEY.user), "m2", ("timers",))
    assert other.records == {}, "a record belongs to its conversation"

    assert await store.commit(KEY, Commit("m2", None, records={"handoff": None})) is True
    assert (await store.load(KEY, "m3", ("timers", "handoff"))).records == {"timers": timers.value}
    await harness.until_expired(lambda: _records_gone(store, ("timers",)))


async def _records_gone(store: Store, kinds: tuple[str, ...]) -> bool:
    return (await store.load(KEY, "probe", kinds)).records == {}


async def test_a_record_kind_that_could_break_a_key_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="record kind"):
        await store.commit(KEY, Commit("m1", None, records={"a:b": Record(b"x", 1.0)}))
    with pytest.raises(ValueError, match="record kind"):
        await store.load(KEY, "m1", ("{tag}",))
    assert (await store.load(KEY, "m1")).outputs is None, "nothing was written"


async def test_a_link_is_kept_replaced_and_expires(harness: Harness, store: Store) -> None:
    assert await store.get_link("desk-thread", "C1:1700000000.000100") is None
    await store.put_link("desk-thread", "C1:1700000000.000100", "first", harness.short_ttl)
    await store.put_link("desk-thread", "C1:1700000000.000100", "slack/D1/U1", harness.short_ttl)
    assert await store.get_link("desk-thread", "C1:1700000000.000100") == "slack/D1/U1"
    assert await store.get_link("other", "C1:1700000000.000100") is None  # namespaces are apart
    await harness.before_expiry()
    assert await store.get_link("desk-thread", "C1:1700000000.000100") == "slack/D1/U1"

    async def forgotten() -> bool:
        return await store.get_link("desk-thread", "C1:1700000000.000100") is None

    await harness.until_expired(forgotten)


async def test_live_members_count_until_their_end(store: Store) -> None:
    now = time.time()
    assert await store.count_live_members("handed-over", now) == 0
    await store.add_live_member("handed-over", "a", now + 100)
    await store.add_live_member("handed-over", "b", now + 10)
    await store.add_live_member("handed-over", "a", now + 200)  # moved, not added twice
    await store.add_live_member("elsewhere", "c", now + 100)
    assert await store.count_live_members("handed-over", now) == 2
    assert await store.count_live_members("handed-over", now + 50) == 1  # b's end has passed
    await store.add_live_member("handed-over", "b", now + 300)  # lapsed members do not come back by count
    await store.remove_live_member("handed-over", "a")
    await store.remove_live_member("handed-over", "never-there")
    assert await store.count_live_members("handed-over", now + 50) == 1
    assert await store.count_live_members("elsewhere", now) == 1

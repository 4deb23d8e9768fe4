"""The broadcast runner, on the in-memory bus and store and on the real RabbitMQ and Redis: who is started,
once, paced, and how a runner that dies is replaced where it was."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from gateway.core.bus.base import Bus, Delivery, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.schema import ConversationKey, Inbound, parse_inbound
from gateway.core.services import UserStores, build_user_stores
from gateway.core.store.base import Commit, Store
from gateway.core.store.broadcasts.base import Broadcast
from gateway.core.store.memory import MemoryStore
from gateway.core.store.redis import RedisStore
from tests.support.bus import Watch, delete_topology
from worker.broadcast import AudienceError, BroadcastRunner, compile_audience
from worker.broadcast.runner import Pacer


@dataclass
class Rig:
    bus: Bus
    store: Store
    users: UserStores
    started: list[Inbound] = field(default_factory=list)
    watch: Watch = field(default_factory=Watch)

    def runner(self, holder: str = "runner-a", **options: object) -> BroadcastRunner:
        users = self.users
        return BroadcastRunner(
            self.bus,
            self.store,
            users.index,
            users.broadcasts,
            holder=holder,
            **options,  # type: ignore[arg-type]
        )

    async def record(self, delivery: Delivery) -> None:
        self.started.append(parse_inbound(delivery.envelope.body))
        self.watch.changed()


@pytest.fixture(params=["memory", "real"])
async def rig(
    request: pytest.FixtureRequest, amqp_url: str, queue_prefix: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Rig]:
    if request.param == "memory":
        bus: Bus = MemoryBus(partitions=4)
        store: Store = MemoryStore()
    else:
        bus = RabbitBus(amqp_url, prefix=queue_prefix, partitions=4)
        store = RedisStore(redis_url, prefix=redis_prefix)
    await bus.start()
    rig = Rig(bus, store, build_user_stores(store))
    await bus.subscribe(Topic.INBOUND, rig.record)
    try:
        yield rig
    finally:
        await bus.close()
        await store.close()
        if isinstance(bus, RabbitBus):
            await delete_topology(amqp_url, bus.topology)


async def seed(rig: Rig, count: int) -> set[str]:
    """``count`` Telegram users; every third has Plan=pro; user 6 only wrote in a group, user 9 opted out.
    Returns the users a broadcast to Plan=pro must start."""
    expected = set()
    for n in range(count):
        user = str(1000 + n)
        key = ConversationKey("telegram", user, user)
        pro = n % 3 == 0
        await rig.store.commit(key, Commit(f"m{n}", None, {"Plan": "pro" if pro else "free"}))
        await rig.users.index.touch("telegram", user, 100.0 + n, None if n == 6 else user)
        if n == 9:
            await rig.store.set_opted_out("telegram", user, True)
        if pro and n not in (6, 9):
            expected.add(user)
    return expected


def broadcast(broadcast_id: str = "b1", **fields: object) -> Broadcast:
    values: dict[str, object] = {
        "id": broadcast_id, "story": "promo", "channel": "telegram", "where": '@user.Plan == "pro"', **fields,
    }  # fmt: skip
    return Broadcast(**values)  # type: ignore[arg-type]


async def test_each_matched_reachable_user_is_started_once_on_their_conversation(rig: Rig) -> None:
    expected = await seed(rig, 60)
    await rig.users.broadcasts.create(broadcast())
    seen: list[int] = []
    done = await rig.runner(page_size=7).run("b1", lambda b: seen.append(b.progress.walked))
    assert done is not None and done.status == "done"
    assert (done.progress.walked, done.progress.matched) == (60, 20)
    assert (done.progress.started, done.progress.failed) == (18, 2)
    await rig.watch.until(lambda: len(rig.started) >= 18)
    assert sorted(m.user for m in rig.started) == sorted(expected)
    for message in rig.started:
        assert message.id == f"broadcast:b1:{message.user}" and message.chat == message.user
        assert (message.kind, message.story, message.text) == ("broadcast", "promo", "")
    assert seen == sorted(seen) and seen[-1] == 60, "progress only grows"
    assert await rig.users.broadcasts.pending() == []
    assert await rig.runner().run("b1") is None, "a finished broadcast is not run again"


async def test_a_dry_run_counts_and_starts_nobody(rig: Rig) -> None:
    await seed(rig, 30)
    await rig.users.broadcasts.create(broadcast(dry_run=True, where=""))
    done = await rig.runner().run("b1")
    assert done is not None
    assert (done.progress.matched, done.progress.started, done.progress.failed) == (30, 0, 2)
    await rig.bus.publish(Topic.INBOUND, [])  # nothing was published before this point
    assert rig.started == []


async def test_a_runner_that_dies_is_replaced_where_it_was(rig: Rig) -> None:
    """Runner A dies after a few checkpoints (its task is cancelled, its claim is left to run out);
    runner B takes over from A's last checkpoint: every matched user is started, and a user twice at most
    when A published them after its last checkpoint (which the worker's commit record drops)."""
    expected = await seed(rig, 90)
    await rig.users.broadcasts.create(broadcast())
    checkpoints: list[Broadcast] = []
    enough = asyncio.Event()

    def progress(now: Broadcast) -> None:
        checkpoints.append(now)
        if now.progress.started >= 8:
            enough.set()

    dying = asyncio.ensure_future(rig.runner("runner-a", page_size=5, claim_ttl=0.3).run("b1", progress))
    await enough.wait()
    dying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dying
    last = checkpoints[-1].progress
    assert 8 <= last.started < len(expected)
    assert await rig.runner("runner-b").run("b1") is None, "A's claim has not run out yet"
    done = None
    async with asyncio.timeout(10):
        while done is None:  # A's claim runs out on the store's clock: nothing tells
            await asyncio.sleep(0.05)
            done = await rig.runner("runner-b", page_size=5).run("b1")
    assert (done.progress.matched, done.progress.started, done.progress.failed) == (30, 28, 2)
    await rig.watch.until(lambda: {m.user for m in rig.started} == expected)
    twice = [user for user in expected if [m.user for m in rig.started].count(user) > 1]
    assert len(twice) <= 5, "at most what A published after its last checkpoint: one page of 5"


async def test_starts_are_paced() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(10.0, clock=lambda: now[0], sleep=sleep)
    assert pacer.chunk == 2
    for _ in range(5):
        await pacer.wait(2)
    assert slept == pytest.approx([0.2, 0.2, 0.2, 0.2])
    assert Pacer(None).chunk == 500 and Pacer(1.0).chunk == 1


def test_the_audience_reads_user_attributes_only() -> None:
    assert compile_audience("  ") is None
    condition = compile_audience('@user.Plan || @user.Tier == "gold"')
    assert condition is not None and condition.holds({}, {"Tier": "gold"}, "")
    assert not condition.holds({}, {"Tier": "silver"}, "")
    assert compile_audience("@user.Note == \"write to '@session.x'\"") is not None, "quoted text is text"
    with pytest.raises(AudienceError, match=r"not @session \(at character 15\)"):
        compile_audience("@user.Plan == @session.City")
    with pytest.raises(AudienceError, match="not @message"):
        compile_audience("@message")
    with pytest.raises(AudienceError) as error:
        compile_audience("@user.Plan ==")
    assert error.value.offset > 0


def test_a_broadcast_keeps_its_definition() -> None:
    made = broadcast(by="ops")
    assert dataclasses.replace(made).as_json()["by"] == "ops"

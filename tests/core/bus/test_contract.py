"""The bus contract (gateway/core/bus/base.py), one suite run on MemoryBus and RabbitBus (classic and quorum).

The tests of the shared dispatcher itself (gateway/core/bus/dispatch.py) are in test_dispatch.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest

from gateway.core.bus.base import Bus, Delivery, Envelope, Handler, Topic, partition_of
from gateway.core.bus.memory import MemoryBus
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.errors import Rejected, Unavailable
from tests.support.bus import FAST_RETRIES, WAIT, Watch, delete_topology, envelope, eventually, number
from tests.support.clusters import RabbitCluster

PARTITIONS = 4
MAX_ATTEMPTS = 3


@pytest.fixture(
    params=["memory", "rabbit", "rabbit-quorum", pytest.param("rabbit-cluster", marks=pytest.mark.cluster)]
)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    if request.param == "memory":
        memory = MemoryBus(partitions=PARTITIONS, max_attempts=MAX_ATTEMPTS, backoff=FAST_RETRIES)
        await memory.start()
        yield memory
        await memory.close()
        return
    if request.param == "rabbit-cluster":  # the same contract on a 3-node RabbitMQ cluster, quorum queues
        cluster: RabbitCluster = request.getfixturevalue("rabbit_cluster")
        amqp_url = cluster.amqp_url
    else:
        amqp_url = request.getfixturevalue("amqp_url")
    prefix: str = request.getfixturevalue("queue_prefix")
    rabbit = RabbitBus(
        amqp_url,
        prefix=prefix,
        partitions=PARTITIONS,
        max_attempts=MAX_ATTEMPTS,
        backoff=FAST_RETRIES,
        rebalance_interval=0.2,
        queue_type="classic" if request.param == "rabbit" else "quorum",
    )
    await rabbit.start()
    try:
        yield rabbit
    finally:
        await rabbit.close()
        await delete_topology(amqp_url.split(",")[0], rabbit.topology)


def keys_on_every_partition(count: int) -> list[str]:
    """``count`` keys that together cover every partition."""
    keys: list[str] = []
    covered: set[int] = set()
    candidate = 0
    while len(keys) < count or len(covered) < PARTITIONS:
        key = f"conv-{candidate}"
        candidate += 1
        part = partition_of(key, PARTITIONS)
        if len(keys) < count or part not in covered:
            keys.append(key)
            covered.add(part)
    return keys


def keys_on_one_partition(count: int) -> list[str]:
    keys = [f"same-{i}" for i in range(1000)]
    return [k for k in keys if partition_of(k, PARTITIONS) == 0][:count]


async def publish_in_batches(bus: Bus, topic: Topic, envelopes: Sequence[Envelope], size: int = 50) -> None:
    for start in range(0, len(envelopes), size):
        await bus.publish(topic, envelopes[start : start + size])


# -- ordering and concurrency ------------------------------------------------------------------------


async def test_calls_for_one_key_follow_publish_order_and_never_overlap(bus: Bus) -> None:
    keys = keys_on_every_partition(8)
    per_key = 25
    seen: dict[str, list[int]] = defaultdict(list)
    running: set[str] = set()
    overlaps: list[str] = []
    most_at_once = 0
    watch = Watch()

    async def handler(delivery: Delivery) -> None:
        nonlocal most_at_once
        key = delivery.envelope.key
        if key in running:
            overlaps.append(key)
        running.add(key)
        most_at_once = max(most_at_once, len(running))
        for _ in range(3):
            await asyncio.sleep(0)  # give other keys a chance to interleave
        running.discard(key)
        seen[key].append(number(delivery))
        watch.changed()

    subscription = await bus.subscribe(Topic.INBOUND, handler, concurrency=16)
    await publish_in_batches(bus, Topic.INBOUND, [envelope(k, n) for n in range(per_key) for k in keys])
    await watch.until(lambda: sum(map(len, seen.values())) == per_key * len(keys))
    await subscription.stop()

    assert overlaps == []
    assert {k: seen[k] for k in keys} == {k: list(range(per_key)) for k in keys}
    assert most_at_once > 1


async def test_different_keys_run_at_the_same_time_even_on_one_partition(bus: Bus) -> None:
    keys = keys_on_one_partition(3)
    inside = 0
    all_inside = asyncio.Event()
    finished: list[str] = []
    watch = Watch()

    async def handler(delivery: Delivery) -> None:
        nonlocal inside
        inside += 1
        if inside == len(keys):
            all_inside.set()
        await asyncio.wait_for(all_inside.wait(), WAIT)  # only passes if all three are in at once
        finished.append(delivery.envelope.key)
        watch.changed()

    subscription = await bus.subscribe(Topic.OUTBOUND, handler, concurrency=8)
    await bus.publish(Topic.OUTBOUND, [envelope(k, 0) for k in keys])
    await watch.until(lambda: len(finished) == len(keys))
    await subscription.stop()
    assert sorted(finished) == sorted(keys)


# -- acknowledgement rules ---------------------------------------------------------------------------


async def test_a_failing_handler_is_retried_in_place_until_it_succeeds(bus: Bus) -> None:
    attempts: list[int] = []
    watch = Watch()

    async def handler(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        watch.changed()
        if delivery.attempt < MAX_ATTEMPTS:
            raise RuntimeError("flaky")

    subscription = await bus.subscribe(Topic.INBOUND, handler)
    await bus.publish(Topic.INBOUND, [envelope("k", 1)])
    await watch.until(lambda: len(attempts) == MAX_ATTEMPTS)
    await subscription.stop()
    assert attempts == list(range(1, MAX_ATTEMPTS + 1))
    assert await bus.dead_letters(Topic.INBOUND) == []


async def test_after_max_attempts_a_message_is_dead_lettered_with_the_last_error(bus: Bus) -> None:
    calls: list[tuple[str, int]] = []
    watch = Watch()
    poison, after = envelope("k", 0), envelope("k", 1)

    async def handler(delivery: Delivery) -> None:
        calls.append((delivery.envelope.message_id, delivery.attempt))
        watch.changed()
        if delivery.envelope == poison:
            raise ValueError("boom")

    before = time.time()
    subscription = await bus.subscribe(Topic.INBOUND, handler)
    await bus.publish(Topic.INBOUND, [poison, after])
    await watch.until(lambda: (after.message_id, 1) in calls)
    await subscription.stop()

    # the next message of the key waited until the poison one was dead-lettered
    assert calls == [(poison.message_id, n) for n in range(1, MAX_ATTEMPTS + 1)] + [(after.message_id, 1)]
    [letter] = await bus.dead_letters(Topic.INBOUND)
    assert letter.envelope == poison
    assert letter.topic is Topic.INBOUND
    assert letter.reason == "ValueError('boom')"
    assert letter.attempts == MAX_ATTEMPTS
    assert before <= letter.failed_at <= time.time()


async def test_dead_letters_of_one_user_can_be_removed_leaving_the_others_in_order(bus: Bus) -> None:
    """What an erase of a user's data does to the dead letters: theirs go, the others stay as they were."""
    watch = Watch()
    rejected: list[str] = []
    sent = [envelope("k", n, user="ada" if n % 3 == 0 else "bob") for n in range(7)]

    async def handler(delivery: Delivery) -> None:
        rejected.append(delivery.envelope.message_id)
        watch.changed()
        raise Rejected("refused")

    subscription = await bus.subscribe(Topic.OUTBOUND, handler)
    await bus.publish(Topic.OUTBOUND, sent)
    await watch.until(lambda: len(rejected) == len(sent))
    await subscription.stop()

    async def all_dead() -> bool:
        return len(await bus.dead_letters(Topic.OUTBOUND)) == len(sent)

    await eventually(all_dead)
    removed = await bus.remove_dead_letters(Topic.OUTBOUND, lambda e: e.headers.get("user") == "ada")
    assert [letter.envelope for letter in removed] == [sent[0], sent[3], sent[6]]
    assert all(letter.reason == "refused" for letter in removed)
    assert [d.envelope for d in await bus.dead_letters(Topic.OUTBOUND)] == [
        e for e in sent if e.headers["user"] == "bob"
    ]
    assert await bus.remove_dead_letters(Topic.OUTBOUND, lambda e: e.headers.get("user") == "ada") == []
    assert await bus.remove_dead_letters(Topic.EMAIL, lambda e: True) == []


async def test_rejected_is_dead_lettered_at_once_with_its_reason(bus: Bus) -> None:
    calls: list[str] = []
    watch = Watch()
    bad, good = envelope("k", 0), envelope("k", 1)

    async def handler(delivery: Delivery) -> None:
        calls.append(delivery.envelope.message_id)
        watch.changed()
        if delivery.envelope == bad:
            raise Rejected("does not parse")

    subscription = await bus.subscribe(Topic.OUTBOUND, handler)
    await bus.publish(Topic.OUTBOUND, [bad, good])
    await watch.until(lambda: good.message_id in calls)
    await subscription.stop()
    assert calls == [bad.message_id, good.message_id]
    [letter] = await bus.dead_letters(Topic.OUTBOUND)
    assert (letter.envelope, letter.reason, letter.attempts) == (bad, "does not parse", 1)


async def test_unavailable_is_retried_without_counting_and_keeps_order(bus: Bus) -> None:
    outages = MAX_ATTEMPTS + 3
    calls: list[tuple[str, int]] = []
    watch = Watch()
    first, second = envelope("k", 0), envelope("k", 1)

    async def handler(delivery: Delivery) -> None:
        calls.append((delivery.envelope.message_id, delivery.attempt))
        watch.changed()
        if delivery.envelope == first and len(calls) <= outages:
            raise Unavailable("store away")

    subscription = await bus.subscribe(Topic.INBOUND, handler)
    await bus.publish(Topic.INBOUND, [first, second])
    await watch.until(lambda: (second.message_id, 1) in calls)
    await subscription.stop()
    assert calls == [(first.message_id, 1)] * (outages + 1) + [(second.message_id, 1)]
    assert await bus.dead_letters(Topic.INBOUND) == []


async def test_dead_letters_can_be_looked_at_then_replayed_oldest_first(bus: Bus) -> None:
    rejecting = True
    accepted: list[Envelope] = []
    rejected: list[str] = []
    watch = Watch()
    sent = [envelope("k", n, trace=f"t{n}") for n in range(3)]

    async def handler(delivery: Delivery) -> None:
        if rejecting:
            rejected.append(delivery.envelope.message_id)
            watch.changed()
            raise Rejected(f"not now {number(delivery)}")
        accepted.append(delivery.envelope)
        watch.changed()

    subscription = await bus.subscribe(Topic.INBOUND, handler)
    await bus.publish(Topic.INBOUND, sent)
    await watch.until(lambda: len(rejected) == len(sent))

    async def all_dead() -> bool:
        return len(await bus.dead_letters(Topic.INBOUND)) == len(sent)

    await eventually(all_dead)
    looked = await bus.dead_letters(Topic.INBOUND)
    assert [d.envelope for d in looked] == sent
    assert [d.reason for d in looked] == [f"not now {n}" for n in range(3)]
    assert await bus.dead_letters(Topic.INBOUND) == looked  # looking removes nothing
    assert await bus.dead_letters(Topic.INBOUND, limit=2) == looked[:2]

    rejecting = False
    assert await bus.replay_dead_letters(Topic.INBOUND, limit=1) == 1
    await watch.until(lambda: len(accepted) == 1)
    assert [d.envelope for d in await bus.dead_letters(Topic.INBOUND)] == sent[1:]
    assert await bus.replay_dead_letters(Topic.INBOUND) == 2
    await watch.until(lambda: len(accepted) == 3)
    await subscription.stop()
    assert accepted == sent
    assert await bus.dead_letters(Topic.INBOUND) == []
    assert await bus.replay_dead_letters(Topic.INBOUND) == 0


# -- stopping, standing by, sharing ------------------------------------------------------------------


async def test_stop_lets_running_handlers_finish_and_gives_back_the_rest_in_order(bus: Bus) -> None:
    events: list[str] = []
    gate = asyncio.Event()
    first_started = asyncio.Event()
    received: list[int] = []
    watch = Watch()

    async def held(delivery: Delivery) -> None:
        events.append(f"start {number(delivery)}")
        first_started.set()
        await gate.wait()
        events.append(f"done {number(delivery)}")

    async def successor(delivery: Delivery) -> None:
        if number(delivery) == 0:  # finished, but it travelled packed with the rest (RabbitBus)
            assert delivery.redelivered, "a finished envelope came again as if it were new"
            return
        received.append(number(delivery))
        watch.changed()

    first = await bus.subscribe(Topic.INBOUND, held, concurrency=4)
    await bus.publish(Topic.INBOUND, [envelope("k", n) for n in range(5)])
    await asyncio.wait_for(first_started.wait(), WAIT)
    stopping = asyncio.create_task(first.stop(timeout=WAIT))
    done, _ = await asyncio.wait({stopping}, timeout=0.2)
    assert not done, "stop() returned while a handler was still running"
    gate.set()
    await stopping
    events.append("stopped")
    assert events == ["start 0", "done 0", "stopped"]

    second = await bus.subscribe(Topic.INBOUND, successor)
    await watch.until(lambda: len(received) == 4)
    await second.stop()
    assert received == [1, 2, 3, 4]


async def test_a_standby_subscriber_takes_over_when_the_active_one_stops(bus: Bus) -> None:
    keys = keys_on_every_partition(8)
    handled: dict[str, list[tuple[str, int]]] = {"a": [], "b": []}
    watch = Watch()

    def recorder(name: str) -> Callable[[Delivery], Awaitable[None]]:
        async def handler(delivery: Delivery) -> None:
            handled[name].append((delivery.envelope.key, number(delivery)))
            watch.changed()

        return handler

    def total() -> int:
        return len(handled["a"]) + len(handled["b"])

    first = await bus.subscribe(Topic.INBOUND, recorder("a"))
    second = await bus.subscribe(Topic.INBOUND, recorder("b"))
    await bus.publish(Topic.INBOUND, [envelope(k, 0) for k in keys])
    await watch.until(lambda: total() == len(keys))
    await first.stop()
    await bus.publish(Topic.INBOUND, [envelope(k, 1) for k in keys])
    await watch.until(lambda: total() == 2 * len(keys))
    await second.stop()
    assert sorted(handled["b"][-len(keys) :]) == sorted((k, 1) for k in keys)
    assert all(n == 0 for _, n in handled["a"])


async def test_two_subscribers_share_the_partitions_and_keep_each_keys_order(bus: Bus) -> None:
    keys = keys_on_every_partition(40)
    per_round = 6
    seen: dict[str, list[int]] = defaultdict(list)
    by: dict[str, int] = {"a": 0, "b": 0}
    running: set[str] = set()
    overlaps: list[str] = []
    second_started = asyncio.Event()
    watch = Watch()
    published = 0

    def recorder(name: str) -> Callable[[Delivery], Awaitable[None]]:
        async def handler(delivery: Delivery) -> None:
            key = delivery.envelope.key
            if delivery.redelivered and number(delivery) in seen[key]:
                return  # finished before a hand-over, back with its pack: absorbed by id, as the roles do
            if key in running:
                overlaps.append(key)
            running.add(key)
            await asyncio.sleep(0.001)  # a little work, so partitions change hands mid-stream
            running.discard(key)
            seen[key].append(number(delivery))
            by[name] += 1
            if name == "b":
                second_started.set()
            watch.changed()

        return handler

    def handled() -> int:
        return sum(map(len, seen.values()))

    async def publish_round(round_no: int) -> None:
        nonlocal published
        batch = [envelope(k, round_no * per_round + i) for i in range(per_round) for k in keys]
        await publish_in_batches(bus, Topic.INBOUND, batch, size=100)
        published += len(batch)

    first = await bus.subscribe(Topic.INBOUND, recorder("a"), concurrency=8)
    await publish_round(0)
    second = await bus.subscribe(Topic.INBOUND, recorder("b"), concurrency=8)
    rounds = 1
    async with asyncio.timeout(WAIT):
        while not second_started.is_set():  # keep traffic flowing until the partitions are shared
            await publish_round(rounds)
            rounds += 1
            await watch.until(lambda: handled() >= published - len(keys) or second_started.is_set())
    await publish_round(rounds)
    rounds += 1
    await watch.until(lambda: handled() == published)
    await first.stop()
    await second.stop()

    assert overlaps == []
    assert {k: seen[k] for k in keys} == {k: list(range(rounds * per_round)) for k in keys}
    assert by["a"] > 0 and by["b"] > 0


async def test_email_subscribers_compete_for_messages(bus: Bus) -> None:
    got: dict[str, list[str]] = {"a": [], "b": []}
    both_busy = {"a": asyncio.Event(), "b": asyncio.Event()}
    watch = Watch()

    def worker(name: str, other: str) -> Callable[[Delivery], Awaitable[None]]:
        async def handler(delivery: Delivery) -> None:
            got[name].append(delivery.envelope.message_id)
            both_busy[name].set()
            await asyncio.wait_for(both_busy[other].wait(), WAIT)  # each waits until the other has one
            watch.changed()

        return handler

    first = await bus.subscribe(Topic.EMAIL, worker("a", "b"), concurrency=1)
    second = await bus.subscribe(Topic.EMAIL, worker("b", "a"), concurrency=1)
    mails = [Envelope(body=b"mail", message_id=f"mail-{n}") for n in range(12)]
    await bus.publish(Topic.EMAIL, mails)
    await watch.until(lambda: len(got["a"]) + len(got["b"]) == len(mails))
    await first.stop()
    await second.stop()
    assert sorted(got["a"] + got["b"]) == sorted(m.message_id for m in mails)
    assert got["a"] and got["b"]


# -- publishing ----------------------------------------------------------------------------------------


async def test_publishing_an_empty_batch_does_nothing(bus: Bus) -> None:
    for topic in Topic:
        await bus.publish(topic, [])
    assert await bus.ping()


async def test_message_id_body_and_headers_arrive_unchanged(bus: Bus) -> None:
    received: list[Delivery] = []
    watch = Watch()

    async def handler(delivery: Delivery) -> None:
        received.append(delivery)
        watch.changed()

    sent = Envelope(
        body=b"\x00\xff binary \xe2\x82\xac",
        message_id="telegram:42:7",
        key="telegram:42:42",
        headers={"traceparent": "00-abc-def-01", "channel": "telegram", "empty": ""},
    )
    mail = Envelope(body=b"{}", message_id="mail-1", headers={"kind": "welcome"})
    inbound = await bus.subscribe(Topic.INBOUND, handler)
    email = await bus.subscribe(Topic.EMAIL, handler)
    await bus.publish(Topic.INBOUND, [sent])
    await bus.publish(Topic.EMAIL, [mail])
    await watch.until(lambda: len(received) == 2)
    await inbound.stop()
    await email.stop()
    by_topic = {d.topic: d for d in received}
    assert by_topic[Topic.INBOUND] == Delivery(sent, Topic.INBOUND, attempt=1, redelivered=False)
    assert by_topic[Topic.EMAIL] == Delivery(mail, Topic.EMAIL, attempt=1, redelivered=False)
    assert dict(by_topic[Topic.INBOUND].envelope.headers) == dict(sent.headers)


@pytest.mark.parametrize("topic", [Topic.INBOUND, Topic.OUTBOUND])
async def test_an_ordered_topic_refuses_an_envelope_without_key(bus: Bus, topic: Topic) -> None:
    with pytest.raises(ValueError, match="needs a key"):
        await bus.publish(topic, [envelope("k", 0), Envelope(body=b"x", message_id="no-key")])


# -- direct destinations: one process's own queue -------------------------------------------------------


class Recorder:
    """Handlers that record (name, key, number) per destination and wake a :class:`Watch`."""

    def __init__(self) -> None:
        self.got: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self.watch = Watch()
        self.overlaps: list[str] = []
        self._running: set[tuple[str, str]] = set()

    def handler(self, name: str, *, reject: Callable[[Delivery], bool] = lambda _: False) -> Handler:
        async def handle(delivery: Delivery) -> None:
            running = (name, delivery.envelope.key)
            if running in self._running:
                self.overlaps.append(delivery.envelope.key)
            self._running.add(running)
            try:
                await asyncio.sleep(0)  # give another call for this key the chance to overlap
                self.got[name].append((delivery.envelope.key, number(delivery)))
                self.watch.changed()
                if reject(delivery):
                    raise Rejected("not deliverable here")
            finally:
                self._running.discard(running)

        return handle

    async def settle_shared(self, bus: Bus, keys: Sequence[str]) -> None:
        """Publish a marker per key on the shared topic and wait for them all: anything misrouted to the
        shared partitions of those keys would have arrived before its marker (one queue, FIFO)."""
        await bus.publish(Topic.OUTBOUND, [envelope(key, 1_000_000) for key in keys])
        await self.watch.until(lambda: sum(n == 1_000_000 for _, n in self.got["shared"]) == len(keys))


async def test_direct_envelopes_reach_only_their_instance_in_order_per_key(bus: Bus) -> None:
    record = Recorder()
    await bus.subscribe(Topic.OUTBOUND, record.handler("shared"))
    await bus.subscribe_direct(Topic.OUTBOUND, "serve-a", record.handler("a"))
    await bus.subscribe_direct(Topic.OUTBOUND, "serve-b", record.handler("b"))
    keys = ["webchat/u1/u1", "webchat/u2/u2", "webchat/u3/u3"]
    batch = [envelope(key, n) for n in range(20) for key in keys]
    assert await bus.publish_direct(Topic.OUTBOUND, "serve-a", batch[:30])
    assert await bus.publish_direct(Topic.OUTBOUND, "serve-a", batch[30:])
    assert await bus.publish_direct(Topic.OUTBOUND, "serve-b", [envelope("webchat/u9/u9", 7)])
    await record.watch.until(lambda: len(record.got["a"]) == 60 and len(record.got["b"]) == 1)
    await record.settle_shared(bus, [*keys, "webchat/u9/u9"])
    for key in keys:
        assert [n for k, n in record.got["a"] if k == key] == list(range(20))
    assert record.got["b"] == [("webchat/u9/u9", 7)]
    assert all(n == 1_000_000 for _, n in record.got["shared"])
    assert record.overlaps == []


async def test_publish_direct_to_an_instance_without_a_queue_drops_and_says_so(bus: Bus) -> None:
    record = Recorder()
    await bus.subscribe(Topic.OUTBOUND, record.handler("shared"))
    dropped = [envelope("k", 1), envelope("k", 2)]
    assert await bus.publish_direct(Topic.OUTBOUND, "never-started", dropped) is False
    assert await bus.publish_direct(Topic.OUTBOUND, "never-started", []) is True
    await record.settle_shared(bus, ["k"])
    assert record.got["shared"] == [("k", 1_000_000)]


async def test_a_direct_queue_keeps_what_arrives_while_its_instance_is_away(bus: Bus) -> None:
    record = Recorder()
    first = await bus.subscribe_direct(Topic.OUTBOUND, "serve-a", record.handler("a"))
    await first.stop()
    assert await bus.publish_direct(Topic.OUTBOUND, "serve-a", [envelope("k", n) for n in range(5)])
    await bus.subscribe_direct(Topic.OUTBOUND, "serve-a", record.handler("a"))
    await record.watch.until(lambda: len(record.got["a"]) == 5)
    assert record.got["a"] == [("k", n) for n in range(5)]


async def test_a_rejected_direct_message_is_dead_lettered_on_its_topic(bus: Bus) -> None:
    record = Recorder()
    bad, good = envelope("k", 0), envelope("k", 1)
    handler = record.handler("a", reject=lambda delivery: delivery.envelope == bad)
    subscription = await bus.subscribe_direct(Topic.OUTBOUND, "serve-a", handler)
    assert await bus.publish_direct(Topic.OUTBOUND, "serve-a", [bad, good])
    await record.watch.until(lambda: len(record.got["a"]) == 2)
    await subscription.stop()
    [letter] = await bus.dead_letters(Topic.OUTBOUND)
    assert (letter.envelope, letter.reason) == (bad, "not deliverable here")


async def test_publish_direct_on_an_ordered_topic_refuses_an_envelope_without_key(bus: Bus) -> None:
    await bus.subscribe_direct(Topic.OUTBOUND, "serve-a", Recorder().handler("a"))
    with pytest.raises(ValueError, match="needs a key"):
        await bus.publish_direct(Topic.OUTBOUND, "serve-a", [Envelope(body=b"x", message_id="no-key")])


async def test_rabbit_direct_queue_expires_once_its_instance_is_gone(
    amqp_url: str, queue_prefix: str
) -> None:
    bus = RabbitBus(amqp_url, prefix=queue_prefix, partitions=PARTITIONS, direct_expiry=0.3)
    await bus.start()
    try:
        subscription = await bus.subscribe_direct(Topic.OUTBOUND, "gone", Recorder().handler("gone"))
        await subscription.stop()
        # no event tells when the broker deletes an expired queue: poll, publishing (which is no "use")
        started = time.monotonic()
        await eventually(lambda: _not(bus.publish_direct(Topic.OUTBOUND, "gone", [envelope("k", 0)])))
        assert time.monotonic() - started < 5.0
    finally:
        await bus.close()
        await delete_topology(amqp_url, bus.topology)


async def _not(result: Awaitable[bool]) -> bool:
    return not await result


# -- the embedded bus only ---------------------------------------------------------------------------------


async def test_memory_bus_join_waits_until_everything_that_follows_is_handled() -> None:
    bus = MemoryBus(partitions=PARTITIONS, backoff=FAST_RETRIES)
    replies: list[str] = []

    async def story(delivery: Delivery) -> None:  # fails once, then answers on OUTBOUND
        if delivery.attempt == 1:
            raise RuntimeError("once")
        reply = Envelope(delivery.envelope.body, f"re:{delivery.envelope.message_id}", delivery.envelope.key)
        await bus.publish(Topic.OUTBOUND, [reply])

    async def deliver(delivery: Delivery) -> None:
        await asyncio.sleep(0)
        replies.append(delivery.envelope.message_id)

    await bus.subscribe(Topic.INBOUND, story)
    await bus.subscribe(Topic.OUTBOUND, deliver)
    await bus.publish(Topic.INBOUND, [envelope(f"k{n}", n) for n in range(10)])
    await bus.publish(Topic.EMAIL, [Envelope(b"", "nobody-listens")])  # not waited for
    await asyncio.wait_for(bus.join(), WAIT)
    assert sorted(replies) == sorted(f"re:k{n}/{n}" for n in range(10))
    await bus.close()

"""What only RabbitMQ can show: outages, a worker killed while holding messages, quorum queues, topology."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aio_pika
import pytest
from yarl import URL

from gateway.core.bus.base import Delivery, Envelope, Topic
from gateway.core.bus.rabbit import RabbitBus, Topology, TopologyConflict
from gateway.core.bus.rabbit.connection import declare, partitions_found
from gateway.core.bus.rabbit.partitions import PartitionsBusy
from gateway.core.bus.rabbit.partitions import change as change_partitions
from gateway.core.bus.rabbit.partitions import inspect as inspect_partitions
from gateway.core.errors import BusUnavailable, Rejected
from tests.support.bus import FAST_RETRIES, Watch, delete_topology, envelope, eventually, number
from tests.support.faults import TcpProxy
from tests.support.paths import ROOT

RabbitFactory = Callable[..., Awaitable[RabbitBus]]


@pytest.fixture
async def make_bus(amqp_url: str, queue_prefix: str) -> AsyncIterator[RabbitFactory]:
    """Builds started RabbitBus objects on this test's queues; closes them and deletes the queues."""
    buses: list[RabbitBus] = []

    async def make(url: str = amqp_url, **options: object) -> RabbitBus:
        settings: dict[str, object] = {"prefix": queue_prefix, "partitions": 2, "backoff": FAST_RETRIES}
        settings.update(options)
        bus = RabbitBus(url, **settings)  # type: ignore[arg-type]
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()
    if buses:
        await delete_topology(amqp_url, buses[0].topology)


@contextlib.asynccontextmanager
async def aio_pika_channel(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    try:
        async with connection.channel() as channel:
            yield channel
    finally:
        await connection.close()


def through(proxy: TcpProxy, amqp_url: str) -> str:
    return str(URL(amqp_url).with_host("127.0.0.1").with_port(proxy.port))


# -- (a) the broker goes away and comes back ----------------------------------------------------------


async def test_publish_fails_fast_while_the_broker_is_away_and_works_again_after(
    make_bus: RabbitFactory, amqp_url: str
) -> None:
    async with TcpProxy(URL(amqp_url).host or "127.0.0.1", URL(amqp_url).port or 5672) as proxy:
        bus = await make_bus(through(proxy, amqp_url), publish_timeout=2.0, reconnect_interval=0.2)
        await bus.publish(Topic.INBOUND, [envelope("k", 0)])
        assert await bus.ping()

        await proxy.cut()
        began = time.monotonic()
        with pytest.raises(BusUnavailable):
            await bus.publish(Topic.INBOUND, [envelope("k", 1)])
        assert time.monotonic() - began < 3.0
        assert not await bus.ping()
        with pytest.raises(BusUnavailable):  # still refused, and still at once
            await bus.publish(Topic.INBOUND, [envelope("k", 1)])
        assert time.monotonic() - began < 3.5

        await proxy.restore()

        async def published() -> bool:
            try:
                await bus.publish(Topic.INBOUND, [envelope("k", 2)])
            except BusUnavailable:
                return False
            return True

        await eventually(published)
        assert await bus.ping()


async def test_a_publish_to_a_hung_broker_gives_up_after_the_timeout(
    make_bus: RabbitFactory, amqp_url: str
) -> None:
    async with TcpProxy(URL(amqp_url).host or "127.0.0.1", URL(amqp_url).port or 5672) as proxy:
        bus = await make_bus(through(proxy, amqp_url), publish_timeout=1.0)
        proxy.stall()
        began = time.monotonic()
        with pytest.raises(BusUnavailable):
            await bus.publish(Topic.EMAIL, [Envelope(b"x", "stalled")])
        assert 0.9 <= time.monotonic() - began < 2.5
        proxy.unstall()
        await bus.publish(Topic.EMAIL, [Envelope(b"y", "after")])


async def test_publishes_waiting_behind_a_stalled_batch_give_up_too_and_later_ones_go_through(
    make_bus: RabbitFactory, amqp_url: str
) -> None:
    """A publish made while a batch waits for its confirms joins the next batch; a stall costs it at most
    the rest of that wait plus its own timeout, never a hang."""
    async with TcpProxy(URL(amqp_url).host or "127.0.0.1", URL(amqp_url).port or 5672) as proxy:
        bus = await make_bus(through(proxy, amqp_url), publish_timeout=1.0)
        proxy.stall()
        began = time.monotonic()
        first = asyncio.create_task(bus.publish(Topic.INBOUND, [envelope("k", 0)]))
        await asyncio.sleep(0)  # the first publish queues its envelope and schedules the batch ...
        await asyncio.sleep(0)  # ... which is sent and waits for confirms that do not come
        assert bus.batches_in_flight == 1
        second = asyncio.create_task(bus.publish(Topic.INBOUND, [envelope("k", 1)]))
        with pytest.raises(BusUnavailable):
            await first
        assert not second.done(), "the second publish should wait for the first batch, then try on its own"
        with pytest.raises(BusUnavailable):
            await second
        assert time.monotonic() - began < 3.0
        proxy.unstall()
        await bus.publish(Topic.INBOUND, [envelope("k", 2)])


async def test_a_subscription_resumes_after_an_outage_and_loses_nothing(
    make_bus: RabbitFactory, amqp_url: str
) -> None:
    async with TcpProxy(URL(amqp_url).host or "127.0.0.1", URL(amqp_url).port or 5672) as proxy:
        bus = await make_bus(through(proxy, amqp_url), reconnect_interval=0.2, publish_timeout=2.0)
        handled: list[int] = []
        first_running = asyncio.Event()
        outage_over = asyncio.Event()
        watch = Watch()

        async def handler(delivery: Delivery) -> None:
            if number(delivery) == 0 and not outage_over.is_set():
                first_running.set()
                await outage_over.wait()  # still running when the connection drops: its ack is lost
            handled.append(number(delivery))
            watch.changed()

        subscription = await bus.subscribe(Topic.INBOUND, handler)
        confirmed = [envelope("k", n) for n in range(5)]
        await bus.publish(Topic.INBOUND, confirmed)
        await asyncio.wait_for(first_running.wait(), 10)

        await proxy.cut()

        async def noticed() -> bool:
            return not await bus.ping()

        await eventually(noticed)  # the bus knows the connection is gone while the handler still runs
        outage_over.set()
        await watch.until(lambda: handled == [0])
        await proxy.restore()
        for n in range(5, 10):
            message = envelope("k", n)

            async def published(message: Envelope = message) -> bool:
                try:
                    await bus.publish(Topic.INBOUND, [message])
                except BusUnavailable:
                    return False
                return True

            await eventually(published)
            confirmed.append(message)
        await watch.until(lambda: set(handled) >= set(range(10)))
        await subscription.stop()
        # every confirmed message was handled; 0 twice, since its ack was lost; order held throughout
        first_seen = list(dict.fromkeys(handled))
        assert first_seen == [number_of(e) for e in confirmed]
        assert handled == [0, *range(10)]


def number_of(message: Envelope) -> int:
    return int(message.body)


# -- (b) a worker killed while holding messages ---------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from gateway.core.bus.base import Topic
    from gateway.core.bus.rabbit import RabbitBus

    async def main():
        bus = RabbitBus(sys.argv[1], prefix=sys.argv[2], partitions=2, rebalance_interval=0)
        await bus.start()

        async def hold(delivery):
            print("holding", delivery.envelope.message_id, flush=True)
            await asyncio.Event().wait()

        await bus.subscribe(Topic.INBOUND, hold)
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


async def test_messages_held_by_a_killed_worker_go_first_and_in_order_to_the_standby(
    make_bus: RabbitFactory, amqp_url: str, queue_prefix: str
) -> None:
    bus = await make_bus()
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER,
        amqp_url,
        queue_prefix,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert worker.stdout is not None
        assert await asyncio.wait_for(worker.stdout.readline(), 20) == b"ready\n"
        received: list[tuple[int, bool]] = []
        watch = Watch()

        async def standby(delivery: Delivery) -> None:
            received.append((number(delivery), delivery.redelivered))
            watch.changed()

        subscription = await bus.subscribe(Topic.INBOUND, standby)
        await bus.publish(Topic.INBOUND, [envelope("k", n) for n in range(5)])
        assert await asyncio.wait_for(worker.stdout.readline(), 10) == b"holding k/0\n"
        worker.send_signal(signal.SIGKILL)
        await bus.publish(Topic.INBOUND, [envelope("k", n) for n in range(5, 8)])
        await watch.until(lambda: len(received) == 8)
        await subscription.stop()
    finally:
        if worker.returncode is None:
            worker.kill()
        await worker.wait()
    assert [n for n, _ in received] == list(range(8))
    assert received[0] == (0, True)  # the one the killed worker was running comes back first


# -- (c) quorum queues ------------------------------------------------------------------------------------


async def test_quorum_queues_are_declared_and_work(make_bus: RabbitFactory, amqp_url: str) -> None:
    bus = await make_bus(queue_type="quorum")
    handled: list[str] = []
    watch = Watch()

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery.envelope.message_id)
        watch.changed()
        if delivery.envelope.body == b"0":
            raise Rejected("no")

    subscription = await bus.subscribe(Topic.INBOUND, handler)
    await bus.publish(Topic.INBOUND, [envelope("k", 0), envelope("k", 1)])
    await watch.until(lambda: len(handled) == 2)
    await subscription.stop()
    [letter] = await bus.dead_letters(Topic.INBOUND)
    assert (letter.envelope, letter.reason) == (envelope("k", 0), "no")

    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await channel.declare_queue(  # the same name as a classic queue is refused: it is quorum
                bus.topology.queue(Topic.INBOUND, 0), durable=True, arguments={"x-queue-type": "classic"}
            )
    finally:
        await connection.close()


async def test_quorum_keeps_order_when_messages_are_handed_back_again_and_again(
    make_bus: RabbitFactory,
) -> None:
    """A quorum queue puts a message handed back twice behind the other handed-back ones unless the
    next subscriber takes them all at once; every subscriber has the same window, whatever its
    concurrency, so it always does."""
    bus = await make_bus(queue_type="quorum", partitions=1)
    total = 300
    handled: list[int] = []
    watch = Watch()
    for n in range(total):  # one by one: one broker message each (a batch would travel packed)
        await bus.publish(Topic.INBOUND, [envelope("k", n)])
    for concurrency in (1, 64, 4):
        first_call = asyncio.Event()
        go_on = asyncio.Event()

        async def handler(
            delivery: Delivery, first_call: asyncio.Event = first_call, go_on: asyncio.Event = go_on
        ) -> None:
            handled.append(number(delivery))
            first_call.set()
            await go_on.wait()

        subscription = await bus.subscribe(Topic.INBOUND, handler, concurrency=concurrency)
        await asyncio.wait_for(first_call.wait(), 10)
        stopping = asyncio.create_task(subscription.stop())
        go_on.set()
        await stopping

    async def last(delivery: Delivery) -> None:
        handled.append(number(delivery))
        watch.changed()

    subscription = await bus.subscribe(Topic.INBOUND, last)
    await watch.until(lambda: len(handled) >= total)
    await subscription.stop()
    assert handled == list(range(total))


async def hand_back_twice(amqp_url: str, queue_name: str) -> None:
    """Take the queue's first message and hand it back, twice: as if each consumer died holding it."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=False)
        deliveries = 0
        async with queue.iterator() as messages:  # basic.get is refused on single-active-consumer queues
            async for message in messages:
                deliveries += 1
                await message.nack(requeue=True)
                if deliveries == 2:
                    break
    finally:
        await connection.close()


async def test_the_brokers_own_dead_letters_land_in_the_dead_letter_queue(
    make_bus: RabbitFactory, amqp_url: str
) -> None:
    """A quorum queue's delivery limit (a message that keeps killing its consumers) dead-letters too."""
    bus = await make_bus(queue_type="quorum", delivery_limit=1)
    await bus.publish(Topic.OUTBOUND, [envelope("k", 0, note="poison")])
    await hand_back_twice(amqp_url, bus.topology.route(Topic.OUTBOUND, envelope("k", 0)))

    async def dead() -> bool:
        return len(await bus.dead_letters(Topic.OUTBOUND)) == 1

    await eventually(dead)
    [letter] = await bus.dead_letters(Topic.OUTBOUND)
    assert letter.envelope == envelope("k", 0, note="poison")
    assert letter.reason == "broker: delivery_limit"
    assert letter.failed_at > 0


async def test_a_packed_message_the_broker_dead_letters_is_listed_and_replayed_envelope_by_envelope(
    make_bus: RabbitFactory, amqp_url: str
) -> None:
    bus = await make_bus(queue_type="quorum", delivery_limit=1, partitions=1)
    sent = [envelope("k", n, note="poison") for n in range(3)]
    await bus.publish(Topic.OUTBOUND, sent)
    assert await queued(amqp_url, bus.topology, Topic.OUTBOUND) == 1  # packed
    await hand_back_twice(amqp_url, bus.topology.queue(Topic.OUTBOUND, 0))

    async def dead() -> bool:
        return len(await bus.dead_letters(Topic.OUTBOUND)) == 3

    await eventually(dead)
    letters = await bus.dead_letters(Topic.OUTBOUND)
    assert [letter.envelope for letter in letters] == sent
    assert {letter.reason for letter in letters} == {"broker: delivery_limit"}
    assert await bus.replay_dead_letters(Topic.OUTBOUND) == 3

    handled: list[Envelope] = []
    watch = Watch()

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery.envelope)
        watch.changed()

    subscription = await bus.subscribe(Topic.OUTBOUND, handler)
    await watch.until(lambda: len(handled) == 3)
    await subscription.stop()
    assert handled == sent and await bus.dead_letters(Topic.OUTBOUND) == []


async def test_one_bad_envelope_in_a_packed_message_is_dead_lettered_alone(
    make_bus: RabbitFactory, amqp_url: str
) -> None:
    bus = await make_bus(partitions=1)
    await bus.publish(Topic.INBOUND, [envelope(f"k{n}", n, note="bad" if n == 2 else "") for n in range(5)])
    assert await queued(amqp_url, bus.topology, Topic.INBOUND) == 1  # packed
    handled: list[int] = []
    watch = Watch()

    async def handler(delivery: Delivery) -> None:
        if delivery.envelope.headers.get("note") == "bad":
            raise Rejected("does not parse")
        handled.append(number(delivery))
        watch.changed()

    subscription = await bus.subscribe(Topic.INBOUND, handler)
    await watch.until(lambda: len(handled) == 4)

    async def buried() -> bool:
        return len(await bus.dead_letters(Topic.INBOUND)) == 1

    await eventually(buried)
    await subscription.stop()
    [letter] = await bus.dead_letters(Topic.INBOUND)
    assert int(letter.envelope.body) == 2 and letter.reason == "does not parse"
    assert sorted(handled) == [0, 1, 3, 4]
    assert await queued(amqp_url, bus.topology, Topic.INBOUND) == 0  # the packed message was acknowledged


async def test_a_message_claiming_to_be_packed_that_does_not_unpack_is_dead_lettered_whole(
    make_bus: RabbitFactory, amqp_url: str
) -> None:
    bus = await make_bus(partitions=1)
    handled: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery)

    subscription = await bus.subscribe(Topic.INBOUND, handler)
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(
                b'[["a","k",{},99]]\nshort', message_id="foreign", headers={"x-gateway-packed": 1}
            ),
            routing_key=bus.topology.queue(Topic.INBOUND, 0),
        )
    finally:
        await connection.close()

    async def buried() -> bool:
        return len(await bus.dead_letters(Topic.INBOUND)) == 1

    await eventually(buried)
    await subscription.stop()
    [letter] = await bus.dead_letters(Topic.INBOUND)
    assert letter.envelope.message_id == "foreign" and letter.envelope.body == b'[["a","k",{},99]]\nshort'
    assert letter.reason.startswith("packed message does not unpack: body of 'a' runs past the end")
    assert handled == [] and await queued(amqp_url, bus.topology, Topic.INBOUND) == 0


# -- (d) publishing rules and topology ----------------------------------------------------------------


async def test_a_batch_with_an_envelope_without_key_is_refused_whole(
    make_bus: RabbitFactory, amqp_url: str
) -> None:
    bus = await make_bus()
    with pytest.raises(ValueError, match="needs a key"):
        await bus.publish(Topic.INBOUND, [envelope("k", 0), Envelope(b"x", "no-key")])
    assert await queued(amqp_url, bus.topology, Topic.INBOUND) == 0


async def test_publish_spreads_keys_over_partitions_and_start_is_idempotent(
    make_bus: RabbitFactory, amqp_url: str
) -> None:
    bus = await make_bus(partitions=4)
    await bus.start()
    await bus.publish(Topic.OUTBOUND, [envelope(f"key-{n}", 0) for n in range(40)])
    counts = await queued_per_queue(amqp_url, bus.topology, Topic.OUTBOUND)
    assert counts == [1, 1, 1, 1]  # every partition got some, each partition's share packed in one message


async def test_an_unroutable_message_is_refused(make_bus: RabbitFactory, amqp_url: str) -> None:
    bus = await make_bus()
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await channel.queue_delete(bus.topology.queue(Topic.EMAIL))
    finally:
        await connection.close()
    with pytest.raises(BusUnavailable):
        await bus.publish(Topic.EMAIL, [Envelope(b"x", "nowhere")])
    await bus.publish(Topic.INBOUND, [envelope("k", 0)])  # the publishing channel is still fine


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
async def test_every_subscriber_is_counted_active_or_standing_by(
    make_bus: RabbitFactory, queue_type: str
) -> None:
    bus = await make_bus(queue_type=queue_type, rebalance_interval=0)
    other = await make_bus(queue_type=queue_type, rebalance_interval=0)

    async def handler(delivery: Delivery) -> None:
        pass

    first = await bus.subscribe(Topic.INBOUND, handler)
    second = await other.subscribe(Topic.INBOUND, handler)
    assert await bus.subscriber_count(Topic.INBOUND) == 2
    assert await bus.subscriber_count(Topic.OUTBOUND) == 0
    await second.stop()

    async def one_left() -> bool:  # a quorum queue's consumer count catches up through its log: poll it
        return await bus.subscriber_count(Topic.INBOUND) == 1

    await eventually(one_left, timeout=10)
    assert await bus.subscriber_count(Topic.INBOUND) == 1
    await first.stop()


async def test_queues_declared_with_another_type_stop_the_start_with_a_clear_error(
    make_bus: RabbitFactory, amqp_url: str, queue_prefix: str
) -> None:
    await make_bus(queue_type="classic")
    quorum = RabbitBus(amqp_url, prefix=queue_prefix, queue_type="quorum", partitions=2)
    with pytest.raises(TopologyConflict, match="queue_type='quorum'"):
        await quorum.start()


async def test_start_fails_with_bus_unavailable_when_nothing_listens(queue_prefix: str) -> None:
    async with TcpProxy("127.0.0.1", 9) as proxy:
        port = proxy.port
        await proxy.cut()
        bus = RabbitBus(f"amqp://guest:guest@127.0.0.1:{port}/", prefix=queue_prefix, connect_timeout=3)
        began = time.monotonic()
        with pytest.raises(BusUnavailable):
            await bus.start()
        assert time.monotonic() - began < 3.5
        with pytest.raises(BusUnavailable):
            await bus.publish(Topic.EMAIL, [Envelope(b"x", "never")])


async def queued_per_queue(amqp_url: str, topology: Topology, topic: Topic) -> list[int]:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        counts = []
        for name in topology.queues(topic):
            declared = await channel.declare_queue(name, passive=True)
            counts.append(declared.declaration_result.message_count or 0)
        return counts
    finally:
        await connection.close()


async def queued(amqp_url: str, topology: Topology, topic: Topic) -> int:
    return sum(await queued_per_queue(amqp_url, topology, topic))


# -- the partition count ------------------------------------------------------------------------------


async def test_a_role_refuses_a_partition_count_that_disagrees_with_the_queues(
    make_bus: RabbitFactory, amqp_url: str, queue_prefix: str
) -> None:
    await make_bus(partitions=4)
    for wrong in (2, 8):
        refused = rf"GATEWAY_PARTITIONS is {wrong} but .* have 4 partitions"
        with pytest.raises(TopologyConflict, match=refused):
            await make_bus(partitions=wrong)
    assert (await make_bus(partitions=4)).partitions == 4


async def test_a_declaration_in_progress_never_shows_a_count_cut_short(
    amqp_url: str, queue_prefix: str
) -> None:
    """Seen in a benchmark: a role found 12 of the 16 queues another role was declaring, and refused to
    start. Watched from another connection all along, a declaration shows no partitions, then all 16."""
    topology = Topology(prefix=queue_prefix, partitions=16)
    declaring = await aio_pika.connect_robust(amqp_url)
    watching = await aio_pika.connect_robust(amqp_url)
    try:
        task = asyncio.create_task(declare(declaring, topology))
        seen = set()
        while not task.done():
            seen.add(await partitions_found(watching, topology))
        await task
        seen.add(await partitions_found(watching, topology))
        assert seen <= {0, 16} and 16 in seen
    finally:
        await declaring.close()
        await watching.close()
        await delete_topology(amqp_url, topology)


async def test_a_role_with_a_smaller_count_starting_at_the_same_moment_is_refused_after_declaring(
    make_bus: RabbitFactory, amqp_url: str, queue_prefix: str
) -> None:
    """It may find no queue while the other declares, but the check after its own declaration sees 16."""
    first = await make_bus(partitions=16)
    assert first.partitions == 16
    with pytest.raises(TopologyConflict, match=r"GATEWAY_PARTITIONS is 12 but .* have 16 partitions"):
        await make_bus(partitions=12)


async def test_the_partition_count_changes_only_while_the_queues_are_empty_and_unconsumed(
    make_bus: RabbitFactory, amqp_url: str, queue_prefix: str
) -> None:
    bus = await make_bus(partitions=2)
    topology = Topology(queue_prefix, 2)
    await bus.publish(Topic.INBOUND, [envelope("k", 1)])
    with pytest.raises(PartitionsBusy, match="not empty or still consumed"):
        await change_partitions([amqp_url], topology, 4)
    await bus.close()
    async with aio_pika_channel(amqp_url) as channel:
        for partition in range(2):
            queue = await channel.declare_queue(topology.queue(Topic.INBOUND, partition), passive=True)
            await queue.purge()
    assert await change_partitions([amqp_url], topology, 4) == (2, 4)
    found, queues = await inspect_partitions([amqp_url], topology)
    assert found == 4 and len(queues) == 8  # inbound and outbound
    assert (await make_bus(partitions=4)).partitions == 4
    with pytest.raises(TopologyConflict):
        await make_bus(partitions=2)
    assert await change_partitions([amqp_url], topology, 3) == (4, 3)
    assert (await inspect_partitions([amqp_url], topology))[0] == 3

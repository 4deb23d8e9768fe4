"""Timers at scale: what a pending timer costs in Redis memory, how late a burst of timers fires under
ordinary traffic, and whether pending timers slow the ordinary traffic down. Each figure beside a
baseline measured in the same run.

1. ``memory``: N conversations each handle "ask" through the real worker path (load, engine, commit,
   schedule change; the bus left out) on a private redis-server, once with stories whose question has a
   ``timeout`` and once with the same stories without it. The difference of ``INFO memory`` per
   conversation is what one pending timer costs: its ``timers`` record, that key's entry in the user's
   key index, and its schedule entry. Printed with and without the turn's processed-message record
   (which keeps the schedule change for a day, like the turn's replies).
2. ``burst``: 2 ``gateway worker`` processes on RabbitMQ and the private Redis; 2,000 timers fall due
   within one second (planted as a worker's commit leaves them) while 200 msg/s of ordinary traffic
   flows. Lateness (the firing's turn in a worker, and its reply reaching this process, minus the due
   time) p50/p99/max; the ordinary traffic's latency before and during the burst.
3. ``throughput``: two deployments side by side (2 workers each, a Redis each), one with 100,000 timers
   pending (due tomorrow), one with none, each saturated in turn (messages published at once) for a few
   rounds, so that both see the same moments of this shared machine; the medians are compared.

    .venv/bin/python bench/timer_bench.py [--part all|memory|burst|throughput] [--timers 100000]
        [--burst 2000] [--rate 200] [--messages 4000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds, percentile, rabbit_vhost  # noqa: E402
from bench.worker_bench import NoBus  # noqa: E402
from gateway.core.bus.base import Delivery, Envelope, Topic, partition_of  # noqa: E402
from gateway.core.bus.rabbit import RabbitBus  # noqa: E402
from gateway.core.schedule.base import Scheduled  # noqa: E402
from gateway.core.schedule.redis import RedisSchedule  # noqa: E402
from gateway.core.schema import ConversationKey, Inbound, parse_reply  # noqa: E402
from gateway.core.store.base import Commit, Record  # noqa: E402
from gateway.core.store.redis import RedisStore  # noqa: E402
from tests.support.faults import PrivateRedis  # noqa: E402
from worker.engine import Engine, load_stories  # noqa: E402
from worker.engine.model import TimerTarget  # noqa: E402
from worker.service import StoryWorker  # noqa: E402
from worker.timers.pending import KIND, PendingTimer, PendingTimers, firing_id, timer_id  # noqa: E402
from worker.timers.plan import record_ttl  # noqa: E402
from worker.timers.turns import TimerTurns  # noqa: E402

PARTITIONS = 16
ASK = """\
stories:
  ask:
    triggers: [ask]
    steps:
      - id: question
        actions:
          - message: What's your email?
        expect: email
        next: thanks{timeout}
      - id: nudge
        actions:
          - message: Still there?
        next: thanks
      - id: thanks
        actions:
          - message: Thanks.
"""
TRAFFIC = """\
bot:
  fallback: echo
stories:
  echo:
    steps:
      - id: say
        actions:
          - message: "You said {{@message}}"
  remind:
    steps:
      - id: ping
        actions:
          - message: Ping.
"""


async def used_memory(url: str) -> int:
    client = aioredis.from_url(url)
    try:
        info = await client.info("memory")
        return int(info["used_memory"])
    finally:
        await client.aclose()


async def in_chunks(count: int, step: Callable[[int], Awaitable[None]], width: int = 256) -> None:
    for first in range(0, count, width):
        await asyncio.gather(*(step(i) for i in range(first, min(count, first + width))))


# -- 1. memory ------------------------------------------------------------------------------------------


async def memory_of(count: int, with_timeout: bool) -> tuple[float, dict[str, float]]:
    """(INFO memory bytes per conversation, MEMORY USAGE per conversation of the parts a timer adds)."""
    folder = Path(tempfile.mkdtemp(prefix="timer-bench-"))
    stories = folder / "stories"
    stories.mkdir()
    timeout = "\n        timeout: {after: 10m, goto: nudge}" if with_timeout else ""
    (stories / "ask.yml").write_text(ASK.format(timeout=timeout))
    engine = Engine(load_stories(stories, folder / "emails"))
    redis = PrivateRedis(folder)
    await redis.start()
    store = RedisStore(redis.url, max_connections=32)
    schedule = RedisSchedule(redis.url, max_connections=8)
    worker = StoryWorker(NoBus(), store, lambda: engine, timers=TimerTurns(schedule, PARTITIONS))
    client = aioredis.from_url(redis.url)
    try:
        empty = await used_memory(redis.url)

        async def ask(i: int) -> None:
            user = str(100_000_000 + i)  # a Telegram-like id: one user, one private chat
            message = Inbound(id=f"telegram:update:{i}", channel="telegram", chat=user, user=user, text="ask")
            envelope = Envelope(message.to_json(), message.id, str(message.conversation))
            await worker.handle(Delivery(envelope, Topic.INBOUND, attempt=1, redelivered=False))

        await in_chunks(count, ask)
        total = (await used_memory(redis.url) - empty) / count
        parts: dict[str, float] = {"record": 0.0, "key index": 0.0, "schedule": 0.0}
        sample = 100  # users whose keys are weighed one by one
        for i in range(sample):
            tag = "{telegram:" + str(100_000_000 + i) + "}"
            parts["key index"] += (await client.memory_usage(f"gw:{tag}:keys") or 0) / sample
            record = await client.memory_usage(f"gw:{tag}:rec:timers:{100_000_000 + i}")
            parts["record"] += (record or 0) / sample
        schedule_keys = [key async for key in client.scan_iter(match="gw:{timers:*}:*", count=1000)]
        for key in schedule_keys:
            parts["schedule"] += (await client.memory_usage(key) or 0) / count
        parts["schedule keys"] = len(schedule_keys)
        return total, parts
    finally:
        await client.aclose()
        await store.close()
        await schedule.close()
        await redis.stop()


async def memory(count: int) -> None:
    print(f"1. memory: {count:,} conversations answer 'ask' through the worker path on a private Redis")
    base, base_parts = await memory_of(count, with_timeout=False)
    total, parts = await memory_of(count, with_timeout=True)
    print(f"   without a timeout  {base:7.1f} B per conversation (INFO memory)")
    print(f"   with a timeout     {total:7.1f} B per conversation")
    print(f"   one pending timer: {total - base:.1f} B (goal at most 300)")
    index = parts["key index"] - base_parts["key index"]
    print(
        f"   MEMORY USAGE per timer: its record key {parts['record']:.0f} B, its entry in the user's key "
        f"index {index:.0f} B, the schedule {parts['schedule']:.0f} B ({parts['schedule keys']:.0f} keys); "
        "the rest is Redis's per-key overhead outside MEMORY USAGE (the keyspace and expiry dicts)"
    )


# -- the workers on RabbitMQ ----------------------------------------------------------------------------


class Workers:
    """``gateway worker`` processes on a vhost of their own and a private Redis, fed by this process."""

    def __init__(self, amqp_url: str, redis_url: str, count: int, prefix: str = "gw") -> None:
        self.amqp_url, self.redis_url, self.count, self.prefix = amqp_url, redis_url, count, prefix
        self.bus = RabbitBus(amqp_url, prefix=prefix, partitions=PARTITIONS)
        self.sent: dict[str, float] = {}
        self.ordinary: list[tuple[str, float, float]] = []  # (id, sent, latency)
        self.fired: dict[str, tuple[float, float]] = {}  # firing id → (turn time, arrival time)
        self.waiting: tuple[int, asyncio.Event] | None = None
        self.fired_target: tuple[int, asyncio.Event] | None = None
        self._quiet = asyncio.Event()
        self.per_batch: dict[int, int] = {}  # replies received per batch of messages
        self.processes: list[subprocess.Popen[bytes]] = []
        self.batch = 0

    async def on_reply(self, delivery: Delivery) -> None:
        arrived = time.time()
        reply = parse_reply(delivery.envelope.body)
        if reply.in_reply_to.startswith("timer:"):
            self.fired.setdefault(reply.in_reply_to, (reply.created_at, arrived))
            if self.fired_target is not None and len(self.fired) >= self.fired_target[0]:
                self.fired_target[1].set()
        elif reply.in_reply_to in self.sent:
            sent = self.sent.pop(reply.in_reply_to)
            self.ordinary.append((reply.in_reply_to, sent, arrived - sent))
            batch = int(reply.in_reply_to[1:].split("-", 1)[0])
            self.per_batch[batch] = self.per_batch.get(batch, 0) + 1
            self._quiet.set()
        if self.waiting is not None and len(self.ordinary) + len(self.fired) >= self.waiting[0]:
            self.waiting[1].set()

    async def __aenter__(self) -> Workers:
        self.folder = Path(tempfile.mkdtemp(prefix="timer-bench-"))
        (self.folder / "main.yml").write_text(TRAFFIC)
        env = {
            **os.environ,
            "GATEWAY_AMQP_URL": self.amqp_url,
            "GATEWAY_REDIS_URL": self.redis_url,
            "GATEWAY_QUEUE_PREFIX": self.prefix,
            "GATEWAY_STORIES": str(self.folder),
            "GATEWAY_PARTITIONS": str(PARTITIONS),
            "GATEWAY_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
        }
        await self.bus.start()
        self.subscription = await self.bus.subscribe(Topic.OUTBOUND, self.on_reply, concurrency=256)
        self.processes = [
            subprocess.Popen(  # noqa: ASYNC220 - starting a child returns at once
                [sys.executable, "-m", "gateway.app.cli", "worker"], env=env, stdin=subprocess.DEVNULL
            )
            for _ in range(self.count)
        ]
        await self.saturate(200)  # warm up connections, scripts and the partitions' consumers
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(15)
        await self.subscription.stop()
        await self.bus.close()

    def cpu(self) -> float:
        """CPU seconds the worker processes have used so far."""
        return sum(cpu_seconds(process.pid) for process in self.processes)

    async def replied(self, batch: int, count: int) -> None:
        """Until ``count`` ordinary messages of ``batch`` (see :meth:`messages`) have their replies."""
        while self.per_batch.get(batch, 0) < count:
            self._quiet.clear()
            await self._quiet.wait()

    async def quiet(self) -> None:
        """Until every ordinary message published has its reply."""
        while self.sent:
            self._quiet.clear()
            await self._quiet.wait()

    def messages(self, count: int, users: int = 500) -> list[Inbound]:
        self.batch += 1
        return [
            Inbound(
                id=f"m{self.batch}-{n}",
                channel="bench",
                chat=f"u{n % users}",
                user=f"u{n % users}",
                text="hi",
            )
            for n in range(count)
        ]

    async def publish(self, messages: list[Inbound]) -> None:
        now = time.time()
        for m in messages:
            self.sent[m.id] = now
        await self.bus.publish(
            Topic.INBOUND, [Envelope(m.to_json(), m.id, str(m.conversation)) for m in messages]
        )

    async def saturate(self, count: int) -> float:
        """Publish ``count`` messages at once (in chunks); msg/s until the last reply."""
        self.ordinary.clear()
        done = asyncio.Event()
        self.waiting = (count + len(self.fired), done)
        started = time.perf_counter()
        messages = self.messages(count)
        for first in range(0, count, 100):
            await self.publish(messages[first : first + 100])
        await asyncio.wait_for(done.wait(), 300)
        self.waiting = None
        return count / (time.perf_counter() - started)

    async def paced(self, rate: float, seconds: float, users: int = 500) -> float:
        """Open loop: ``rate`` messages per second for ``seconds``, whatever the replies and the broker's
        confirms do (each publish goes out on its own, the bus batches those that meet); returns how long
        the publishing took."""
        messages = self.messages(int(rate * seconds), users)
        started = time.perf_counter()
        sending: list[asyncio.Task[None]] = []
        for n, message in enumerate(messages):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            sending.append(asyncio.create_task(self.publish([message])))
        await asyncio.gather(*sending)
        return time.perf_counter() - started


async def plant(redis_url: str, count: int, due_ms: Callable[[int], int]) -> dict[str, int]:
    """Timers as a worker's commit and schedule change leave them (a follow-up to remind.ping), in
    ``count`` conversations of their own; returns firing id → due ms."""
    store = RedisStore(redis_url, max_connections=32)
    schedule = RedisSchedule(redis_url, max_connections=8)
    planted: dict[str, int] = {}
    now = time.time()

    async def one(i: int) -> None:
        key = ConversationKey("bench", f"t{i}", f"t{i}")
        timer = PendingTimer(timer_id(f"plant:{i}", 0), due_ms(i), "follow_up", TimerTarget("remind", "ping"))
        pending = PendingTimers((timer,))
        record = Record(pending.encode(), record_ttl(pending, now))
        await store.commit(key, Commit(f"plant:{i}", None, records={KIND: record}))
        partition = partition_of(str(key), PARTITIONS)
        await schedule.change(partition, add=[Scheduled(timer.due_ms, key, timer.id)])
        planted[firing_id(key, timer.id)] = timer.due_ms

    try:
        await in_chunks(count, one)
        return planted
    finally:
        await store.close()
        await schedule.close()


async def settled(url: str) -> None:
    """Until Redis has no AOF rewrite running or scheduled: writing 100,000 timers starts one, and its
    fork would be measured as the timers' cost."""
    client = aioredis.from_url(url)
    try:
        await client.bgrewriteaof()  # at once, rather than when the next write crosses the threshold
        while True:
            info = await client.info("persistence")
            if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                return
            await asyncio.sleep(0.2)  # Redis offers no event for it
    finally:
        await client.aclose()


# -- 2. burst -----------------------------------------------------------------------------------------


async def burst(workers: Workers, redis_url: str, count: int, rate: float) -> None:
    print(
        f"2. burst: {count:,} timers due within one second, {rate:.0f} msg/s of ordinary traffic, 2 workers"
    )
    start = math.ceil(time.time()) + 6  # the second they fall due in
    due = await plant(redis_url, count, lambda i: start * 1000 + (i * 1000) // count)
    workers.fired.clear()
    workers.ordinary.clear()
    all_fired = asyncio.Event()
    workers.fired_target = (count, all_fired)
    traffic = asyncio.create_task(workers.paced(rate, start + 5 - time.time()))
    await asyncio.sleep(start - 0.2 - time.time())  # the clock, not an event
    cpu, replies = workers.cpu(), len(workers.ordinary)
    try:
        await asyncio.wait_for(all_fired.wait(), start + 60 - time.time())
    except TimeoutError:
        raise SystemExit(f"only {len(workers.fired)} of {count} timers fired within a minute") from None
    timer_cpu = (workers.cpu() - cpu) / (count + len(workers.ordinary) - replies)
    await traffic
    await asyncio.wait_for(workers.quiet(), 30)
    turn = [workers.fired[i][0] - due[i] / 1000 for i in due]
    arrival = [workers.fired[i][1] - due[i] / 1000 for i in due]
    goal = "met" if max(turn) <= 1.0 else "MISSED"
    print(
        f"   fired {len(workers.fired):,} of {count:,}; lateness at the worker's turn "
        f"{spread(turn)}; early: {sum(t < 0 for t in turn)}   (goal: all within 1 s: {goal})"
    )
    print(f"   its reply here minus the due time: {spread(arrival)}")
    before = [lat for _, sent, lat in workers.ordinary if sent < start - 0.5]
    during = [lat for _, sent, lat in workers.ordinary if start - 0.5 <= sent < start + 1.5]
    print(f"   ordinary traffic latency before the burst {spread(before)}; during it {spread(during)}")
    print(
        f"   the workers' CPU per message handled meanwhile (firings and traffic): {timer_cpu * 1000:.2f} ms"
    )

    # The same-run baseline: as many ordinary messages as timers, in as many conversations, published
    # within one second over the same traffic: what the workers make of that load without timers.
    workers.ordinary.clear()
    start = math.ceil(time.time()) + 2
    traffic = asyncio.create_task(workers.paced(rate, start + 4 - time.time()))
    await asyncio.sleep(start - 0.2 - time.time())  # the clock, not an event
    cpu, replies = workers.cpu(), len(workers.ordinary)
    first_batch = workers.batch + 1
    took = await workers.paced(count, 1.0, users=count)
    await workers.replied(first_batch, count)
    message_cpu = (workers.cpu() - cpu) / (len(workers.ordinary) - replies)
    await traffic
    await asyncio.wait_for(workers.quiet(), 60)
    burst = [lat for id_, _, lat in workers.ordinary if id_.startswith(f"m{first_batch}-")]
    print(
        f"   baseline: {count:,} ordinary messages published within {took:.2f} s instead, their latency "
        f"{spread(burst)}; CPU per message {message_cpu * 1000:.2f} ms"
    )


def spread(seconds: list[float]) -> str:
    return (
        f"p50 {percentile(seconds, 0.5):.0f} ms, p99 {percentile(seconds, 0.99):.0f} ms, "
        f"max {max(seconds, default=float('nan')) * 1000:.0f} ms"
    )


# -- 3. throughput --------------------------------------------------------------------------------------


async def throughput(amqp_url: str, count: int, pending: int, messages: int, rounds: int) -> None:
    print(
        f"3. throughput: {messages:,} ordinary messages at once, 2 workers, with {pending:,} timers pending "
        f"and with none: two deployments saturated in turn, {rounds} rounds"
    )
    folders = [Path(tempfile.mkdtemp(prefix="timer-bench-redis-")) for _ in range(2)]
    servers = [PrivateRedis(folder) for folder in folders]
    for server in servers:
        await server.start()
    try:
        tomorrow = int((time.time() + 86400) * 1000)
        await plant(servers[0].url, pending, lambda i: tomorrow + i)
        await settled(servers[0].url)
        async with (
            Workers(amqp_url, servers[0].url, count, prefix="with") as loaded,
            Workers(amqp_url, servers[1].url, count, prefix="none") as empty,
        ):
            rates: dict[str, list[float]] = {"with": [], "none": []}
            for n in range(rounds):
                order = (
                    [("with", loaded), ("none", empty)] if n % 2 == 0 else [("none", empty), ("with", loaded)]
                )
                for name, workers in order:
                    rates[name].append(await workers.saturate(messages))
            for name, label in (("none", "none pending"), ("with", f"{pending:,} pending")):
                shown = ", ".join(f"{rate:.0f}" for rate in rates[name])
                print(f"   {label:<16} median {statistics.median(rates[name]):6.0f} msg/s   ({shown})")
        ratio = statistics.median(rates["with"]) / statistics.median(rates["none"])
        print(f"   with / without: {ratio:.2f}   (goal: within 10 %: {'met' if ratio >= 0.9 else 'MISSED'})")
    finally:
        for server in servers:
            await server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["all", "memory", "burst", "throughput"], default="all")
    parser.add_argument("--timers", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    if args.part in ("all", "memory"):
        await memory(args.timers)
    with rabbit_vhost() as (_, amqp_url):
        if args.part in ("all", "burst"):
            redis = PrivateRedis(Path(tempfile.mkdtemp(prefix="timer-bench-redis-")))
            await redis.start()
            try:
                async with Workers(amqp_url, redis.url, args.workers) as workers:
                    await burst(workers, redis.url, args.burst, args.rate)
            finally:
                await redis.stop()
        if args.part in ("all", "throughput"):
            await throughput(amqp_url, args.workers, args.timers, args.messages, args.rounds)


if __name__ == "__main__":
    asyncio.run(main())

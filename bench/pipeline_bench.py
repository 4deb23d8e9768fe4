"""Bus-level pipeline benchmark: inbound messages on RabbitMQ → story workers (separate processes, Redis
store) → replies on the outbound queues, against a naive floor measured in the same invocation.

The floor does, one message at a time, what the pipeline must do at the least: publish the inbound message
(persistent, confirmed), consume it, one Redis round trip to load and one to save, publish the reply
(persistent, confirmed), ack, consume the reply. No logic. Only same-run ratios mean anything: this
machine's speed drifts by 30 % from day to day.

    .venv/bin/python bench/pipeline_bench.py [--messages 4000] [--workers 2] [--users 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import delete_keys, percentile, rabbit_vhost
from gateway.core.bus.base import Delivery, Envelope, Topic
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.schema import Inbound, parse_reply

STORY = """\
bot:
  fallback: echo
stories:
  echo:
    steps:
      - id: say
        actions:
          - set_session: {last: "{{@message}}"}
          - message: "You said {{@message}}"
"""


def report(name: str, count: int, seconds: float, latencies: list[float]) -> float:
    rate = count / seconds
    print(
        f"{name:<34} {rate:9.0f} msg/s   p50 {percentile(latencies, 0.5):7.2f} ms"
        f"   p99 {percentile(latencies, 0.99):7.2f} ms   ({count} messages in {seconds:.2f} s)"
    )
    return rate


async def floor(amqp_url: str, redis_url: str, count: int) -> tuple[float, list[float]]:
    """The naive path: every step awaited before the next, one message at a time."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=1)
    inbound = await channel.declare_queue(f"floor-in-{uuid.uuid4().hex}", durable=True)
    outbound = await channel.declare_queue(f"floor-out-{uuid.uuid4().hex}", durable=True)
    client = aioredis.from_url(redis_url)
    latencies: list[float] = []
    body = Inbound(id="x", channel="bench", chat="c", user="u", text="hello").to_json()
    persistent = aio_pika.DeliveryMode.PERSISTENT
    started = time.perf_counter()
    async with inbound.iterator() as inbox, outbound.iterator() as outbox:
        for n in range(count):
            t0 = time.perf_counter()
            message = aio_pika.Message(body, delivery_mode=persistent, message_id=str(n))
            await channel.default_exchange.publish(message, routing_key=inbound.name)  # confirmed
            got = await anext(inbox)
            await client.get(f"floor:{n % 200}")  # load the conversation
            await client.set(f"floor:{n % 200}", got.body, px=60_000)  # save it
            reply = aio_pika.Message(got.body, delivery_mode=persistent)
            await channel.default_exchange.publish(reply, routing_key=outbound.name)  # confirmed
            await got.ack()
            delivered = await anext(outbox)
            await delivered.ack()
            latencies.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - started
    await inbound.delete(if_unused=False, if_empty=False)
    await outbound.delete(if_unused=False, if_empty=False)
    keys = [k async for k in client.scan_iter(match="floor:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    await connection.close()
    return seconds, latencies


class Pipeline:
    """Worker processes on RabbitMQ + Redis, fed and drained by this process over the real bus."""

    def __init__(self, amqp_url: str, redis_url: str, workers: int) -> None:
        self.amqp_url, self.redis_url, self.workers = amqp_url, redis_url, workers
        self.prefix = f"bench{uuid.uuid4().hex[:6]}"
        self.bus = RabbitBus(amqp_url, prefix=self.prefix)
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.expected = 0
        self.done = asyncio.Event()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.batch = 0

    async def on_reply(self, delivery: Delivery) -> None:
        reply = parse_reply(delivery.envelope.body)
        self.latencies.append(time.perf_counter() - self.sent_at[reply.in_reply_to])
        if len(self.latencies) >= self.expected:
            self.done.set()

    async def __aenter__(self) -> Pipeline:
        self.stories = Path(tempfile.mkdtemp(prefix="bench-stories-"))
        (self.stories / "echo.yml").write_text(STORY)
        env = {
            **os.environ,
            "GATEWAY_AMQP_URL": self.amqp_url,
            "GATEWAY_REDIS_URL": self.redis_url,
            "GATEWAY_QUEUE_PREFIX": self.prefix,
            "GATEWAY_REDIS_PREFIX": self.prefix,
            "GATEWAY_STORIES": str(self.stories),
            "GATEWAY_LOG_LEVEL": "warning",
        }
        await self.bus.start()
        self.subscription = await self.bus.subscribe(Topic.OUTBOUND, self.on_reply, concurrency=256)
        self.processes = [
            subprocess.Popen(  # noqa: ASYNC220 - starting a child returns at once
                [sys.executable, "-m", "gateway.app.cli", "worker"], env=env, stdin=subprocess.DEVNULL
            )
            for _ in range(self.workers)
        ]
        await self.run(50, users=50, chunk=50)  # warm up connections and scripts before timing
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(15)
        await self.subscription.stop()
        await self.bus.close()
        await delete_keys(self.redis_url, f"{self.prefix}:*")
        shutil.rmtree(self.stories, ignore_errors=True)

    async def run(
        self, count: int, *, users: int, chunk: int = 100, rate: float | None = None
    ) -> tuple[float, list[float]]:
        """Publish ``count`` messages (at once in chunks, or paced at ``rate``/s); wait for every reply."""
        self.batch += 1
        self.latencies, self.expected = [], count
        self.done.clear()
        messages = [
            Inbound(
                id=f"m{self.batch}-{n}",
                channel="bench",
                chat=f"c{n % users}",
                user=f"u{n % users}",
                text=f"hello {n}",
            )
            for n in range(count)
        ]
        started = time.perf_counter()
        for first in range(0, count, chunk):
            part = messages[first : first + chunk]
            if rate is not None:  # open loop: publish on schedule whatever the replies do
                await asyncio.sleep(max(0.0, started + first / rate - time.perf_counter()))
            now = time.perf_counter()
            for m in part:
                self.sent_at[m.id] = now
            await self.bus.publish(
                Topic.INBOUND, [Envelope(m.to_json(), m.id, str(m.conversation)) for m in part]
            )
        await asyncio.wait_for(self.done.wait(), 300)
        return time.perf_counter() - started, self.latencies


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--floor-messages", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rate", type=float, default=250.0, help="offered rate of the paced run")
    parser.add_argument("--paced-seconds", type=int, default=4)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    with rabbit_vhost() as (_, amqp_url):
        print(f"bus-level pipeline: {args.workers} worker processes, {args.users} conversations")
        floor_seconds, floor_lat = await floor(amqp_url, args.redis, args.floor_messages)
        floor_rate = report("floor (naive, one at a time)", args.floor_messages, floor_seconds, floor_lat)
        async with Pipeline(amqp_url, args.redis, args.workers) as pipeline:
            seconds, latencies = await pipeline.run(args.messages, users=args.users)
            rate = report("pipeline (all published at once)", args.messages, seconds, latencies)
            paced = int(args.rate * args.paced_seconds)
            seconds, latencies = await pipeline.run(paced, users=args.users, chunk=1, rate=args.rate)
            report(f"pipeline (paced at {args.rate:.0f}/s)", paced, seconds, latencies)
        print(f"throughput ratio pipeline / floor: {rate / floor_rate:.2f}x   (goal: at least 1.0x)")


if __name__ == "__main__":
    asyncio.run(main())

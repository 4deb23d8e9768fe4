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
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.bus.base import Delivery, Envelope, Topic
from gateway.bus.rabbit import RabbitBus
from gateway.schema import Inbound, parse_reply

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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def report(name: str, count: int, seconds: float, latencies: list[float]) -> float:
    rate = count / seconds
    print(
        f"{name:<34} {rate:9.0f} msg/s   p50 {percentile(latencies, 0.5):7.2f} ms"
        f"   p99 {percentile(latencies, 0.99):7.2f} ms   ({count} messages in {seconds:.2f} s)"
    )
    return rate


def rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([ctl, "-q", *args], check=True, capture_output=True)


async def floor(amqp_url: str, redis_url: str, count: int) -> tuple[float, list[float]]:
    """The naive path: every step awaited before the next, one message at a time."""
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    inbound = await channel.declare_queue(f"floor-in-{uuid.uuid4().hex}", durable=True)
    outbound = await channel.declare_queue(f"floor-out-{uuid.uuid4().hex}", durable=True)
    client = aioredis.from_url(redis_url)
    latencies: list[float] = []
    body = Inbound(id="x", channel="bench", chat="c", user="u", text="hello").to_json()
    started = time.perf_counter()
    for n in range(count):
        t0 = time.perf_counter()
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=str(n))
        await channel.default_exchange.publish(message, routing_key=inbound.name)
        got = await inbound.get(no_ack=False, fail=False)
        while got is None:
            got = await inbound.get(no_ack=False, fail=False)
        await client.get(f"floor:{n % 200}")
        await client.set(f"floor:{n % 200}", got.body, px=60_000)
        await channel.default_exchange.publish(
            aio_pika.Message(got.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=outbound.name,
        )
        await got.ack()
        reply = await outbound.get(no_ack=True, fail=False)
        while reply is None:
            reply = await outbound.get(no_ack=True, fail=False)
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


async def pipeline(
    amqp_url: str, redis_url: str, count: int, workers: int, users: int
) -> tuple[float, list[float]]:
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    stories = Path(tempfile.mkdtemp(prefix="bench-stories-"))
    (stories / "echo.yml").write_text(STORY)
    env = {
        **os.environ,
        "GATEWAY_AMQP_URL": amqp_url,
        "GATEWAY_REDIS_URL": redis_url,
        "GATEWAY_QUEUE_PREFIX": prefix,
        "GATEWAY_REDIS_PREFIX": prefix,
        "GATEWAY_STORIES": str(stories),
        "GATEWAY_LOG_LEVEL": "warning",
    }
    bus = RabbitBus(amqp_url, prefix=prefix)
    await bus.start()
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def on_reply(delivery: Delivery) -> None:
        reply = parse_reply(delivery.envelope.body)
        latencies.append(time.perf_counter() - sent_at[reply.in_reply_to])
        if len(latencies) == count:
            done.set()

    subscription = await bus.subscribe(Topic.OUTBOUND, on_reply, concurrency=256)
    processes = [
        subprocess.Popen(  # noqa: ASYNC220 - starting a child returns at once
            [sys.executable, "-m", "gateway.cli", "worker"], env=env, stdin=subprocess.DEVNULL
        )
        for _ in range(workers)
    ]
    try:
        # Warm up: one message per worker round, so connections and scripts are ready before timing.
        warm = [
            Inbound(id=f"warm-{n}", channel="bench", chat=f"w{n}", user=f"w{n}", text="hi") for n in range(50)
        ]
        for m in warm:
            sent_at[m.id] = time.perf_counter()
        count_target = count
        count = len(warm)
        await bus.publish(Topic.INBOUND, [Envelope(m.to_json(), m.id, str(m.conversation)) for m in warm])
        await asyncio.wait_for(done.wait(), 60)
        latencies.clear()
        done.clear()
        count = count_target

        messages = [
            Inbound(
                id=f"m-{n}", channel="bench", chat=f"c{n % users}", user=f"u{n % users}", text=f"hello {n}"
            )
            for n in range(count)
        ]
        started = time.perf_counter()
        for start in range(0, count, 100):
            batch = messages[start : start + 100]
            now = time.perf_counter()
            for m in batch:
                sent_at[m.id] = now
            await bus.publish(
                Topic.INBOUND, [Envelope(m.to_json(), m.id, str(m.conversation)) for m in batch]
            )
        await asyncio.wait_for(done.wait(), 300)
        seconds = time.perf_counter() - started
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)
        await subscription.stop()
        await bus.close()
        client = aioredis.from_url(redis_url)
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
        await client.aclose()
        shutil.rmtree(stories, ignore_errors=True)
    return seconds, latencies


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--floor-messages", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    vhost = f"gwbench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    amqp_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    try:
        print(f"bus-level pipeline, {args.workers} worker processes, {args.users} conversations")
        floor_seconds, floor_lat = await floor(amqp_url, args.redis, args.floor_messages)
        floor_rate = report("floor (naive, one at a time)", args.floor_messages, floor_seconds, floor_lat)
        seconds, latencies = await pipeline(amqp_url, args.redis, args.messages, args.workers, args.users)
        rate = report("pipeline (saturated)", args.messages, seconds, latencies)
        print(f"ratio pipeline / floor: {rate / floor_rate:.2f}x   (goal: at least 1.0x)")
        print(f"mean floor latency {statistics.mean(floor_lat) * 1000:.2f} ms")
    finally:
        rabbitmqctl("delete_vhost", vhost)


if __name__ == "__main__":
    asyncio.run(main())

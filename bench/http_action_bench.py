"""The story worker with an http action in every turn: a `gateway worker` process on RabbitMQ and Redis
whose every message calls a JSON API answering in 50 ms (bench/slow_api.py, a process of its own), against
the same worker running a story without the call, in the same run.

Every message is published at once, across many conversations (each conversation's messages are handled
in order, one at a time); the rate is messages over the time from the first reply to the last. While a
conversation waits for its API, its handler gives its slot to the others (``Delivery.aside``), so the
worker's 64 handler slots are not what bounds the rate: the calls in flight are (``GATEWAY_HTTP_CONCURRENCY``,
100: at most 2,000 calls/s of 50 ms). A third run shows it: the same worker with only 8 handler slots, where
handlers holding their slot through the call could not pass 8 / 50 ms = 160 msg/s. Goal: at least 1,000
msg/s with the call.

    .venv/bin/python bench/http_action_bench.py [--messages 6000] [--users 1000] [--delay 0.05]
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

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import CpuMeter, delete_keys, free_port, pids_of, rabbit_vhost  # noqa: E402
from gateway.core.bus.base import Delivery, Envelope, Topic  # noqa: E402
from gateway.core.bus.rabbit import RabbitBus  # noqa: E402
from gateway.core.schema import Inbound, parse_reply  # noqa: E402

FEW_SLOTS = 8
PLAIN = """\
stories:
  order:
    triggers: ["re:^order"]
    steps:
      - id: look_up
        actions:
          - set_session: {Status: shipped, Eta: on Friday}
          - message: "Order {{@message}} is {{@session.Status}}, arriving {{@session.Eta}}."
"""
WITH_HTTP = """\
stories:
  order:
    triggers: ["re:^order"]
    steps:
      - id: look_up
        actions:
          - http:
              url: "http://127.0.0.1:{port}/orders/{{{{@message}}}}"
              headers: {{Authorization: "Bearer {{{{@secret.SHOP_TOKEN}}}}"}}
              save: {{session: {{Status: $.status, Eta: $.delivery.eta}}}}
              on_error: sorry
          - message: "Order {{{{@message}}}} is {{{{@session.Status}}}}, arriving {{{{@session.Eta}}}}."
      - id: sorry
        actions:
          - message: "failed: {{{{@session.http_error}}}}"
"""


class Worker:
    """One `gateway worker` process on its own queues and keys, fed and drained over the real bus."""

    def __init__(self, amqp_url: str, redis_url: str, story: str, settings: dict[str, str]) -> None:
        self.amqp_url, self.redis_url, self.story, self.settings = amqp_url, redis_url, story, settings
        self.prefix = f"hab{uuid.uuid4().hex[:6]}"
        self.bus = RabbitBus(amqp_url, prefix=self.prefix)
        self.replies: list[float] = []
        self.failed = 0
        self.expected = 0
        self.done = asyncio.Event()
        self.batch = 0
        self.metrics_port = free_port()

    async def on_reply(self, delivery: Delivery) -> None:
        if parse_reply(delivery.envelope.body).text.startswith("failed:"):
            self.failed += 1
        self.replies.append(time.perf_counter())
        if len(self.replies) >= self.expected:
            self.done.set()

    async def __aenter__(self) -> Worker:
        self.stories = Path(tempfile.mkdtemp(prefix="bench-stories-"))
        (self.stories / "order.yml").write_text(self.story)
        env = {
            **os.environ,
            "GATEWAY_AMQP_URL": self.amqp_url,
            "GATEWAY_REDIS_URL": self.redis_url,
            "GATEWAY_QUEUE_PREFIX": self.prefix,
            "GATEWAY_REDIS_PREFIX": self.prefix,
            "GATEWAY_STORIES": str(self.stories),
            "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_HTTP_ALLOW": "127.0.0.1",
            "GATEWAY_SECRET_SHOP_TOKEN": "bench-token",
            "GATEWAY_METRICS_PORT": str(self.metrics_port),
            **self.settings,
        }
        await self.bus.start()
        self.subscription = await self.bus.subscribe(Topic.OUTBOUND, self.on_reply, concurrency=256)
        self.process = subprocess.Popen(  # noqa: ASYNC220 - starting a child returns at once
            [sys.executable, "-m", "gateway.app.cli", "worker"], env=env, stdin=subprocess.DEVNULL
        )
        await self.run(200, users=200)  # warm up connections, scripts and the API's connections
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(15)
        await self.subscription.stop()
        await self.bus.close()
        await delete_keys(self.redis_url, f"{self.prefix}:*")
        shutil.rmtree(self.stories, ignore_errors=True)

    async def call_seconds(self) -> tuple[float, float]:
        """The worker's ``gateway_http_call_seconds`` sum and count so far."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            text = await response.text()
        found = {"sum": 0.0, "count": 0.0}
        for line in text.splitlines():
            for part in found:
                if line.startswith(f"gateway_http_call_seconds_{part}{{"):
                    found[part] += float(line.rsplit(" ", 1)[1])
        return found["sum"], found["count"]

    async def run(self, count: int, *, users: int) -> float:
        """Publish ``count`` messages of ``users`` conversations at once; msg/s from first to last reply."""
        self.batch += 1
        self.replies, self.expected, self.failed = [], count, 0
        self.done.clear()
        messages = [
            Inbound(id=f"m{self.batch}-{n}", channel="bench", chat=f"c{n % users}", user=f"u{n % users}",
                    text=f"order {n}")
            for n in range(count)
        ]  # fmt: skip
        for first in range(0, count, 500):
            part = messages[first : first + 500]
            await self.bus.publish(
                Topic.INBOUND, [Envelope(m.to_json(), m.id, str(m.conversation)) for m in part]
            )
        await asyncio.wait_for(self.done.wait(), 600)
        return (count - 1) / (self.replies[-1] - self.replies[0])


async def measure(name: str, worker: Worker, args: argparse.Namespace, groups: dict[str, list[int]]) -> float:
    seconds, calls = await worker.call_seconds()
    with CpuMeter({"worker": [worker.process.pid], **groups}) as cpu:
        rate = await worker.run(args.messages, users=args.users)
    print(f"{name:<40} {rate:8.0f} msg/s   ({args.messages} messages, {args.users} conversations, "
          f"{worker.failed} failed calls)")  # fmt: skip
    print(cpu.line())
    after, made = await worker.call_seconds()
    if made > calls:
        mean = (after - seconds) / (made - calls) * 1000
        print(f"    calls as the worker saw them: {mean:.0f} ms on average, retries included")
    return rate


async def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.05, help="the API's answer time, seconds")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--http-concurrency", type=int, default=100, help="GATEWAY_HTTP_CONCURRENCY")
    parser.add_argument("--concurrency", type=int, default=64, help="GATEWAY_WORKER_CONCURRENCY")
    args = parser.parse_args()
    settings = {
        "GATEWAY_HTTP_CONCURRENCY": str(args.http_concurrency),
        "GATEWAY_WORKER_CONCURRENCY": str(args.concurrency),
    }
    port = free_port()
    command = [sys.executable, str(ROOT / "bench" / "slow_api.py"), str(port), str(args.delay)]
    api = subprocess.Popen(command)  # noqa: ASYNC220 - starting a child returns at once
    services = {"rabbitmq": pids_of("beam.smp"), "redis": pids_of("redis-server")}
    try:
        with rabbit_vhost() as (_, amqp_url):
            print(f"one worker process: {args.concurrency} handler slots, at most {args.http_concurrency} "
                  "calls in flight")  # fmt: skip
            async with Worker(amqp_url, args.redis, PLAIN, settings) as worker:
                plain = await measure("worker, story without http", worker, args, services)
            story = WITH_HTTP.format(port=port)
            groups = {**services, "fake API": [api.pid]}
            async with Worker(amqp_url, args.redis, story, settings) as worker:
                name = f"worker, an http call of {args.delay * 1000:.0f} ms per message"
                calling = await measure(name, worker, args, groups)
            few = {**settings, "GATEWAY_WORKER_CONCURRENCY": str(FEW_SLOTS)}
            async with Worker(amqp_url, args.redis, story, few) as worker:
                name = f"the same, {FEW_SLOTS} handler slots (held: {FEW_SLOTS / args.delay:.0f}/s)"
                await measure(name, worker, args, groups)
        print(f"with the call / without: {calling / plain:.2f}x   (goal: at least 1,000 msg/s with the call)")
    finally:
        api.terminate()
        api.wait(10)


if __name__ == "__main__":
    asyncio.run(main())

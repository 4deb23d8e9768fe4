"""HTTP-level benchmark: Telegram webhooks in, replies out through aiogram to a local fake Bot API.

The gateway runs as `serve` + 2 `worker` + `mailer` processes on RabbitMQ and Redis; the baseline is
bench/naive_bot.py (one process, state in a dict, replies sent inline, nothing durable). Both face the same
load generator in this process, which also plays Telegram's Bot API:

* closed loop: U users chat at once, each sending its next message when the bot's reply has arrived;
* open loop: messages offered at a fixed rate, latency from webhook to reply at the Bot API, after a
  pause that lets the machine settle from the closed loop.

Beside the gateway's open loop it measures the floor its latency stands on, in the same run: one
persistent, confirmed publish at the same rate to a durable queue with a consumer (how long until the
consumer has it, and until the confirm, which waits for the broker's fsync). A chat message crosses
RabbitMQ twice, so the gateway's p99 can be read against twice that floor's.

Only same-run ratios mean anything on a shared machine. ``--contend N`` keeps N busy-looping processes
running through every open loop, to see what the latency does on a day when the machine has less to give
(another tenant, steal time).

    .venv/bin/python bench/http_bench.py [--users 200] [--seconds 8] [--rate 250] [--contend 1]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import aiohttp
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    CpuMeter,
    delete_keys,
    free_port,
    percentile,
    pids_of,
    probe_queue,
    rabbit_vhost,
)
from tests.support.fakes import FakeTelegram, telegram_text_update, telegram_update_request  # noqa: E402

T = TypeVar("T")
SECRET = "bench-secret"
SETTLE = 2.0  # seconds of quiet between the closed and the open loop
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


class BotApi(FakeTelegram):
    """The fake Bot API, telling the load generator when each chat's reply arrives (calls not kept)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: dict[str, collections.deque[asyncio.Future[float]]] = collections.defaultdict(
            collections.deque
        )

    def expect(self, chat: int) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[str(chat)].append(future)
        return future

    async def record(
        self, method: str, params: dict[str, Any], request: web.Request, status: int, error: str | None = None
    ) -> None:
        if method == "sendMessage":
            queue = self.waiters.get(str(params.get("chat_id")))
            if queue:
                queue.popleft().set_result(time.perf_counter())


async def offered_at(rate: float, count: int, start: Callable[[int], Coroutine[Any, Any, T]]) -> list[T]:
    """Start ``count`` calls at ``rate`` per second, whether or not earlier ones have finished (an open
    loop, as users of a real bot arrive); their results in order."""
    tasks, started = [], time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(start(i)))
    return list(await asyncio.gather(*tasks))


class Load:
    def __init__(self, api: BotApi, address: str, http: aiohttp.ClientSession) -> None:
        self.api, self.address, self.http = api, address, http
        self.update_id = int(time.time() * 1000) % 1_000_000_000  # fresh ids for each run

    async def message(self, chat: int, text: str) -> float:
        """Post one update and wait for its reply; the latency in seconds."""
        self.update_id += 1
        request = telegram_update_request(telegram_text_update(self.update_id, chat, text), SECRET)
        replied = self.api.expect(chat)
        started = time.perf_counter()
        url = self.address + request.path
        async with self.http.post(url, data=request.body, headers=request.headers) as response:
            if response.status != 200:
                raise RuntimeError(f"webhook answered {response.status}: {await response.text()}")
        return await asyncio.wait_for(replied, 30) - started

    async def closed_loop(self, users: int, seconds: float) -> tuple[int, float, list[float]]:
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds
        base = 10_000_000 + self.update_id % 1000 * 1000

        async def user(n: int) -> None:
            while time.perf_counter() < deadline:
                latencies.append(await self.message(base + n, f"hello {len(latencies)}"))

        started = time.perf_counter()
        await asyncio.gather(*(user(n) for n in range(users)))
        return len(latencies), time.perf_counter() - started, latencies

    async def open_loop(self, users: int, rate: float, seconds: float) -> tuple[int, float, list[float]]:
        base = 20_000_000 + self.update_id % 1000 * 1000
        started = time.perf_counter()
        latencies = await offered_at(
            rate, int(rate * seconds), lambda i: self.message(base + i % users, f"paced {i}")
        )
        return len(latencies), time.perf_counter() - started, latencies


def report(name: str, result: tuple[int, float, list[float]]) -> float:
    count, seconds, latencies = result
    rate = count / seconds
    print(
        f"{name:<44} {rate:7.0f} msg/s   p50 {percentile(latencies, 0.5):7.2f} ms"
        f"   p99 {percentile(latencies, 0.99):7.2f} ms   ({count} in {seconds:.1f} s)",
        flush=True,
    )
    return rate


async def durable_hop(amqp_url: str, rate: float, seconds: float) -> None:
    """The RabbitMQ floor: persistent publishes with confirms at ``rate``, consumed and acknowledged."""
    sent: dict[str, float] = {}
    delivered: list[float] = []
    confirmed: list[float] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        delivered.append(time.perf_counter() - sent[message.message_id or ""])
        await message.ack()

    async with probe_queue(amqp_url, on_message) as (publisher, queue):

        async def publish(number: int) -> None:
            began = sent[str(number)] = time.perf_counter()
            message = aio_pika.Message(b"x" * 300, message_id=str(number), delivery_mode=2)
            await publisher.default_exchange.publish(message, routing_key=queue.name)
            confirmed.append(time.perf_counter() - began)

        await offered_at(rate, int(rate * seconds), publish)
    name = f"RabbitMQ floor: one durable hop at {rate:.0f} msg/s"
    figures = [
        f"{what} p50 {percentile(values, 0.5):6.2f} ms p99 {percentile(values, 0.99):6.2f} ms"
        for what, values in (("delivered", delivered), ("confirmed", confirmed))
    ]
    print(f"{name:<44}   " + "   ".join(figures), flush=True)


@contextlib.contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """``count`` processes spinning on a core each, for as long as the block runs."""
    spin = "while True: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


async def wait_ready(url: str, timeout: float = 60.0) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
        while True:
            try:
                async with http.get(url) as response:
                    if response.status in (200, 405):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)  # a starting process offers no event to wait on


async def measure(
    api: BotApi,
    address: str,
    args: argparse.Namespace,
    name: str,
    processes: dict[str, list[int]],
    amqp_url: str | None = None,
) -> float:
    connector = aiohttp.TCPConnector(limit=args.users + 50)
    async with aiohttp.ClientSession(connector=connector) as http:
        load = Load(api, address, http)
        await load.closed_loop(min(args.users, 50), 1.0)  # warm up
        groups = {"load generator + fake API": [os.getpid()], **processes}
        with CpuMeter(groups) as cpu:
            chatting = await load.closed_loop(args.users, args.seconds)
        rate = report(f"{name}: {args.users} users chatting", chatting)
        print(cpu.line(), flush=True)
        await asyncio.sleep(SETTLE)  # what the closed loop left behind (GC, the broker's disk) settles
        with busy_cores(args.contend):
            if amqp_url is not None:
                await durable_hop(amqp_url, args.rate, args.seconds)
            with CpuMeter(groups) as cpu:
                offered = await load.open_loop(args.users, args.rate, args.seconds)
        contended = f", {args.contend} core(s) busy" if args.contend else ""
        report(f"{name}: offered {args.rate:.0f} msg/s{contended}", offered)
        print(cpu.line(), flush=True)
    return rate


async def baseline(api: BotApi, stories: Path, args: argparse.Namespace, script: str, name: str) -> float:
    port = free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - starting a child returns at once
        [sys.executable, str(ROOT / "bench" / script), str(port), str(stories), api.url, api.token, SECRET]
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}/webhooks/telegram")
        return await measure(api, f"http://127.0.0.1:{port}", args, name, {"bot": [process.pid]})
    finally:
        process.terminate()
        process.wait(10)


async def gateway(api: BotApi, stories: Path, args: argparse.Namespace, vhost: str) -> float:
    port, prefix = free_port(), f"hb{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "GATEWAY_AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "GATEWAY_REDIS_URL": args.redis,
        "GATEWAY_QUEUE_PREFIX": prefix,
        "GATEWAY_REDIS_PREFIX": prefix,
        "GATEWAY_STORIES": str(stories),
        "GATEWAY_PORT": str(port),
        "GATEWAY_LOG_LEVEL": "warning",
        "GATEWAY_RATE_LIMITS": "false",  # the fake API has no limits; the naive bot keeps none either
        "TELEGRAM_BOT_TOKEN": api.token,
        "TELEGRAM_API_URL": api.url,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "GATEWAY_OUTBOX": str(stories.parent / "outbox"),
    }
    roles = ["serve", "worker", "worker", "mailer"]
    processes = [
        subprocess.Popen(  # noqa: ASYNC220 - starting a child returns at once
            [sys.executable, "-m", "gateway.app.cli", role], env=env, cwd=ROOT, stdin=subprocess.DEVNULL
        )
        for role in roles
    ]
    try:
        await wait_ready(f"http://127.0.0.1:{port}/readyz")
        pids = [process.pid for process in processes]
        groups = {
            "serve": pids[:1],
            "workers": pids[1:3],
            "mailer": pids[3:],
            "rabbitmq": pids_of("beam.smp"),
            "redis": pids_of("redis-server"),
        }
        name = "gateway (serve + 2 workers + mailer)"
        return await measure(api, f"http://127.0.0.1:{port}", args, name, groups, env["GATEWAY_AMQP_URL"])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)
        await delete_keys(args.redis, f"{prefix}:*")


async def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--contend", type=int, default=0, help="busy-looping processes during open loops")
    args = parser.parse_args()
    stories = Path(tempfile.mkdtemp(prefix="http-bench-")) / "stories"
    stories.mkdir()
    (stories / "echo.yml").write_text(STORY)
    try:
        with rabbit_vhost() as (vhost, _):
            async with BotApi() as api:
                lean = await baseline(api, stories, args, "naive_bot.py", "naive bot, hand-written")
                idiomatic = await baseline(api, stories, args, "aiogram_bot.py", "naive bot, aiogram")
                ours = await gateway(api, stories, args, vhost)
        print(f"throughput ratio gateway / hand-written naive bot: {ours / lean:.2f}x")
        print(f"throughput ratio gateway / aiogram naive bot: {ours / idiomatic:.2f}x")
        print("(goal: at least 0.8x the naive bot)")
    finally:
        shutil.rmtree(stories.parent, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

"""HTTP-level benchmark: Telegram webhooks in, replies out through aiogram to a local fake Bot API.

The gateway runs as `serve` + 2 `worker` + `mailer` processes on RabbitMQ and Redis (rate limits off: the
fake API has none); the baselines are two one-process bots (state in a dict, replies sent inline, nothing
durable): bench/naive_bot.py, hand-written, and bench/aiogram_bot.py, as aiogram's documentation teaches;
and a third, the same aiogram bot with its state in Redis (aiogram's RedisStorage; nothing else durable).
All face the same load generator in this process, which also plays Telegram's Bot API.

Two conversations (bench/conversations.py), each a row of its own: ``realistic`` (a greeting asking for a
name, the name stored as a user attribute, a city pressed on a button, a problem filed as a ticket email:
2, 2, 3 and 1 replies) and ``echo`` (one reply per message). For each, and each bot:

* closed loop: U users chat at once, each sending its next message when the bot's last reply to the
  previous one has arrived (every reply is checked: count, and the text of the last);
* open loop: messages offered at a fraction (``--load``, 0.4) of the hand-written bot's closed-loop rate
  measured just before, so the load follows the machine's speed of the day (``--rate`` fixes it instead);
  latency from the webhook posted to the turn's LAST reply at the Bot API, after a pause that lets the
  machine settle from the closed loop.

For the gateway's open loop it prints where each turn's time went, stage by stage (bench/stages.py, from
the marks every gateway process keeps with GATEWAY_TIMELINE), and the RabbitMQ floor of the same moment:
one persistent, confirmed publish at the same rate to a durable queue with a consumer.

Only same-run ratios mean anything on a shared machine. ``--contend N`` keeps N busy-looping processes
running through every open loop, to see what the latency does on a day when the machine has less to give.

    .venv/bin/python bench/http_bench.py [--scenario realistic|echo|both] [--users 200] [--seconds 8]
                                         [--load 0.4 | --rate 120] [--contend 1]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

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
from bench.conversations import SCENARIOS, Scenario, Step  # noqa: E402
from bench.stages import TurnRecord, breakdown, by_step, delivery_phase, read_marks  # noqa: E402
from tests.support.clusters import RabbitCluster, RedisCluster  # noqa: E402
from tests.support.fakes import (  # noqa: E402
    FakeTelegram,
    telegram_callback_update,
    telegram_text_update,
    telegram_update_request,
)

T = TypeVar("T")
# Every process of a bot runs in a session of its own: a kernel with autogroup scheduling
# (sched_autogroup_enabled, on here) shares the CPU between sessions, not processes, and with every process
# in the load generator's session, on a busy machine the gateway's four processes and the generator split
# one share (the gateway then queued for seconds at 40 % load while the rest of the machine took 1.3
# cores). A session each is how each process of a deployment runs (a container, a cgroup of its own); the
# hand-written bot is one process, so one session. On a quiet machine it changes nothing; on a busy one,
# the CPU the rest of the machine took is printed beside each phase.
SECRET = "bench-secret"
SETTLE = 2.0  # seconds of quiet between the closed and the open loop
# Goals of the realistic conversation (issue 18), same run, open loop at 40 % of the hand-written bot.
P99_GOAL_MS = 30.0
P50_GOAL_RATIO = 2.0  # the gateway's p50 at most this many times the hand-written bot's
THROUGHPUT_GOAL = 1.0  # the gateway's closed-loop rate at least this many times the hand-written bot's


@dataclass(slots=True)
class _Awaited:
    """The replies one message waits for, in the order the Bot API receives them."""

    count: int
    arrivals: list[int]
    texts: list[str]
    done: asyncio.Future[None]


class BotApi(FakeTelegram):
    """The fake Bot API, telling the load generator when each message's replies arrive (calls not kept),
    and keeping each chat's last keyboard so that a user can press one of its buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.awaited: dict[str, collections.deque[_Awaited]] = collections.defaultdict(collections.deque)
        self.keyboards: dict[str, dict[str, str]] = {}  # chat -> button title -> callback_data
        self.unexpected = 0  # replies that came when none was awaited: a repeat, or one too many

    def expect(self, chat: int, count: int) -> _Awaited:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        awaited = _Awaited(count, [], [], done)
        self.awaited[str(chat)].append(awaited)
        return awaited

    async def record(
        self, method: str, params: dict[str, Any], request: web.Request, status: int, error: str | None = None
    ) -> None:
        if method != "sendMessage":
            return
        now = time.perf_counter_ns()
        chat = str(params.get("chat_id"))
        markup = params.get("reply_markup")
        if isinstance(markup, dict):
            rows = markup.get("inline_keyboard", [])
            self.keyboards[chat] = {b["text"]: b["callback_data"] for row in rows for b in row}
        queue = self.awaited.get(chat)
        if not queue:
            self.unexpected += 1
            return
        awaited = queue[0]
        awaited.arrivals.append(now)
        awaited.texts.append(str(params.get("text", "")))
        if len(awaited.arrivals) == awaited.count:
            queue.popleft()
            awaited.done.set_result(None)


async def offered_at(rate: float, count: int, start: Callable[[int], Coroutine[Any, Any, T]]) -> list[T]:
    """Start ``count`` calls at ``rate`` per second, whether or not earlier ones have finished (an open
    loop, as users of a real bot arrive); their results in order."""
    tasks, started = [], time.perf_counter()
    for i in range(count):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(start(i)))
    return list(await asyncio.gather(*tasks))


@dataclass(slots=True)
class Loop:
    """One loop's outcome: the turns and how long the loop ran."""

    turns: list[TurnRecord]
    seconds: float
    late: int = 0  # open loop: messages that waited for the same user's previous one

    @property
    def rate(self) -> float:
        return len(self.turns) / self.seconds

    def percentile(self, q: float) -> float:
        return percentile([turn.latency for turn in self.turns], q)


class Load:
    def __init__(self, api: BotApi, address: str, http: aiohttp.ClientSession, scenario: Scenario) -> None:
        self.api, self.address, self.http, self.scenario = api, address, http, scenario
        self.update_id = int(time.time() * 1000) % 1_000_000_000  # fresh ids for each run
        self._chats = itertools.count(1_000_000 + self.update_id % 100_000 * 10_000)
        self.wrong: list[str] = []  # steps whose replies were not what the story says

    def new_chat(self) -> int:
        return next(self._chats)

    async def turn(self, chat: int, step: Step) -> TurnRecord:
        """Post one update and wait for all its replies."""
        self.update_id += 1
        if step.button:
            data = self.api.keyboards[str(chat)][step.say]
            update = telegram_callback_update(self.update_id, chat, data, title=step.say)
        else:
            update = telegram_text_update(self.update_id, chat, step.say)
        request = telegram_update_request(update, SECRET)
        awaited = self.api.expect(chat, step.replies)
        record = TurnRecord(self.update_id, step, time.perf_counter_ns())
        url = self.address + request.path
        async with self.http.post(url, data=request.body, headers=request.headers) as response:
            if response.status != 200:
                raise RuntimeError(f"webhook answered {response.status}: {await response.text()}")
        record.answered = time.perf_counter_ns()
        await asyncio.wait_for(awaited.done, 30)
        record.replies = awaited.arrivals
        if not awaited.texts[-1].startswith(step.last):
            self.wrong.append(f"{step.label}: last reply {awaited.texts[-1]!r}, expected {step.last!r}...")
        return record

    def _step(self, k: int) -> Step:
        return self.scenario.steps[k % len(self.scenario.steps)]

    def _next_chat(self, chat: int | None, k: int) -> int:
        """The chat of message ``k`` of a user: a new one at each conversation's start if users change."""
        starts = k % len(self.scenario.steps) == 0 and (self.scenario.new_user_each_time or k == 0)
        return self.new_chat() if chat is None or starts else chat

    async def closed_loop(self, users: int, seconds: float) -> Loop:
        turns: list[TurnRecord] = []
        deadline = time.perf_counter() + seconds

        async def user() -> None:
            chat: int | None = None
            for k in itertools.count():
                if time.perf_counter() >= deadline:
                    return
                chat = self._next_chat(chat, k)
                turns.append(await self.turn(chat, self._step(k)))

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(users)))
        return Loop(turns, time.perf_counter() - started)

    async def prepare_open_loop(self, users: int) -> dict[int, int]:
        """Bring user ``slot`` to step ``slot % steps`` of a conversation (not measured), so that the open
        loop offers every step equally often however few messages it sends; each user's chat."""
        chats: dict[int, int] = {}

        async def prelude(slot: int) -> None:
            chat = chats[slot] = self.new_chat()
            for k in range(slot % len(self.scenario.steps)):
                await self.turn(chat, self._step(k))

        await asyncio.gather(*(prelude(slot) for slot in range(users)))
        return chats

    async def open_loop(self, chats: dict[int, int], rate: float, seconds: float) -> Loop:
        """Message ``i`` comes from user ``i % users``, at its place in that user's conversation. A user's
        messages come seconds apart; one that would come before the user had all the replies to the previous
        waits for them (counted as late: the bot is falling behind)."""
        users, steps = len(chats), len(self.scenario.steps)
        turns_of: dict[int, asyncio.Lock] = collections.defaultdict(asyncio.Lock)  # FIFO per user
        late = 0

        async def message(i: int) -> TurnRecord:
            nonlocal late
            slot = i % users
            k = i // users + slot % steps  # the user's place in its conversations
            asked = time.perf_counter()
            async with turns_of[slot]:
                if time.perf_counter() - asked > 0.001:
                    late += 1
                if i >= users and k % steps == 0 and self.scenario.new_user_each_time:
                    chats[slot] = self.new_chat()
                return await self.turn(chats[slot], self._step(k))

        started = time.perf_counter()
        turns = await offered_at(rate, int(rate * seconds), message)
        return Loop(turns, time.perf_counter() - started, late)


def report(name: str, loop: Loop) -> None:
    late = f", {loop.late} late" if loop.late else ""
    print(
        f"{name:<52} {loop.rate:7.0f} msg/s   p50 {loop.percentile(0.5):7.2f} ms"
        f"   p99 {loop.percentile(0.99):7.2f} ms   ({len(loop.turns)} in {loop.seconds:.1f} s{late})",
        flush=True,
    )


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
    print(f"{name:<52}   " + "   ".join(figures), flush=True)


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


class Processes:
    """Processes started each in a session of its own (see the note at the top), their pids in order."""

    def __init__(self, commands: list[list[str]], cwd: Path, env: dict[str, str]) -> None:
        self.children = [
            subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
            for command in commands
        ]
        self.pids = [child.pid for child in self.children]

    def stop(self) -> None:
        """SIGTERM each (a gateway drains and exits 0), then wait for them all; SIGKILL what lingers."""
        for child in self.children:
            child.terminate()
        for child in self.children:
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)


@dataclass(slots=True)
class Measured:
    closed: Loop
    paced: Loop


class Bench:
    """One scenario's run: its stories folder, the fake Bot API, and the load offered to each bot."""

    def __init__(self, api: BotApi, scenario: Scenario, folder: Path, args: argparse.Namespace) -> None:
        self.api, self.scenario, self.folder, self.args = api, scenario, folder, args
        self.stories = folder / "stories"
        self.stories.mkdir(parents=True)
        (self.stories / f"{scenario.name}.yml").write_text(scenario.story)
        self.rate: float | None = args.rate  # the open loop's rate; None until the first bot's capacity

    async def measure(
        self, address: str, name: str, processes: dict[str, list[int]], amqp_url: str | None = None
    ) -> Measured:
        args = self.args
        connector = aiohttp.TCPConnector(limit=args.users + 50)
        async with aiohttp.ClientSession(connector=connector) as http:
            load = Load(self.api, address, http, self.scenario)
            await load.closed_loop(min(args.users, 50), 1.0)  # warm up
            groups = {"load generator + fake API": [os.getpid()], **processes}
            with CpuMeter(groups) as cpu:
                closed = await load.closed_loop(args.users, args.seconds)
            report(f"{name}: {args.users} users chatting", closed)
            print(cpu.line(), flush=True)
            if self.rate is None:
                self.rate = args.load * closed.rate
            chats = await load.prepare_open_loop(args.users)
            await asyncio.sleep(SETTLE)  # what the closed loop left behind (GC, the broker's disk) settles
            with busy_cores(args.contend):
                if amqp_url is not None:
                    await durable_hop(amqp_url, self.rate, args.seconds)
                with CpuMeter(groups) as cpu:
                    paced = await load.open_loop(chats, self.rate, args.seconds)
            contended = f", {args.contend} core(s) busy" if args.contend else ""
            report(f"{name}: offered {self.rate:.0f} msg/s{contended}", paced)
            print(cpu.line(), flush=True)
            if load.wrong:
                raise RuntimeError(f"{len(load.wrong)} wrong answers, the first: {load.wrong[0]}")
        return Measured(closed, paced)

    async def baseline(self, script: str, name: str, *, redis: bool = False) -> Measured:
        """A one-process bot; with ``redis``, its state in the run's Redis database (under a prefix of its
        own, removed after)."""
        port, outbox = free_port(), self.folder / f"outbox-{script}-{'redis' if redis else 'dict'}"
        command = [sys.executable, str(ROOT / "bench" / script), str(port), str(self.stories)]
        command += [self.api.url, self.api.token, SECRET, str(outbox)]
        prefix = f"hb{uuid.uuid4().hex[:6]}"
        if redis:
            command += [self.args.redis, prefix]
        groups: dict[str, list[int]] = {}
        bot = Processes([command], ROOT, dict(os.environ))
        try:
            await wait_ready(f"http://127.0.0.1:{port}/webhooks/telegram")
            groups["bot"] = bot.pids
            if redis:
                groups["redis"] = pids_of("redis-server", f":{urlsplit(self.args.redis).port or 6379}")
            return await self.measure(f"http://127.0.0.1:{port}", name, groups)
        finally:
            bot.stop()
            if redis:
                await delete_keys(self.args.redis, f"{prefix}:*")

    async def gateway(
        self, vhost: str, source: Path = ROOT, clusters: tuple[RabbitCluster, RedisCluster] | None = None
    ) -> Measured:
        """The gateway's processes, running the code of ``source`` (this checkout, or another for a
        before/after comparison in the same run), on the machine's RabbitMQ and Redis or on ``clusters``."""
        args = self.args
        port, prefix = free_port(), f"hb{uuid.uuid4().hex[:6]}"
        marks = self.folder / f"timeline-{prefix}"
        services = {
            "GATEWAY_AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
            "GATEWAY_REDIS_URL": args.redis,
        }
        if clusters is not None:
            rabbit, redis = clusters
            services = {
                "GATEWAY_AMQP_URL": rabbit.amqp_url,
                "GATEWAY_QUEUE_TYPE": "quorum",
                "GATEWAY_REDIS_URL": redis.url,
                "GATEWAY_REDIS_CLUSTER": "true",
            }
        env = {
            **os.environ,
            **services,
            "GATEWAY_QUEUE_PREFIX": prefix,
            "GATEWAY_REDIS_PREFIX": prefix,
            "GATEWAY_STORIES": str(self.stories),
            "GATEWAY_PORT": str(port),
            "GATEWAY_LOG_LEVEL": "warning",
            "GATEWAY_RATE_LIMITS": "false",  # the fake API has no limits; the naive bots keep none either
            "TELEGRAM_BOT_TOKEN": self.api.token,
            "TELEGRAM_API_URL": self.api.url,
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "GATEWAY_OUTBOX": str(self.folder / "outbox-gateway"),
            "GATEWAY_TIMELINE": str(marks),
            "PYTHONPATH": str(source),
        }
        roles = ["serve", "worker", "worker", "mailer"]
        processes = Processes(
            [[sys.executable, "-m", "gateway.app.cli", role] for role in roles], source, env
        )
        try:
            await wait_ready(f"http://127.0.0.1:{port}/readyz")
            pids = processes.pids
            groups = {
                "serve": pids[:1],
                "workers": pids[1:3],
                "mailer": pids[3:],
                "rabbitmq": pids_of("beam.smp", "/var/lib/rabbitmq"),  # not the test clusters' nodes
                "redis": pids_of("redis-server", f":{urlsplit(args.redis).port or 6379}"),
            }
            name = "gateway (serve + 2 workers + mailer)" if source == ROOT else f"gateway of {source}"
            if clusters is not None:
                rabbit, redis = clusters
                groups["rabbitmq"] = pids_of("beam.smp", str(rabbit.base_dir))
                groups["redis"] = [pid for port in redis.ports for pid in pids_of("redis-server", f":{port}")]
                name = "gateway on the clusters (3 RabbitMQ nodes, quorum; 6-node Redis Cluster)"
            floor_url = env["GATEWAY_AMQP_URL"].split(",")[0]
            measured = await self.measure(f"http://127.0.0.1:{port}", name, groups, floor_url)
        finally:
            processes.stop()
            if clusters is None:
                await delete_keys(args.redis, f"{prefix}:*")
        print(f"  where the paced turns of {name} spend their time ({self.scenario.name}):")
        timeline = read_marks(marks)
        print("\n".join(breakdown(measured.paced.turns, timeline)))
        print("    the replies' delivery, by number of replies:")
        print("\n".join(delivery_phase(measured.paced.turns, timeline)))
        print("    last reply, by step of the conversation:")
        print("\n".join(by_step(measured.paced.turns)))
        return measured


def verdict(
    scenario: Scenario, lean: Measured, idiomatic: Measured, stored: Measured, ours: Measured, name: str
) -> None:
    throughput = ours.closed.rate / lean.closed.rate
    p50, p99 = ours.paced.percentile(0.5), ours.paced.percentile(0.99)
    lean_p50 = lean.paced.percentile(0.5)
    stored_p50 = stored.paced.percentile(0.5)
    print(f"== {name}")
    print(
        f"== {scenario.name}: throughput gateway / hand-written bot {throughput:.2f}x, "
        f"/ aiogram bot {ours.closed.rate / idiomatic.closed.rate:.2f}x, "
        f"/ aiogram bot on RedisStorage {ours.closed.rate / stored.closed.rate:.2f}x"
    )
    print(
        f"== {scenario.name}: paced p50 gateway {p50:.2f} ms = {p50 / lean_p50:.2f}x the hand-written "
        f"bot's {lean_p50:.2f} ms (aiogram bot {idiomatic.paced.percentile(0.5):.2f}, on RedisStorage "
        f"{stored_p50:.2f}: gateway {p50 / stored_p50:.2f}x); p99 {p99:.2f} ms (hand-written "
        f"{lean.paced.percentile(0.99):.2f}, aiogram {idiomatic.paced.percentile(0.99):.2f}, on "
        f"RedisStorage {stored.paced.percentile(0.99):.2f})"
    )
    if scenario.name != "realistic":
        return
    missed = []
    if p99 > P99_GOAL_MS:
        missed.append(f"p99 {p99:.1f} > {P99_GOAL_MS:.0f} ms")
    if p50 > P50_GOAL_RATIO * lean_p50:
        missed.append(f"p50 {p50 / lean_p50:.2f}x > {P50_GOAL_RATIO:.0f}x the hand-written bot's")
    if throughput < THROUGHPUT_GOAL:
        missed.append(f"throughput {throughput:.2f}x < {THROUGHPUT_GOAL:.1f}x")
    print(f"== realistic goals: {'ALL MET' if not missed else 'MISSED: ' + '; '.join(missed)}", flush=True)


async def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "both"], default="both")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--load", type=float, default=0.4, help="open loop: fraction of the naive bot's rate")
    parser.add_argument("--rate", type=float, default=None, help="open loop: this rate instead (msg/s)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--contend", type=int, default=0, help="busy-looping processes during open loops")
    parser.add_argument(
        "--clusters",
        action="store_true",
        help="also measure the gateway on a 3-node RabbitMQ cluster (quorum) and a 6-node Redis Cluster",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        help="also measure the gateway of this checkout (e.g. a `git archive` of main), before this one's",
    )
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "both" else [args.scenario]
    folder = Path(tempfile.mkdtemp(prefix="http-bench-"))
    print(f"load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    clusters: tuple[RabbitCluster, RedisCluster] | None = None
    if args.clusters:
        print("starting the clusters (bin/clusters' own: private ports and folders)", flush=True)
        clusters = (RabbitCluster(folder / "rabbit").start(), RedisCluster(folder / "redis").start())
    try:
        with rabbit_vhost() as (vhost, _):
            async with BotApi() as api:
                for name in names:
                    scenario = SCENARIOS[name]
                    print(
                        f"-- {name}: {len(scenario.steps)} step(s), "
                        f"{scenario.replies_per_message:.1f} replies per message",
                        flush=True,
                    )
                    bench = Bench(api, scenario, folder / name, args)
                    lean = await bench.baseline("naive_bot.py", "naive bot, hand-written")
                    idiomatic = await bench.baseline("aiogram_bot.py", "naive bot, aiogram")
                    stored = await bench.baseline("aiogram_bot.py", "aiogram bot on RedisStorage", redis=True)
                    others = [(await bench.gateway(vhost, other.resolve()), other) for other in args.compare]
                    ours = await bench.gateway(vhost)
                    clustered = await bench.gateway(vhost, clusters=clusters) if clusters else None
                    for measured, other in others:
                        verdict(scenario, lean, idiomatic, stored, measured, f"gateway of {other}")
                    verdict(scenario, lean, idiomatic, stored, ours, "gateway of this checkout")
                    if clustered is not None:
                        verdict(scenario, lean, idiomatic, stored, clustered, "gateway on the clusters")
                        print(
                            f"== {name}: clusters / one node: throughput "
                            f"{clustered.closed.rate / ours.closed.rate:.2f}x, paced p50 "
                            f"{clustered.paced.percentile(0.5) / ours.paced.percentile(0.5):.2f}x, p99 "
                            f"{clustered.paced.percentile(0.99) / ours.paced.percentile(0.99):.2f}x",
                            flush=True,
                        )
                if api.unexpected:
                    raise RuntimeError(f"{api.unexpected} replies came that no message was waiting for")
    finally:
        print(f"load average {os.getloadavg()[0]:.2f} at the end", flush=True)
        if clusters is not None:
            for cluster in clusters:
                cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())

"""Webhook ingress benchmark: verified requests/s a `gateway serve` process accepts into RabbitMQ.

A load generator in this process posts VERIFIED webhooks over keep-alive HTTP/1.1 connections on
localhost: Telegram updates with the secret-token header, and Slack Events API requests signed with the
signing secret. Every request is a new update / event (fresh ids), so each 200 means one message published
to RabbitMQ with a publisher confirm. No worker runs: the bench measures ingress alone.

Per channel:
* saturation: ``--connections`` connections, each posting its next request as soon as the last is
  answered (closed loop), for ``--seconds``; requests/s = answers 200 / elapsed;
* paced: requests offered at half that rate on schedule (open loop, latency measured from the scheduled
  send time, so a stall is not hidden), p50 / p99.
It also prints how busy each process was (CPU % of one core, from /proc/<pid>/stat): serve, RabbitMQ,
Redis and this load generator. When the goal (>= 3,000 requests/s, p99 < 20 ms at half that rate) is
missed, or with ``--profile always``, serve is sampled with py-spy during a further saturation run and the
functions and packages its time goes to are printed.

The requests are built and signed before each phase, so signing costs the generator nothing while it is
timed. A fresh RabbitMQ vhost and Redis key prefix are used and removed afterwards. This machine has two
cores shared by serve, RabbitMQ and the generator: figures drift by tens of % between days.

    .venv/bin/python bench/ingress_bench.py [--seconds 5] [--connections 64] [--profile auto|always|never]
        [--also-paced RATE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import delete_keys, free_port, rabbit_vhost  # noqa: E402
from tests.support.fakes import (  # noqa: E402
    FakeSlack,
    FakeTelegram,
    SignedRequest,
    slack_event_request,
    slack_message_event,
    telegram_text_update,
    telegram_update_request,
)

TELEGRAM_SECRET = "bench-secret"
SLACK_SECRET = "bench-slack-signing-secret"
GOAL_RATE = 3000.0
GOAL_P99_MS = 20.0
STORY = """\
bot:
  fallback: echo
stories:
  echo:
    steps:
      - id: say
        actions:
          - message: "You said {{@message}}"
"""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# Requests


class Requests:
    """Fresh, verified webhook requests for one channel, as raw HTTP/1.1 bytes, built ahead of time."""

    def __init__(self, name: str, make: Callable[[int], SignedRequest], host: str) -> None:
        self.name = name
        self.make = make
        self.host = host
        self.count = 0
        self.ready: collections.deque[bytes] = collections.deque()

    def encode(self, request: SignedRequest) -> bytes:
        head = [f"POST {request.path} HTTP/1.1", f"Host: {self.host}"]
        head += [f"{name}: {value}" for name, value in request.headers.items()]
        head.append(f"Content-Length: {len(request.body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + request.body

    def prepare(self, n: int) -> None:
        for _ in range(n):
            self.count += 1
            self.ready.append(self.encode(self.make(self.count)))

    def take(self) -> bytes:
        if not self.ready:  # ran past what was prepared: build on the fly (costs the generator)
            self.prepare(1)
        return self.ready.popleft()


def telegram_requests(host: str, chats: int) -> Requests:
    run = int(time.time()) % 100_000 * 10_000_000  # update ids unique to this run

    def make(n: int) -> SignedRequest:
        update = telegram_text_update(run + n, 1_000_000 + n % chats, f"hello {n}")
        return telegram_update_request(update, TELEGRAM_SECRET)

    return Requests("telegram", make, host)


def slack_requests(host: str, chats: int) -> Requests:
    run = uuid.uuid4().hex[:8]

    def make(n: int) -> SignedRequest:
        event = slack_message_event(f"Ev{run}{n:09d}", f"D{n % chats:08d}", f"U{n % chats:08d}", f"hello {n}")
        return slack_event_request(event, SLACK_SECRET)

    return Requests("slack", make, host)


# A lean HTTP/1.1 client: one request in flight per connection, keep-alive, nothing parsed but the status


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None:
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            waiter.set_exception(RuntimeError(f"no Content-Length in {head!r}"))
            self.waiter = None
            return
        line_end = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : line_end if line_end >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        del self.buffer[:total]
        self.waiter = None
        waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc!r}"))
        self.waiter = None

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(port: int, n: int) -> list[Connection]:
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(n):
        _, protocol = await loop.create_connection(Connection, "127.0.0.1", port)
        connections.append(protocol)
    return connections


# Process CPU from /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pid_of(command: str) -> int | None:
    """The first process whose name is ``command`` (RabbitMQ's beam.smp, redis-server), if any."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() == command:
                        return int(entry)
            except OSError:
                continue
    return None


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle (the first line of /proc/stat, idle and iowait excluded)."""
    with open("/proc/stat") as stat:
        fields = [int(f) for f in stat.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLOCK_TICKS


class CpuMeter:
    """CPU % (of one core) of a few processes between start() and stop(), and of everything else: the
    machine is shared, and another process's load shows up here rather than as a slow gateway."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.before: dict[str, float] = {}
        self.started = 0.0
        self.usage: dict[str, float] = {}

    def start(self) -> None:
        self.started = time.perf_counter()
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.before["(machine)"] = machine_busy_seconds()

    def stop(self) -> dict[str, float]:
        elapsed = time.perf_counter() - self.started
        self.usage = {
            name: 100 * (cpu_seconds(pid) - self.before[name]) / elapsed for name, pid in self.pids.items()
        }
        machine = 100 * (machine_busy_seconds() - self.before["(machine)"]) / elapsed
        self.usage["others"] = max(0.0, machine - sum(self.usage.values()))
        self.usage[f"(all of {os.cpu_count()} cores)"] = machine
        return self.usage

    def line(self) -> str:
        return "cpu (% of one core): " + "  ".join(f"{name} {pct:.0f}" for name, pct in self.usage.items())


# Phases


@dataclass
class Result:
    ok: int
    other: collections.Counter[int]
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    def line(self, name: str) -> str:
        failed = f"   non-200: {dict(self.other)}" if self.other else ""
        return (
            f"{name:<40} {self.rate:7.0f} req/s   p50 {self.percentile(0.5):6.2f} ms"
            f"   p99 {self.percentile(0.99):6.2f} ms   max {self.percentile(1.0):6.1f} ms"
            f"   ({self.ok} in {self.seconds:.1f} s){failed}"
        )


async def saturate(requests: Requests, port: int, connections: int, seconds: float) -> Result:
    """Closed loop: every connection posts its next request as soon as the last one is answered."""
    pool = await connect(port, connections)
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    deadline = time.perf_counter() + seconds

    async def loop(connection: Connection) -> None:
        clock = time.perf_counter
        while clock() < deadline:
            data = requests.take()
            sent = clock()
            statuses[await connection.request(data)] += 1
            latencies.append(clock() - sent)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(loop(c) for c in pool))
    finally:
        for connection in pool:
            connection.close()
    seconds = time.perf_counter() - started
    ok = statuses.pop(200, 0)
    return Result(ok, statuses, seconds, latencies)


async def paced(requests: Requests, port: int, rate: float, seconds: float, connections: int) -> Result:
    """Open loop: request i leaves at start + i / rate whatever the answers do; latency from that time."""
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for connection in await connect(port, connections):
        idle.put_nowait(connection)
    count = int(rate * seconds)
    batch = [requests.take() for _ in range(count)]
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()

    async def one(data: bytes, due: float) -> None:
        connection = await idle.get()  # waiting for a free connection counts: latency is from `due`
        statuses[await connection.request(data)] += 1
        latencies.append(time.perf_counter() - due)
        idle.put_nowait(connection)

    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter() + 0.01
    for i, data in enumerate(batch):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(data, due)))
    await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    while not idle.empty():
        idle.get_nowait().close()
    ok = statuses.pop(200, 0)
    return Result(ok, statuses, seconds, latencies)


# Profile


def package_of(path: str) -> str:
    """Where a frame's code lives: a site-packages distribution, a project package, or the stdlib module."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if path.startswith(str(ROOT)) or not path.startswith("/"):  # py-spy shortens most paths
        relative = path.removeprefix(str(ROOT) + "/")
        return relative.split("/", 1)[0].removesuffix(".py")
    stdlib = path.split("/lib/python3", 1)
    if len(stdlib) == 2:
        module = stdlib[1].split("/", 1)[1] if "/" in stdlib[1] else stdlib[1]
        return "stdlib:" + module.split("/", 1)[0].removesuffix(".py")
    return path


def frames_of(line: str) -> tuple[list[str], int]:
    """A py-spy raw (collapsed) line: ``frame;frame;... count``; frames are ``function (file:line)``."""
    stack, _, count = line.rpartition(" ")
    return [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))], int(count)


def summarise_profile(raw: Path, top: int = 20) -> None:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    packages: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = frames_of(line)
        if not frames:
            continue
        total += count
        names = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in frames]  # without the line number
        self_time[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
        leaf = frames[-1]
        path = leaf[leaf.rfind("(") + 1 : leaf.rfind(":")] if "(" in leaf else leaf
        packages[package_of(path)] += count
    if not total:
        print("py-spy recorded no samples")
        return
    print(f"serve profile: {total} samples (active time only)")
    print("  self time by package:")
    for name, count in packages.most_common(12):
        print(f"    {100 * count / total:5.1f} %  {name}")
    print("  self time by function:")
    for name, count in self_time.most_common(top):
        print(f"    {100 * count / total:5.1f} %  {name}")
    print("  inclusive time by function:")
    for name, count in inclusive.most_common(top + 15):
        print(f"    {100 * count / total:5.1f} %  {name}")


async def profile(requests: Requests, port: int, serve_pid: int, args: argparse.Namespace) -> None:
    py_spy = ROOT / ".venv" / "bin" / "py-spy"
    if not py_spy.exists():
        print("py-spy is not installed in .venv: no profile")
        return
    raw = Path(tempfile.mkdtemp(prefix="ingress-profile-")) / f"serve-{requests.name}.raw"
    duration = 8
    requests.prepare(int(6000 * (duration + 2)))
    recorder = await asyncio.create_subprocess_exec(
        str(py_spy), "record", "-p", str(serve_pid), "-d", str(duration), "-f", "raw", "-o", str(raw),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(0.5)  # py-spy attaching offers no event to wait on
    result = await saturate(requests, port, args.connections, duration + 1)
    _, errors = await recorder.communicate()
    print(result.line(f"{requests.name}: saturation under py-spy"))
    if recorder.returncode != 0 or not raw.exists():
        print(f"py-spy failed ({recorder.returncode}): {errors.decode(errors='replace').strip()}")
        return
    print(f"(raw profile: {raw})")
    summarise_profile(raw)


# The serve process


async def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
        while process.poll() is None:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)  # a starting process offers no event to wait on
    raise RuntimeError(f"serve exited with {process.returncode} before it was ready")


class Serve:
    """A `gateway serve` process with Telegram and Slack on, on its own vhost and key prefix."""

    def __init__(
        self, args: argparse.Namespace, vhost: str, telegram: FakeTelegram, slack: FakeSlack
    ) -> None:
        self.port = free_port()
        self.prefix = f"ib{uuid.uuid4().hex[:8]}"
        self.redis_url = args.redis
        self.folder = Path(tempfile.mkdtemp(prefix="ingress-bench-"))
        (self.folder / "stories").mkdir()
        (self.folder / "stories" / "echo.yml").write_text(STORY)
        self.env = {
            **os.environ,
            "GATEWAY_AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
            "GATEWAY_REDIS_URL": args.redis,
            "GATEWAY_QUEUE_PREFIX": self.prefix,
            "GATEWAY_REDIS_PREFIX": self.prefix,
            "GATEWAY_PARTITIONS": str(args.partitions),
            "GATEWAY_STORIES": str(self.folder / "stories"),
            "GATEWAY_OUTBOX": str(self.folder / "outbox"),
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_LOG_LEVEL": "warning",
            "TELEGRAM_BOT_TOKEN": telegram.token,
            "TELEGRAM_API_URL": telegram.url,
            "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": SLACK_SECRET,
            "SLACK_API_URL": slack.url,
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log: BinaryIO | None = None

    def complaints(self) -> list[str]:
        """serve's warnings and errors so far (it logs at WARNING: anything there is worth a look)."""
        path = self.folder / "serve.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return [line for line in lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]

    async def start(self) -> int:
        self.log = (self.folder / "serve.log").open("wb")
        self.process = subprocess.Popen(  # noqa: ASYNC220 - starting a child returns at once
            [sys.executable, "-m", "gateway.app.cli", "serve"],
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        await wait_ready(f"http://127.0.0.1:{self.port}/readyz", self.process)
        return self.process.pid

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                await asyncio.to_thread(self.process.wait, 5)
        if self.log is not None:
            self.log.close()
        complaints = self.complaints()
        if complaints:
            print(f"serve logged {len(complaints)} warnings/errors, the first ones:")
            for line in complaints[:5]:
                print("    " + line[:300])
        await delete_keys(self.redis_url, f"{self.prefix}:*")
        shutil.rmtree(self.folder, ignore_errors=True)


async def published(port: int) -> dict[str, float]:
    """serve's own count of inbound messages it published, per channel."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("gateway_inbound_published_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels.split('channel="', 1)[1].split('"', 1)[0]] = float(value)
    return counts


async def bench_channel(requests: Requests, port: int, meter: CpuMeter, args: argparse.Namespace) -> bool:
    """Saturation, then paced at half that rate; True when both meet the goal."""
    requests.prepare(2000)
    await saturate(requests, port, args.connections, 1.0)  # warm up
    requests.prepare(int(args.expect * args.seconds))
    meter.start()
    full = await saturate(requests, port, args.connections, args.seconds)
    meter.stop()
    print(full.line(f"{requests.name}: {args.connections} connections, closed loop"), flush=True)
    print("    " + meter.line(), flush=True)
    half = full.rate / 2
    meter.start()
    calm = await paced(requests, port, half, args.seconds, args.connections)
    meter.stop()
    print(calm.line(f"{requests.name}: paced at {half:.0f} req/s"), flush=True)
    print("    " + meter.line(), flush=True)
    for rate in args.also_paced:  # fixed rates, to compare runs (or versions) whose saturation differs
        fixed = await paced(requests, port, rate, args.seconds, args.connections)
        print(fixed.line(f"{requests.name}: paced at {rate:.0f} req/s (--also-paced)"), flush=True)
    met = full.rate >= GOAL_RATE and calm.percentile(0.99) < GOAL_P99_MS and not full.other and not calm.other
    verdict = "met" if met else "MISSED"
    print(
        f"{requests.name}: goal >= {GOAL_RATE:.0f} req/s and p99 < {GOAL_P99_MS:.0f} ms at half: {verdict}",
        flush=True,
    )
    return met


async def background_load(seconds: float = 2.0) -> float:
    """How busy the machine is without us (% of one core): other work on it slows every figure here."""
    before = machine_busy_seconds()
    await asyncio.sleep(seconds)  # sampling a rate over a window: there is nothing to await instead
    return 100 * (machine_busy_seconds() - before) / seconds


async def wait_for_quiet(limit: float, threshold: float = 25.0) -> float:
    """Wait up to ``limit`` seconds for the background load to drop under ``threshold``; the last load."""
    deadline = time.monotonic() + limit
    load = await background_load()
    while load >= threshold and time.monotonic() < deadline:
        load = await background_load()
    return load


async def run(args: argparse.Namespace, vhost: str) -> None:
    async with FakeTelegram() as telegram, FakeSlack() as slack:
        serve = Serve(args, vhost, telegram, slack)
        try:
            pid = await serve.start()
            pids = {"serve": pid, "bench": os.getpid()}
            for name, command in (("rabbitmq", "beam.smp"), ("redis", "redis-server")):
                if (found := pid_of(command)) is not None:
                    pids[name] = found
            meter = CpuMeter(pids)
            host = f"127.0.0.1:{serve.port}"
            sources = {
                "telegram": telegram_requests(host, args.chats),
                "slack": slack_requests(host, args.chats),
            }
            print(f"ingress: one serve process (pid {pid}), {args.partitions} partitions, {args.chats} chats")
            for name in args.channels.split(","):
                requests = sources[name]
                load = await wait_for_quiet(args.quiet_wait)
                print(f"background load before {name}: {load:.0f} % of one core", flush=True)
                met = await bench_channel(requests, serve.port, meter, args)
                if args.profile == "always" or (args.profile == "auto" and not met):
                    await profile(requests, serve.port, pid, args)
            counts = await published(serve.port)
            sent = {name: float(source.count - len(source.ready)) for name, source in sources.items()}
            print(f"published per serve's metrics: {counts}; requests sent: {sent}")
        finally:
            await serve.stop()


async def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each timed phase")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--chats", type=int, default=1000, help="distinct conversations in the load")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--channels", default="telegram,slack")
    parser.add_argument("--expect", type=float, default=5000, help="req/s to prepare requests for")
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto")
    parser.add_argument(
        "--also-paced", type=float, nargs="*", default=[], metavar="RATE", help="also pace at these req/s"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--quiet-wait", type=float, default=0.0, help="wait up to this many seconds for a quiet machine"
    )
    args = parser.parse_args()
    with rabbit_vhost() as (vhost, _):
        await run(args, vhost)


if __name__ == "__main__":
    asyncio.run(main())

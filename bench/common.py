"""What every benchmark script needs: a free port, percentiles, a RabbitMQ vhost and Redis keys of its own."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import aio_pika
import redis.asyncio as aioredis
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of seconds, in milliseconds (NaN when there are none)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def rabbitmqctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    subprocess.run([ctl, "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def rabbit_vhost(host: str = "127.0.0.1", port: int = 5672) -> Iterator[tuple[str, str]]:
    """A fresh vhost for one benchmark run, deleted afterwards: yields (vhost, AMQP URL)."""
    vhost = f"gwbench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield vhost, f"amqp://guest:guest@{host}:{port}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


async def delete_keys(redis_url: str, pattern: str) -> None:
    """Remove a run's Redis keys (``prefix:*``)."""
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
    finally:
        await client.aclose()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``); 0.0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time every process of the machine has used so far, all cores together (Linux ``/proc/stat``)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def pids_of(name: str, mentioning: str = "") -> list[int]:
    """Processes whose command name is ``name`` (e.g. ``beam.smp``, ``redis-server``) and whose command
    line holds ``mentioning`` (to tell the machine's RabbitMQ or Redis from the test clusters beside it)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() != name:
                    continue
                if mentioning.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


class CpuMeter:
    """Cores used by named groups of processes over an interval: where a machine's CPU went."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._start: dict[str, float] = {}
        self._started = 0.0

    def __enter__(self) -> CpuMeter:
        self._started = time.perf_counter()
        self._start = {name: sum(map(cpu_seconds, pids)) for name, pids in self.groups.items()}
        self._machine = machine_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self._started
        self.cores = {
            name: (sum(map(cpu_seconds, pids)) - self._start[name]) / elapsed
            for name, pids in self.groups.items()
        }
        self.machine = (machine_busy_seconds() - self._machine) / elapsed

    @property
    def others(self) -> float:
        """Cores the rest of the machine used meanwhile (other tenants, other tests): what disturbed us."""
        return max(0.0, self.machine - sum(self.cores.values()))

    def line(self) -> str:
        parts = [f"{name} {cores:.2f}" for name, cores in self.cores.items()]
        total = sum(self.cores.values())
        others = f"the rest of the machine {self.others:.2f}"
        return f"    cores used: {', '.join(parts)} (total {total:.2f}; {others})"


@asynccontextmanager
async def probe_queue(
    amqp_url: str, on_message: Callable[[AbstractIncomingMessage], Awaitable[None]]
) -> AsyncIterator[tuple[AbstractChannel, AbstractQueue]]:
    """A durable queue of its own with ``on_message`` consuming it, and a confirming channel to publish on:
    plain aio-pika, for the floors the gateway's figures are read against. Deleted afterwards."""
    connection = await aio_pika.connect(amqp_url)
    try:
        publisher = await connection.channel(publisher_confirms=True)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=64)
        queue = await consumer.declare_queue(f"probe-{uuid.uuid4().hex[:8]}", durable=True)
        tag = await queue.consume(on_message)
        try:
            yield publisher, queue
        finally:
            await queue.cancel(tag)
            await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()

"""What every benchmark script needs: a free port, percentiles, a RabbitMQ vhost and Redis keys of its own."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis


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

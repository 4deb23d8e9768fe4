"""What this machine charges for the things the gateway does many times per message, to read other figures by.

The HTTP-level latency at a moderate rate depends less on the gateway's code than on the machine: every
chat message wakes five processes several times, and a disk's fsync sits behind every confirm. This prints:

* fsync latency of a small append (RabbitMQ's confirms of persistent messages wait for one);
* the same piece of Python work run back to back and after 10 ms asleep (a CPU woken from idle runs
  it slower: cold caches, a clock that has to ramp up; on a VM, also the hypervisor's wake-up);
* the CPU one process spends per message to publish (confirmed, persistent), consume and ack with plain
  aio-pika, at a moderate rate and back to back.

    .venv/bin/python bench/machine_bench.py [--amqp-url amqp://guest:guest@127.0.0.1/]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, percentile, probe_queue


def fsync_latency(seconds: float = 3.0) -> list[float]:
    latencies = []
    with tempfile.NamedTemporaryFile(dir=os.getcwd(), prefix=".fsync-probe-") as probe:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            probe.write(b"x" * 512)
            probe.flush()
            began = time.perf_counter()
            os.fsync(probe.fileno())
            latencies.append(time.perf_counter() - began)
            time.sleep(0.004)
    return latencies


def python_work() -> int:
    table = {n: str(n) for n in range(3000)}
    return len(table)


def work_after(pause: float, rounds: int = 300) -> float:
    """Median seconds of :func:`python_work` when each run follows ``pause`` seconds asleep."""
    times = []
    for _ in range(rounds):
        if pause:
            time.sleep(pause)
        began = time.perf_counter()
        python_work()
        times.append(time.perf_counter() - began)
    return sorted(times)[rounds // 2]


async def amqp_cpu_per_message(url: str, count: int, interval: float) -> float:
    """CPU seconds this process spends per message: publish with confirm, consume, ack."""
    received = 0
    all_in = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal received
        await message.ack()
        received += 1
        if received == count:
            all_in.set()

    async with probe_queue(url, on_message) as (publisher, queue):
        began = cpu_seconds(os.getpid())
        for _ in range(count):
            body = aio_pika.Message(b"x" * 300, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await publisher.default_exchange.publish(body, routing_key=queue.name)
            if interval:
                await asyncio.sleep(interval)
        await asyncio.wait_for(all_in.wait(), 60)
        return (cpu_seconds(os.getpid()) - began) / count


async def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()
    fsyncs = fsync_latency()
    p50, p99 = percentile(fsyncs, 0.5), percentile(fsyncs, 0.99)
    print(f"fsync of a small append           p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
    hot, cold = work_after(0.0), work_after(0.010)
    print(
        f"the same Python work              back to back {hot * 1e6:5.0f} us, after 10 ms asleep "
        f"{cold * 1e6:5.0f} us ({cold / hot:.2f}x)"
    )
    paced = await amqp_cpu_per_message(args.amqp_url, 500, 0.010)
    burst = await amqp_cpu_per_message(args.amqp_url, 2000, 0.0)
    print(
        f"aio-pika publish+consume+ack CPU  at ~100 msg/s {paced * 1e6:5.0f} us per message, "
        f"back to back {burst * 1e6:5.0f} us ({paced / burst:.1f}x)"
    )


if __name__ == "__main__":
    asyncio.run(main())

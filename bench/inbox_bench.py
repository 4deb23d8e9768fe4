"""Inbox benchmark: how many staff replies per second `gateway inbox` accepts by SMTP onto RabbitMQ + Redis.

`gateway inbox` runs as its own process (as deployed) on a RabbitMQ vhost and Redis keys of the run's own,
with ``--conversations`` conversations handed over. ``--clients`` SMTP clients, each on one reused session
(as an MX delivers), send ``--mails`` Gmail-layout replies spread over those conversations; each mail
counts once its DATA is answered 250, which the inbox says only after the publish is confirmed and the
Message-ID recorded. The run then checks that RabbitMQ carries exactly one staff inbound per mail.
Goal: >= 200 mails/s.

    .venv/bin/python bench/inbox_bench.py [--mails 3000] [--clients 16] [--conversations 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from email.utils import make_msgid
from pathlib import Path

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CpuMeter, delete_keys, free_port, percentile, pids_of, rabbit_vhost
from gateway.core import desk
from gateway.core.bus.base import Delivery, Topic
from gateway.core.bus.rabbit import RabbitBus
from gateway.core.schema import ConversationKey, parse_inbound
from gateway.core.store.base import Commit, Record
from gateway.core.store.redis import RedisStore
from tests.support.inbox import GMAIL_BODY, staff_reply

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET = "bench-secret"
INBOX_ADDRESS = "desk@bot.example.com"
AGENT = "agent@support.example.com"
PARTITIONS = 16


def conversations(count: int) -> list[ConversationKey]:
    return [ConversationKey("telegram", str(10_000 + n), str(10_000 + n)) for n in range(count)]


def mails(count: int, keys: list[ConversationKey], run: str) -> list[tuple[str, bytes]]:
    """(reply address, bytes) per mail, each with its own Message-ID."""
    built = []
    for n in range(count):
        to = desk.reply_address(SECRET, keys[n % len(keys)], INBOX_ADDRESS)
        message = staff_reply(
            GMAIL_BODY, sender=AGENT, to=to, message_id=make_msgid(f"{run}.{n}", "support.example.com")
        )
        built.append((to, message.as_bytes()))
    return built


async def hand_over(store: RedisStore, keys: list[ConversationKey]) -> None:
    record = Record(b'{"desk": "email"}', ttl=3600)
    await asyncio.gather(
        *(
            store.commit(
                key, Commit(f"bench-handoff-{key.chat}", None, records={desk.HANDOFF_RECORD: record})
            )
            for key in keys
        )
    )


async def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"gateway inbox exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("gateway inbox does not listen") from None
            await asyncio.sleep(0.05)


async def client(port: int, queue: asyncio.Queue[tuple[str, bytes]], latencies: list[float]) -> None:
    """One MX-like sender: one session, mails one after another until the queue is empty."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60) as smtp:
        while True:
            try:
                to, raw = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            began = time.perf_counter()
            _, answer = await smtp.sendmail("bounces@support.example.com", [to], raw)
            latencies.append(time.perf_counter() - began)
            if not answer.startswith("2.0.0 OK: passed on"):
                raise RuntimeError(f"not accepted: {answer}")


async def send_burst(port: int, burst: list[tuple[str, bytes]], clients: int) -> tuple[float, list[float]]:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in burst:
        queue.put_nowait(item)
    latencies: list[float] = []
    began = time.perf_counter()
    await asyncio.gather(*(client(port, queue, latencies) for _ in range(clients)))
    return time.perf_counter() - began, latencies


async def run(args: argparse.Namespace) -> None:
    run_id = uuid.uuid4().hex[:8]
    prefix = f"gwbench{run_id}"
    folder = Path(tempfile.mkdtemp(prefix="inbox-bench-"))
    keys = conversations(args.conversations)
    warmup = mails(args.warmup, keys, f"w{run_id}")
    burst = mails(args.mails, keys, f"b{run_id}")
    with rabbit_vhost() as (_, amqp_url):
        store = RedisStore(REDIS_URL, prefix=prefix)
        bus = RabbitBus(amqp_url, prefix=prefix, partitions=PARTITIONS)
        port = free_port()
        env = {
            **os.environ,
            "GATEWAY_AMQP_URL": amqp_url,
            "GATEWAY_REDIS_URL": REDIS_URL,
            "GATEWAY_QUEUE_PREFIX": prefix,
            "GATEWAY_REDIS_PREFIX": prefix,
            "GATEWAY_PARTITIONS": str(PARTITIONS),
            "GATEWAY_INBOX_ADDRESS": INBOX_ADDRESS,
            "GATEWAY_SECRET_KEY": SECRET,
            "GATEWAY_STAFF": AGENT,
            "GATEWAY_INBOX_PORT": str(port),
            "GATEWAY_LOG_LEVEL": "warning",
        }
        log = (folder / "inbox.log").open("wb")
        process = subprocess.Popen(  # noqa: ASYNC220 - starting a child returns at once
            [sys.executable, "-m", "gateway.app.cli", "inbox"],
            env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        received = 0
        all_in = asyncio.Event()
        expected = args.warmup + args.mails

        async def count(delivery: Delivery) -> None:
            nonlocal received
            if parse_inbound(delivery.envelope.body).kind == "staff":
                received += 1
                if received >= expected:
                    all_in.set()

        try:
            await hand_over(store, keys)
            await wait_listening(port, process)
            await bus.start()
            subscription = await bus.subscribe(Topic.INBOUND, count, concurrency=256)
            await send_burst(port, warmup, args.clients)
            groups = {
                "inbox": [process.pid],
                "RabbitMQ": pids_of("beam.smp", "rabbit"),
                "Redis": pids_of("redis-server", ":6379"),
            }
            with CpuMeter(groups) as meter:
                elapsed, latencies = await send_burst(port, burst, args.clients)
            await asyncio.wait_for(all_in.wait(), 60)
            await subscription.stop()
            rate = args.mails / elapsed
            print(
                f"inbox over SMTP onto RabbitMQ + Redis: {args.mails} mails, {args.clients} clients, "
                f"{args.conversations} conversations handed over"
            )
            print(f"    accepted: {rate:.0f} mails/s (goal >= 200) in {elapsed:.2f} s")
            print(
                f"    DATA -> 250: p50 {percentile(latencies, 0.5):.1f} ms, "
                f"p99 {percentile(latencies, 0.99):.1f} ms, max {percentile(latencies, 1.0):.1f} ms"
            )
            print(meter.line())
            print(
                f"    staff inbounds on RabbitMQ: {received} for {expected} mails "
                f"(one each: {received == expected})"
            )
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 15)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
            complaints = [
                line for line in (folder / "inbox.log").read_text(errors="replace").splitlines()
                if " WARNING " in line or " ERROR " in line or "Traceback" in line
            ]  # fmt: skip
            for line in complaints[:5]:
                print("    inbox logged: " + line[:300])
            await bus.close()
            await store.close()
            await delete_keys(REDIS_URL, f"{prefix}:*")
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--conversations", type=int, default=200)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()

"""The user's data at scale: show and erase of one user among 1,000,000, and a broadcast to 100,000.

A private redis-server (AOF on, as in production) is filled through the gateway's own code: each of N
Telegram users has attributes, a session and a processed-message record with one reply (the store's
commit), and an entry in the channel's user index (as the worker writes it). Then, with the same store:

- show and erase of random users, one call at a time, through the service the admin API and ``gateway
  users`` use; the erase once without a broker (Redis only) and once on RabbitMQ (a vhost of its own,
  whose dead-letter queues are looked at and are empty). Beside them, the same-run baseline: one plain
  HGETALL round trip (redis-py) on the same server. Goal: p99 ≤ 20 ms.
- a broadcast with rate limits off to B web chat users (a channel of their own in the same Redis), with
  and without a condition that half of them match, publishing its starts to RabbitMQ (nobody consumes
  them); users/s walked and starts/s. Beside it, the same-run floor: the same number of start envelopes
  published by the same bus in batches of 500, with nothing else to do. With limits on, a broadcast goes
  at the channel's pace (Telegram 30/s), far below either.

    .venv/bin/python bench/users_bench.py [--users 1000000] [--broadcast-users 100000] [--samples 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import percentile, rabbit_vhost  # noqa: E402
from gateway.app.userdata.service import UserDataService  # noqa: E402
from gateway.core.bus.base import Envelope, Topic  # noqa: E402
from gateway.core.bus.rabbit import RabbitBus  # noqa: E402
from gateway.core.schema import ConversationKey, Inbound, Reply  # noqa: E402
from gateway.core.services import UserStores, build_user_stores  # noqa: E402
from gateway.core.store.base import Commit, Session  # noqa: E402
from gateway.core.store.broadcasts.base import Broadcast  # noqa: E402
from gateway.core.store.redis import RedisStore  # noqa: E402
from tests.support.faults import PrivateRedis  # noqa: E402
from worker.broadcast import BroadcastRunner, start_message  # noqa: E402

IN_FLIGHT = 512


async def fill(store: RedisStore, users: UserStores, channel: str, count: int, first: int = 0) -> float:
    """``count`` users as the worker leaves them after one message; returns users/s."""
    started = time.perf_counter()
    gate = asyncio.Semaphore(IN_FLIGHT)
    session = Session(story="greet", step="save", values={"City": "Paris"}, ttl=86400.0)

    async def one(n: int) -> None:
        user = str(first + n) if channel == "telegram" else f"web-user-{first + n:08d}"
        key = ConversationKey(channel, user, user)
        message_id = f"{channel}:seed:{n}"
        reply = Reply(id=f"{message_id}/r0", channel=channel, chat=user, user=user, text="Nice to meet you.")
        outputs = [b"R" + reply.to_json()]
        attributes = {"Name": f"user {n}", "Plan": "pro" if n % 2 else "free"}
        async with gate:
            await store.commit(key, Commit(message_id, session, attributes, outputs))
            await users.index.touch(channel, user, time.time(), user)

    step = 20_000
    for start in range(0, count, step):
        await asyncio.gather(*(one(n) for n in range(start, min(count, start + step))))
        print(f"    {channel}: {min(count, start + step):,} users", end="\r", flush=True)
    print()
    return count / (time.perf_counter() - started)


async def latencies(call: Callable[[str], Awaitable[object]], users: list[str]) -> list[float]:
    found = []
    for user in users:
        started = time.perf_counter()
        await call(user)
        found.append(time.perf_counter() - started)
    return found


def report(name: str, seconds: list[float]) -> None:
    print(
        f"  {name:<38} p50 {percentile(seconds, 0.5):6.2f} ms  p99 {percentile(seconds, 0.99):6.2f} ms"
        f"  max {percentile(seconds, 1.0):6.2f} ms  ({len(seconds)} calls)"
    )


async def one_user(store: RedisStore, users: UserStores, amqp_url: str, count: int, samples: int) -> None:
    rng = random.Random(16)
    picked = [str(n) for n in rng.sample(range(count), 3 * samples)]
    shown, erased, erased_rabbit = picked[:samples], picked[samples : 2 * samples], picked[2 * samples :]
    client = store.client
    hgetall = await latencies(lambda u: client.hgetall(store.keys.user("telegram", u)), shown)
    service = UserDataService(store, users)
    show = await latencies(lambda u: service.show("bench", "telegram", u), shown)
    erase = await latencies(lambda u: service.erase("bench", "telegram", u), erased)
    bus = RabbitBus(amqp_url, prefix="bench", partitions=16)
    await bus.start()
    try:
        with_bus = UserDataService(store, users, bus=bus)
        erase_rabbit = await latencies(lambda u: with_bus.erase("bench", "telegram", u), erased_rabbit)
    finally:
        await bus.close()
    print(f"one user among {count:,}:")
    report("baseline: HGETALL of the attributes", hgetall)
    report("show", show)
    report("erase (Redis)", erase)
    report("erase (Redis + RabbitMQ dead letters)", erase_rabbit)
    assert (await service.show("bench", "telegram", erased[0]))["attributes"] == {}


async def broadcast(store: RedisStore, users: UserStores, amqp_url: str, count: int) -> None:
    print(f"broadcast to {count:,} web chat users, rate limits off:")
    bus = RabbitBus(amqp_url, prefix="bench", partitions=16)
    await bus.start()
    try:
        sample = Broadcast("floor", "greet", "webchat", "")
        entries = await users.index.page("webchat", 0, "", 500)
        envelopes = [_envelope(start_message(sample, entry, time.time())) for entry in entries]
        started = time.perf_counter()
        for _ in range(count // len(envelopes)):
            await bus.publish(Topic.INBOUND, envelopes)
        floor = count / (time.perf_counter() - started)
        print(f"  floor: {count:,} start envelopes published in batches of 500: {floor:,.0f}/s")
        runner = BroadcastRunner(bus, store, users.index, users.broadcasts, holder="bench")
        for where in ("", '@user.Plan == "pro"'):
            made = Broadcast(f"b{len(where)}", "greet", "webchat", where, created_at=time.time())
            await users.broadcasts.create(made)
            started = time.perf_counter()
            done = await runner.run(made.id)
            elapsed = time.perf_counter() - started
            assert done is not None
            p = done.progress
            walked, starts = p.walked / elapsed, p.started / elapsed
            print(
                f"  where {where or '(none)':<20} {p.walked:,} users in {elapsed:.1f} s:"
                f" {walked:,.0f} users/s, {p.started:,} started = {starts:,.0f} starts/s"
                f" ({starts / floor:.2f} of the floor; Telegram's limit: 30/s)"
            )
    finally:
        await bus.close()


def _envelope(message: Inbound) -> Envelope:
    return Envelope(body=message.to_json(), message_id=message.id, key=str(message.conversation))


async def main(count: int, broadcast_users: int, samples: int) -> None:
    with tempfile.TemporaryDirectory() as folder, rabbit_vhost() as (_, amqp_url):
        redis = PrivateRedis(Path(folder))
        await redis.start()
        store = RedisStore(redis.url, prefix="gw", max_connections=32)
        try:
            users = build_user_stores(store)
            print(f"filling a private redis-server with {count:,} Telegram users ...")
            rate = await fill(store, users, "telegram", count)
            memory = (await store.client.info("memory"))["used_memory_human"]
            print(f"  {rate:,.0f} users/s through commit + index touch; Redis uses {memory}")
            await one_user(store, users, amqp_url, count, samples)
            print(f"filling {broadcast_users:,} web chat users ...")
            await fill(store, users, "webchat", broadcast_users)
            await broadcast(store, users, amqp_url, broadcast_users)
        finally:
            await store.close()
            await redis.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--broadcast-users", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.users, args.broadcast_users, args.samples))

"""The worker stage on the real Redis, without the broker: load (one round trip), engine, commit (one round
trip), for many conversations in flight — against aiogram's own FSM on its RedisStorage doing the same
four-message conversation (help, question, help, question), measured in the same run.

    .venv/bin/python bench/worker_bench.py [--users 500] [--in-flight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiogram.fsm.context import FSMContext  # noqa: E402
from aiogram.fsm.storage.base import StorageKey  # noqa: E402
from aiogram.fsm.storage.redis import DefaultKeyBuilder, RedisStorage  # noqa: E402

from bench.common import delete_keys  # noqa: E402
from gateway.core.bus.base import Bus, DeadLetter, Delivery, Envelope, Handler, Subscription, Topic  # noqa: E402
from gateway.core.schema import Inbound  # noqa: E402
from gateway.core.store.redis import RedisStore  # noqa: E402
from gateway.core.store.users.redis import RedisUserIndex  # noqa: E402
from worker.engine import Engine, load_stories  # noqa: E402
from worker.service import StoryWorker  # noqa: E402

TEXTS = ["help", "My printer prints everything twice, can you help?"] * 2


class NoBus(Bus):
    """Publishing goes nowhere: this benchmark measures the worker stage alone."""

    partitions, max_attempts = 16, 5

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def publish(self, topic: Topic, envelopes: Sequence[Envelope]) -> None: ...
    async def ping(self) -> bool:
        return True

    async def publish_direct(self, topic: Topic, instance: str, envelopes: Sequence[Envelope]) -> bool:
        return True

    async def subscribe(self, topic: Topic, handler: Handler, *, concurrency: int = 64) -> Subscription:
        raise NotImplementedError

    async def subscribe_direct(
        self, topic: Topic, instance: str, handler: Handler, *, concurrency: int = 64
    ) -> Subscription:
        raise NotImplementedError

    async def dead_letters(self, topic: Topic, limit: int = 100) -> list[DeadLetter]:
        return []

    async def replay_dead_letters(self, topic: Topic, limit: int | None = None) -> int:
        return 0

    async def remove_dead_letters(
        self, topic: Topic, matches: Callable[[Envelope], bool]
    ) -> list[DeadLetter]:
        return []


async def run_conversations(users: int, in_flight: int, turn: Callable[[int, int], Awaitable[None]]) -> float:
    """Each user sends its four messages in order; ``in_flight`` users are served at once."""
    gate = asyncio.Semaphore(in_flight)

    async def user(u: int) -> None:
        async with gate:
            for n in range(len(TEXTS)):
                await turn(u, n)

    started = time.perf_counter()
    await asyncio.gather(*(user(u) for u in range(users)))
    return users * len(TEXTS) / (time.perf_counter() - started)


async def gateway_worker(url: str, users: int, in_flight: int, *, user_index: bool = False) -> float:
    """``user_index``: the worker also tells the channel's user index who wrote, as the role does."""
    prefix = f"wb{uuid.uuid4().hex[:6]}"
    store = RedisStore.from_url(url, prefix=prefix, max_connections=in_flight)
    engine = Engine(load_stories(ROOT / "config" / "stories", ROOT / "config" / "emails"))
    index = RedisUserIndex(store) if user_index else None
    worker = StoryWorker(NoBus(), store, lambda: engine, users=index)
    run = uuid.uuid4().hex[:6]

    async def turn(u: int, n: int) -> None:
        message = Inbound(
            id=f"bench:{run}:{u}:{n}", channel="bench", chat=f"c{u}", user=f"u{u}", text=TEXTS[n]
        )
        envelope = Envelope(message.to_json(), message.id, str(message.conversation))
        await worker.handle(Delivery(envelope, Topic.INBOUND, attempt=1, redelivered=False))

    try:
        return await run_conversations(users, in_flight, turn)
    finally:
        await delete_keys(url, f"{prefix}:*")
        await store.close()


async def aiogram_fsm(url: str, users: int, in_flight: int) -> float:
    """What a handler on aiogram's FSM does per message: read the state, update the data, set the state."""
    prefix = f"wbfsm{uuid.uuid4().hex[:6]}"
    client = aioredis.from_url(url, max_connections=in_flight * 2)
    storage = RedisStorage(
        client, key_builder=DefaultKeyBuilder(prefix=prefix), state_ttl=1800, data_ttl=1800
    )
    steps = ["support:ticket", None, "support:ticket", None]

    async def turn(u: int, n: int) -> None:
        state = FSMContext(storage, StorageKey(bot_id=1, chat_id=u, user_id=u))
        await state.get_state()
        await state.update_data(last=TEXTS[n])
        await state.set_state(steps[n])

    try:
        return await run_conversations(users, in_flight, turn)
    finally:
        await delete_keys(url, f"{prefix}:*")
        await storage.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    await gateway_worker(args.redis, 100, args.in_flight)  # warm up
    fsm = await aiogram_fsm(args.redis, args.users, args.in_flight)
    ours = await gateway_worker(args.redis, args.users, args.in_flight)
    indexed = await gateway_worker(args.redis, args.users, args.in_flight, user_index=True)
    print(f"aiogram FSM on RedisStorage            {fsm:8.0f} messages/s")
    print(
        f"gateway worker stage on RedisStore     {ours:8.0f} messages/s   ({ours / fsm:.2f}x; goal 5,000/s)"
    )
    print(
        f"  ... telling the user index who wrote {indexed:8.0f} messages/s   ({indexed / ours:.2f}x of that)"
    )


if __name__ == "__main__":
    asyncio.run(main())

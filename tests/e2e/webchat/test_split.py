"""Split mode on the real RabbitMQ and Redis: two `serve` processes with the web chat and one `worker`. A
browser on each instance gets its own replies, from its own instance, and nothing else."""

from __future__ import annotations

import asyncio
import re
import time

import aio_pika
import aiohttp

from tests.support.processes import Start
from tests.support.webchat import Browser

WELCOME = ["Hello there! 👋", "I'm the demo bot of this gateway. What's your first name?"]


async def sent_replies(http: aiohttp.ClientSession, address: str, at_least: float) -> float:
    """The instance's count of web chat replies sent, once it reached ``at_least`` (the counter moves
    just after the browser got the frame; no event crosses the process boundary, so this polls)."""
    deadline = time.monotonic() + 5.0
    while True:
        async with http.get(f"{address}/metrics") as response:
            metrics = await response.text()
        match = re.search(r'gateway_replies_total\{channel="webchat",outcome="sent"\} (\S+)', metrics)
        sent = float(match.group(1)) if match else 0.0
        if sent >= at_least or time.monotonic() > deadline:
            return sent
        await asyncio.sleep(0.02)


async def test_each_serve_instance_delivers_the_replies_of_its_own_browsers_only(
    start_role: Start, http: aiohttp.ClientSession, amqp_url: str, queue_prefix: str
) -> None:
    serve_a = await start_role("serve", GATEWAY_INSTANCE_ID="serve-a")
    serve_b = await start_role("serve", GATEWAY_INSTANCE_ID="serve-b")
    await start_role("worker")
    address_a = (await serve_a.wait_for(r"web chat: (http://\S+)/$")).group(1)
    address_b = (await serve_b.wait_for(r"web chat: (http://\S+)/$")).group(1)
    alice, bob = Browser(http, address_a), Browser(http, address_b)
    await alice.open()
    await bob.open()

    await alice.say("hi")
    await bob.say("hello")
    assert await alice.next_replies(2) == WELCOME
    assert await bob.next_replies(2) == WELCOME
    await alice.say("Alice")
    await bob.say("Bob")
    assert await alice.next_replies(2) == ["Nice to meet you, Alice!", "Where do you live?"]
    assert await bob.next_replies(2) == ["Nice to meet you, Bob!", "Where do you live?"]
    await alice.press("London")
    await bob.press("Paris")
    assert (await alice.next_replies(2))[
        0
    ] == "Alice, we are really glad you live in London, such a great city!"
    assert (await bob.next_replies(2))[0] == "Bob, we are really glad you live in Paris, such a great city!"

    # Each instance delivered its own browser's six replies: none went to the other one (no broadcast).
    await alice.barrier()
    await bob.barrier()
    assert await sent_replies(http, address_a, 6) == 6.0
    assert await sent_replies(http, address_b, 6) == 6.0
    assert alice.unread_replies() == [] and bob.unread_replies() == []
    assert all(f["id"].startswith(f"webchat:{alice.user}:") for f in alice.of_type("reply"))
    assert all(f["id"].startswith(f"webchat:{bob.user}:") for f in bob.of_type("reply"))

    # The routing is a queue per instance, consumed by that instance alone.
    connection = await aio_pika.connect(amqp_url)
    try:
        async with connection.channel() as channel:
            for instance in ("serve-a", "serve-b"):
                queue = await channel.declare_queue(f"{queue_prefix}.outbound.to.{instance}", passive=True)
                assert queue.declaration_result.consumer_count == 1
    finally:
        await connection.close()

"""Helpers for the channel tests: the documentation fixtures (tests/channels/fixtures), a spied embedded
bus, the webhook app, the shared deliverer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from channels.base import Channel, WebhookRequest
from channels.delivery import Deliverer
from channels.ingress import Ingress
from gateway.core.bus.base import DeadLetter, Envelope, Topic
from gateway.core.bus.memory import MemoryBus
from gateway.core.metrics import Metrics
from gateway.core.schema import Inbound, Reply, parse_inbound
from gateway.core.store.memory import MemoryStore
from tests.support.fakes.inbound import SignedRequest
from tests.support.paths import ROOT

FIXTURES = ROOT / "tests" / "channels" / "fixtures"
PUBLIC_URL = "https://gateway.example.com"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def webhook_request(path: str, body: bytes, headers: dict[str, str] | None = None) -> WebhookRequest:
    """What the ingress hands a channel: case-insensitive headers, the public URL of the path."""
    return WebhookRequest(
        path=path, public_url=PUBLIC_URL + path, headers=CIMultiDict(headers or {}), body=body
    )


def signed(request: SignedRequest) -> WebhookRequest:
    return webhook_request(request.path, request.body, request.headers)


class SpyBus(MemoryBus):
    """The embedded bus, remembering what was published and dead-lettered (with events to await)."""

    def __init__(self) -> None:
        super().__init__(partitions=4)
        self.published: list[tuple[Topic, Envelope]] = []
        self.buried: list[DeadLetter] = []
        self._buried_event = asyncio.Event()

    async def publish(self, topic: Topic, envelopes: Sequence[Envelope]) -> None:
        await super().publish(topic, envelopes)
        self.published.extend((topic, e) for e in envelopes)

    def bury(self, letter: DeadLetter) -> None:
        super().bury(letter)
        self.buried.append(letter)
        self._buried_event.set()

    def inbound(self) -> list[Inbound]:
        return [parse_inbound(e.body) for t, e in self.published if t is Topic.INBOUND]

    async def wait_buried(self, timeout: float = 10.0) -> DeadLetter:
        async with asyncio.timeout(timeout):
            await self._buried_event.wait()
        return self.buried[0]


@asynccontextmanager
async def webhook_client(
    channels: list[Channel], bus: MemoryBus, store: MemoryStore
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Ingress]]:
    """The gateway's webhook routes (the shared ingress plus the channels) on a local test server."""
    ingress = Ingress(bus, Metrics(), public_url=PUBLIC_URL)
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app.add_routes(ingress.routes(channels))
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, ingress
    finally:
        await ingress.close()
        await client.close()


async def post(client: TestClient[web.Request, web.Application], request: SignedRequest) -> tuple[int, bytes]:
    async with client.post(request.path, data=request.body, headers=request.headers) as response:
        return response.status, await response.read()


@asynccontextmanager
async def delivering(bus: MemoryBus, store: MemoryStore, channel: Channel) -> AsyncIterator[Deliverer]:
    """The shared deliverer running for one channel, with short backoffs."""
    await channel.start()
    deliverer = Deliverer(bus, store, {channel.name: channel}, Metrics(), backoff_base=0.01, max_tries=4)
    await deliverer.start(concurrency=4)
    try:
        yield deliverer
    finally:
        await deliverer.stop(timeout=2.0)
        await channel.close()


async def publish_reply(bus: MemoryBus, reply: Reply) -> None:
    await bus.publish(
        Topic.OUTBOUND, [Envelope(body=reply.to_json(), message_id=reply.id, key=str(reply.conversation))]
    )

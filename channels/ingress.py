"""The webhook path shared by every channel: limit, verify, parse, drop duplicates, publish, answer.

A webhook answers 2xx only once its messages are safely in the broker (published with confirm); while
the broker is away it answers 503 so that the channel delivers the update again. Duplicates (the same
inbound id, which channels derive from their own update / event / message ids) are dropped by the worker,
whose commit record is keyed by that id: a copy of a message already handled re-publishes its recorded
replies, which the deliverer recognises as sent. This process also remembers the ids it accepted recently,
so a channel's immediate retry to the same instance is not even published again. Keeping the ingress free
of Redis round trips makes it faster, and lets webhooks be accepted while Redis is away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from opentelemetry.trace import SpanKind

from channels.base import Accepted, Channel, Endpoint, WebhookError, WebhookRequest
from gateway.core import timeline, tracing
from gateway.core.bus.base import Bus, Envelope, Topic
from gateway.core.errors import Unavailable
from gateway.core.metrics import Metrics
from gateway.core.schema import Inbound

log = logging.getLogger("gateway.ingress")

MAX_BODY = 1024 * 1024  # 1 MiB
RECENT_IDS = 100_000  # inbound ids remembered per process


class Ingress:
    def __init__(self, bus: Bus, metrics: Metrics, *, public_url: str, recent: int = RECENT_IDS) -> None:
        self.bus = bus
        self.metrics = metrics
        self.public_url = public_url.rstrip("/")
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._recent_size = recent
        self._background: set[asyncio.Task[None]] = set()

    def routes(self, channels: list[Channel]) -> list[web.RouteDef]:
        return [
            web.post(endpoint.path, self._handler(channel.name, endpoint))
            for channel in channels
            for endpoint in channel.endpoints()
        ]

    def _handler(
        self, channel: str, endpoint: Endpoint
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            with tracing.span(f"webhook {channel}", kind=SpanKind.SERVER) as span:
                response, outcome = await self._handle(request, endpoint)
                if span is not None:
                    span.set_attribute("gateway.outcome", outcome)
            self.metrics.webhooks.labels(channel, outcome).inc()
            return response

        return handle

    async def _handle(self, request: web.Request, endpoint: Endpoint) -> tuple[web.StreamResponse, str]:
        received = time.perf_counter_ns()
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="body over 1 MiB\n"), "too_large"
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return web.Response(status=413, text="body over 1 MiB\n"), "too_large"
        raw = WebhookRequest(
            path=request.path,
            public_url=self.public_url + request.path_qs,
            headers=request.headers,
            body=body,
            query=request.query,
        )
        try:
            accepted = await endpoint.handle(raw)
            await self.accept(accepted.messages)
        except WebhookError as exc:
            log.warning("webhook %s refused (%d): %s", request.path, exc.status, exc.reason)
            return web.Response(status=exc.status, text=exc.reason + "\n"), f"refused_{exc.status}"
        except Unavailable as exc:
            log.warning("webhook %s not accepted, answering 503: %s", request.path, exc)
            return web.Response(status=503, text="try again later\n"), "unavailable"
        if timeline.recording():
            for message in accepted.messages:
                timeline.mark("webhook.received", message.id, received)
                timeline.mark("inbound.confirmed", message.id)
        if accepted.after is not None:
            self._run_after(accepted)
        return web.Response(body=accepted.body, content_type=accepted.content_type), "accepted"

    async def accept(self, messages: Sequence[Inbound]) -> None:
        """Publish the messages not accepted here recently, with confirm; then remember their ids."""
        fresh = [m for m in messages if m.id not in self._recent]
        if not fresh:
            return
        await self.bus.publish(
            Topic.INBOUND,
            [
                Envelope(
                    body=m.to_json(), message_id=m.id, key=str(m.conversation), headers=tracing.carried()
                )
                for m in fresh
            ],
        )
        for message in fresh:
            self.metrics.inbound_published.labels(message.channel).inc()
            self._recent[message.id] = None
        while len(self._recent) > self._recent_size:
            self._recent.popitem(last=False)

    def _run_after(self, accepted: Accepted) -> None:
        assert accepted.after is not None
        task = asyncio.get_running_loop().create_task(self._after(accepted.after))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _after(self, action: Callable[[], Awaitable[None]]) -> None:
        try:
            await action()
        except Exception:
            log.exception("post-answer action failed")

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

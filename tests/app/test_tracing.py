"""One trace per chat message, across the roles: the webhook's span, the worker's under it (carried in the
envelope's headers), and under the worker's the delivery of each reply and the sending of the email."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.app.process import Gateway
from gateway.app.roles.base import RoleName
from gateway.core import tracing
from gateway.core.bus.memory import MemoryBus
from gateway.core.store.memory import MemoryStore
from tests.support.fakes import FakeTelegram, telegram_text_update, telegram_update_request
from tests.support.webchat import settings_for

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):  # set once per process
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    EXPORTER.clear()
    tracing.enable()
    try:
        yield EXPORTER
    finally:
        tracing.disable()


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


async def test_a_ticket_is_one_trace_from_webhook_to_delivery_and_mailer(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    async with FakeTelegram() as telegram:
        settings = settings_for(
            tmp_path, telegram_bot_token=telegram.token, telegram_api_url=telegram.url, webchat=False
        )
        gateway = Gateway(settings, frozenset(RoleName), bus=MemoryBus(partitions=4), store=MemoryStore())
        await gateway.start()
        try:
            assert gateway.address is not None and isinstance(gateway.bus, MemoryBus)
            async with aiohttp.ClientSession() as http:
                for update_id, text in ((1, "help"), (2, "the printer is on fire")):
                    request = telegram_update_request(telegram_text_update(update_id, 42, text), None)
                    async with http.post(
                        gateway.address + request.path, data=request.body, headers=request.headers
                    ) as response:
                        assert response.status == 200
                    await gateway.bus.join()
        finally:
            await gateway.stop()

    finished = spans.get_finished_spans()
    webhook = named(finished, "webhook telegram")[-1]
    handled = [s for s in named(finished, "handle message") if s.context.trace_id == webhook.context.trace_id]
    assert webhook.kind is SpanKind.SERVER and len(handled) == 1
    worker = handled[0]
    assert worker.kind is SpanKind.CONSUMER and worker.parent is not None
    assert worker.parent.span_id == webhook.context.span_id, "the worker's span is under the webhook's"
    delivered = [
        s for s in named(finished, "deliver reply") if s.parent and s.parent.span_id == worker.context.span_id
    ]
    mailed = [
        s for s in named(finished, "send email") if s.parent and s.parent.span_id == worker.context.span_id
    ]
    assert len(delivered) >= 1 and len(mailed) == 1
    assert worker.attributes is not None and worker.attributes["messaging.message.id"] == "telegram:update:2"

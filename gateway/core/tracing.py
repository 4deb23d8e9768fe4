"""Traces across the processes: webhook → worker → delivery / mailer, one trace per chat message.

Each role opens a span around its part of a message's journey and carries the trace context on to the
next role in the envelope's headers (W3C ``traceparent``/``tracestate``), so a trace follows a message
through RabbitMQ from process to process. Spans are exported over OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OpenTelemetry's own variables apply: ``OTEL_SERVICE_NAME``,
headers, sampling...); otherwise nothing is recorded and each hook costs one attribute lookup.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind

from gateway.core.bus.base import Envelope

_state = {"on": False}


def enabled() -> bool:
    return _state["on"]


def enable() -> None:
    """Record spans with the tracer provider set up already (:func:`setup_from_environment`, or a test's)."""
    _state["on"] = True


def disable() -> None:
    _state["on"] = False


def setup_from_environment(role: str) -> bool:
    """Export spans over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; True if it is."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = os.environ.get("OTEL_SERVICE_NAME") or f"chat-gateway-{role}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    enable()
    return True


def shutdown() -> None:
    """Flush what is left to export (at the end of the process)."""
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "shutdown", None)
    if enabled() and callable(flush):
        flush()


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    carrier: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span named ``name``, child of the trace in ``carrier`` (an envelope's headers) if given, else of
    the current one; ``None`` and no cost when tracing is off."""
    if not _state["on"]:
        yield None
        return
    parent = propagate.extract(carrier) if carrier is not None else None
    token = context.attach(parent) if parent is not None else None
    try:
        tracer = trace.get_tracer("gateway")
        with tracer.start_as_current_span(name, kind=kind, attributes=dict(attributes or {})) as current:
            yield current
    finally:
        if token is not None:
            context.detach(token)


def consuming(name: str, envelope: Envelope) -> contextlib.AbstractContextManager[Span | None]:
    """The span of a role handling one envelope, in the trace its headers carry."""
    attributes = {"messaging.message.id": envelope.message_id}
    return span(name, kind=SpanKind.CONSUMER, carrier=envelope.headers, attributes=attributes)


def carried(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus the current trace context, for an envelope that goes on to the next role."""
    out = dict(headers or {})
    if _state["on"]:
        propagate.inject(out)
    return out

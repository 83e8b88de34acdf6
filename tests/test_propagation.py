"""W3C trace context and baggage travel in ``params._meta`` through the global propagator."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import baggage, context, propagate
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tests.apps.http import http_client, serving
from tests.apps.servers import build

pytestmark = pytest.mark.anyio


class BaggageAtStart(SpanProcessor):
    """Remembers the baggage in each MCP server span's parent context, as the SDK hands it over."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, Any]] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if span.kind.name == "SERVER" and span.name.startswith("tools/call"):
            self.seen[span.name] = dict(baggage.get_all(parent_context))


@pytest.fixture
def baggage_seen(recorded) -> BaggageAtStart:
    processor = BaggageAtStart()
    recorded.tracer_provider.add_span_processor(processor)
    return processor


@pytest.fixture
def propagator():
    """Restores the global propagator a test replaces (what ``OTEL_PROPAGATORS`` configures)."""
    original = propagate.get_global_textmap()
    yield propagate.set_global_textmap
    propagate.set_global_textmap(original)


async def call_with_baggage(url: str) -> None:
    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        async with http_client(url) as client:
            await client.call_tool("add", {"a": 1, "b": 2})
    finally:
        context.detach(token)


async def test_baggage_and_trace_context_cross_the_wire(recorded, baggage_seen, propagator):
    propagator(CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()]))
    with serving(build("lowlevel")) as server:
        await call_with_baggage(server.url)

    assert baggage_seen.seen == {"tools/call add": {"tenant": "acme"}}
    (call,) = [span for span in recorded.server_spans() if span.name == "tools/call add"]
    (client_call,) = [span for span in recorded.client_spans() if span.name == "tools/call add"]
    assert call.parent.span_id == client_call.context.span_id


async def test_the_global_propagator_decides_what_travels(recorded, baggage_seen, propagator):
    propagator(TraceContextTextMapPropagator())  # as with OTEL_PROPAGATORS=tracecontext
    with serving(build("lowlevel")) as server:
        await call_with_baggage(server.url)

    assert baggage_seen.seen == {"tools/call add": {}}
    (call,) = [span for span in recorded.server_spans() if span.name == "tools/call add"]
    (client_call,) = [span for span in recorded.client_spans() if span.name == "tools/call add"]
    assert call.parent.span_id == client_call.context.span_id

"""W3C trace context and baggage travel in ``params._meta`` through the global propagator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from opentelemetry_instrumentation_mcp import MCPInstrumentor
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


class RequestBodies:
    """ASGI middleware that keeps every JSON-RPC message a client POSTs, as it arrived."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def receiving() -> Any:
            message = await receive()
            if message["type"] != "http.request":  # a disconnect, after the body
                return message
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                self.seen.append(json.loads(b"".join(chunks)))
            return message

        await self.app(scope, receiving, send)


async def bodies_of_a_session() -> list[Any]:
    kept: list[RequestBodies] = []

    def keep(app: Any) -> RequestBodies:
        kept.append(RequestBodies(app))
        return kept[-1]

    with serving(build("lowlevel"), wrap=keep) as server:
        async with http_client(server.url) as client:
            await client.list_tools()
            await client.call_tool("add", {"a": 1, "b": 2})
            await client.send_ping()
    return kept[0].seen


async def test_with_no_span_to_continue_requests_go_as_their_caller_made_them():
    """No tracer set up (the no-op provider): nothing to inject, so no ``_meta`` is added to any request."""
    plain = await bodies_of_a_session()
    instrumentor = MCPInstrumentor()
    instrumentor.instrument(tracer_provider=trace.NoOpTracerProvider())
    try:
        instrumented = await bodies_of_a_session()
    finally:
        instrumentor.uninstrument()

    methods = [body["method"] for body in plain]
    assert methods == ["initialize", "notifications/initialized", "tools/list", "tools/call", "ping"]
    assert instrumented == plain

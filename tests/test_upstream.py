"""Upstream time: a tool's calls to its dependencies, traced by the httpx instrumentation."""

from __future__ import annotations

import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import SpanKind

from tests.apps.clients import in_memory
from tests.apps.servers import KINDS, build
from tests.apps.upstream import upstream

pytestmark = pytest.mark.anyio

DELAY = 0.3


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def traced_httpx(recorded):
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=recorded.tracer_provider)
    yield
    instrumentor.uninstrument()


async def test_upstream_time_is_summed_onto_the_tool_span(recorded, traced_httpx, kind):
    with upstream() as base:
        async with in_memory(build(kind)) as client:
            await client.list_tools()
            result = await client.call_tool("fetch", {"url": f"{base}/delay?ms={int(DELAY * 1000)}", "timeout": 5})
            await client.call_tool("add", {"a": 1, "b": 2})
    assert result.content[0].text == "upstream ok"

    fetch = next(span for span in recorded.server_spans() if span.name == "tools/call fetch")
    upstream_time = fetch.attributes["mcp.upstream.duration"]
    assert isinstance(upstream_time, float)
    assert 0.95 * DELAY <= upstream_time < DELAY + 0.5  # the upstream waits DELAY; a loaded machine adds to it
    own_time = (fetch.end_time - fetch.start_time) / 1e9 - upstream_time
    assert own_time >= 0

    (http,) = [span for span in recorded.spans(SpanKind.CLIENT) if span.instrumentation_scope.name.endswith("httpx")]
    assert http.parent.span_id == fetch.context.span_id
    assert http.attributes["mcp.session.id"] == fetch.attributes["mcp.session.id"]
    assert http.attributes["gen_ai.tool.name"] == "fetch"
    assert abs((http.end_time - http.start_time) / 1e9 - upstream_time) < 1e-6

    add = next(span for span in recorded.server_spans() if span.name == "tools/call add")
    assert "mcp.upstream.duration" not in add.attributes

    # The same time on the upstream histogram, with the operation duration's attributes, for fetch only.
    snapshot = recorded.snapshot()
    (point,) = snapshot["mcp.server.operation.upstream.duration"]
    assert (point.count, point.sum) == (1, upstream_time)
    (operation,) = [
        p for p in snapshot["mcp.server.operation.duration"] if p.attributes.get("gen_ai.tool.name") == "fetch"
    ]
    assert dict(point.attributes) == dict(operation.attributes)
    assert [(e.trace_id, e.span_id) for e in point.exemplars] == [(fetch.context.trace_id, fetch.context.span_id)]
    unit = recorded.metric("mcp.server.operation.upstream.duration").unit
    assert unit == "s"


async def test_no_upstream_timing_after_uninstrument(recorded, traced_httpx):
    from opentelemetry_instrumentation_mcp import MCPInstrumentor

    MCPInstrumentor().uninstrument()
    try:
        with upstream() as base:
            async with in_memory(build("lowlevel")) as client:
                await client.call_tool("fetch", {"url": f"{base}/ok", "timeout": 5})
    finally:
        MCPInstrumentor().instrument(tracer_provider=recorded.tracer_provider)
    (http,) = [span for span in recorded.spans(SpanKind.CLIENT) if span.instrumentation_scope.name.endswith("httpx")]
    assert "mcp.session.id" not in http.attributes


def test_uninstrument_takes_the_timer_off_the_tracer_provider():
    from opentelemetry.sdk.trace import TracerProvider

    from opentelemetry_instrumentation_mcp import MCPInstrumentor
    from opentelemetry_instrumentation_mcp.upstream import UpstreamTimer

    provider = TracerProvider()
    timers = lambda: [p for p in provider._active_span_processor._span_processors if isinstance(p, UpstreamTimer)]  # noqa: E731
    try:
        for _ in range(3):  # instrument / uninstrument cycles leave nothing behind
            MCPInstrumentor().instrument(tracer_provider=provider)
            assert len(timers()) == 1
            MCPInstrumentor().uninstrument()
            assert timers() == []
    finally:
        provider.shutdown()

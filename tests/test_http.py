"""Streamable HTTP on 127.0.0.1: stateful and stateless servers, and many concurrent sessions."""

from __future__ import annotations

import re

import anyio
import pytest
from opentelemetry.trace import SpanKind

from tests.apps.http import http_client, serving
from tests.apps.servers import IS_V2, KINDS, build, handshake_version, sdk_types

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_stateful_http_spans_carry_session_transport_and_peer(recorded, kind):
    with serving(build(kind)) as server:
        async with http_client(server.url) as client:
            await client.list_tools()
            await client.call_tool("add", {"a": 1, "b": 2})

    spans = recorded.server_spans()
    assert [span.name for span in spans] == ["initialize", "notifications/initialized", "tools/list", "tools/call add"]
    assert len(server.session_ids.seen) == 1
    (session_id,) = server.session_ids.seen
    for span in spans:
        assert span.attributes["mcp.session.id"] == session_id
        assert span.attributes["network.transport"] == "tcp"
        assert span.attributes["network.protocol.name"] == "http"
        assert span.attributes["network.protocol.version"] == "1.1"
        assert "mcp.session.stateless" not in span.attributes
        if span.name.startswith("notifications/") and not IS_V2:
            continue  # mcp 1.x hands notifications over without their HTTP request: no peer address
        assert span.attributes["client.address"] == "127.0.0.1"
        assert isinstance(span.attributes["client.port"], int) and span.attributes["client.port"] > 0
    call = spans[-1]
    assert call.attributes["mcp.client.name"] == "mcp"
    assert call.attributes["mcp.protocol.version"] == handshake_version()

    clients = {span.context.span_id: span for span in recorded.client_spans()}
    for span in spans:
        if span.attributes.get("jsonrpc.request.id") is not None:
            assert clients[span.parent.span_id].name == span.name
    port = int(server.url.split(":")[2].split("/")[0])
    for span in clients.values():
        if span.name != "initialize":  # the server hands out the session id in its answer to initialize
            assert span.attributes["mcp.session.id"] == session_id
        assert span.attributes["mcp.protocol.version"] == handshake_version()
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == port
        assert span.attributes["network.transport"] == "tcp"
        assert "client.address" not in span.attributes
    client_points = recorded.points("mcp.client.operation.duration")
    assert {point.attributes["server.port"] for point in client_points} == {port}

    points = recorded.points("mcp.server.operation.duration")
    assert all(point.attributes["network.transport"] == "tcp" for point in points)
    assert all("client.port" not in point.attributes for point in points)


async def test_stateless_http_spans_have_no_session_id(recorded, kind):
    with serving(build(kind), stateless=True) as server:
        async with http_client(server.url) as client:
            await client.list_tools()
            await client.call_tool("add", {"a": 1, "b": 2})

    (initialize,) = [span for span in recorded.server_spans() if span.name == "initialize"]
    assert initialize.attributes["mcp.protocol.version"] == handshake_version(), "the negotiated one"
    spans = [span for span in recorded.server_spans() if span.name.startswith("tools/")]
    assert [span.name for span in spans] == ["tools/list", "tools/call add"]
    for span in spans:
        assert "mcp.session.id" not in span.attributes
        assert span.attributes["mcp.session.stateless"] is True
        assert span.attributes["network.transport"] == "tcp"
    assert server.session_ids.seen == set()
    assert recorded.points("mcp.server.session.duration") == []


async def test_concurrent_sessions_never_bleed_context(recorded, kind):
    sessions, calls_per_session = 20, 10

    async def agent(index: int, url: str) -> None:
        info = sdk_types().Implementation(name=f"agent-{index}", version=str(index))
        async with http_client(url, client_info=info) as client:
            await client.list_tools()
            async with anyio.create_task_group() as tg:
                for call in range(calls_per_session):
                    tg.start_soon(client.call_tool, "add", {"a": index, "b": call})

    with serving(build(kind)) as server:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for index in range(sessions):
                    tg.start_soon(agent, index, server.url)

    calls = [span for span in recorded.server_spans() if span.name == "tools/call add"]
    assert len(calls) == sessions * calls_per_session
    assert len(server.session_ids.seen) == sessions
    by_session: dict[str, set[str]] = {}
    for span in calls:
        by_session.setdefault(span.attributes["mcp.session.id"], set()).add(span.attributes["mcp.client.name"])
    assert set(by_session) == server.session_ids.seen
    assert all(len(names) == 1 for names in by_session.values())
    assert {name for names in by_session.values() for name in names} == {f"agent-{i}" for i in range(sessions)}

    clients = {span.context.span_id: span for span in recorded.spans(SpanKind.CLIENT)}
    assert len([span for span in clients.values() if span.name == "tools/call add"]) == sessions * calls_per_session
    for span in calls:
        parent = clients[span.parent.span_id]
        assert parent.attributes["mcp.client.name"] == span.attributes["mcp.client.name"]
        assert re.fullmatch(r"agent-\d+", parent.attributes["mcp.client.name"])


async def test_ambient_http_span_becomes_a_link(recorded, kind):
    """Under an ASGI instrumentation, the MCP span continues the client's trace from ``_meta``.

    On 2.x the HTTP request's context reaches the handler, so that request's HTTP SERVER span is
    linked; 1.x runs handlers in the session's task, whose context is the session-opening request's,
    not this message's: nothing is linked there.
    """
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    def traced(app):
        return OpenTelemetryMiddleware(app, tracer_provider=recorded.tracer_provider)

    with serving(build(kind), wrap=traced) as server:
        async with http_client(server.url) as client:
            await client.call_tool("add", {"a": 1, "b": 2})

    (call,) = [span for span in recorded.server_spans() if span.name == "tools/call add"]
    (client_call,) = [span for span in recorded.client_spans() if span.name == "tools/call add"]
    assert call.parent.span_id == client_call.context.span_id
    http_spans = {
        span.context.span_id: span
        for span in recorded.server_spans()
        if span.instrumentation_scope.name == "opentelemetry.instrumentation.asgi"
    }
    assert http_spans, "the ASGI instrumentation traced the HTTP requests"
    if IS_V2:
        assert len(call.links) == 1
        linked = http_spans[call.links[0].context.span_id]
        assert linked.context.trace_id != call.context.trace_id
        assert linked.start_time <= call.start_time and linked.end_time >= call.end_time
    else:
        assert call.links == ()

"""fastmcp (4.x) servers on the wire: stdio in a subprocess, streamable HTTP on 127.0.0.1.

The same server (``build_fastmcp()``) and SCRIPT as test_fastmcp.py, in each of fastmcp's telemetry
modes: exactly one SERVER span per message (fastmcp's, enriched, for requests in ``native`` mode; ours
otherwise), never a second one. Over stdio the server runs as ``tests/apps/stdio_server.py fastmcp``
under ``opentelemetry-instrument`` and exports over OTLP to ``tests.otlp_receiver``; the client in this
process is instrumented by ``recorded``, so the trace context it puts in ``params._meta`` must come back
as the parent of each server span. Over HTTP everything runs in this process (``recorded_globally``:
fastmcp records through the global tracer provider).

Collected only where fastmcp is installed (the ``fastmcp`` nox session; see conftest.py).
"""

from __future__ import annotations

import re
from typing import Any

import fastmcp
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from tests.apps.http import http_client, serving
from tests.apps.servers import build_fastmcp, handshake_version
from tests.apps.stdio_server import FASTMCP
from tests.otlp_receiver import otlp_receiver_fixture  # noqa: F401 - the fixture
from tests.test_fastmcp import SCRIPT, mode_fixture, recorded_globally_fixture, run_script  # noqa: F401 - the fixtures
from tests.test_stdio_otlp import OUR_SCOPE, SERVICE, stdio_session, wait_for_session

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

REQUESTS = [name for name in SCRIPT if not name.startswith("notifications/")]
SERVER = {"mcp.server.name": "fast-demo", "mcp.server.version": fastmcp.__version__}
CLIENT = {"mcp.client.name": "mcp", "mcp.client.version": "0.1.0"}  # the SDK's ClientSession
HTTP = {"network.transport": "tcp", "network.protocol.name": "http", "network.protocol.version": "1.1"}
ADD = {
    "mcp.method.name": "tools/call",
    "jsonrpc.request.id": "3",  # initialize is 1, tools/list 2
    "gen_ai.operation.name": "execute_tool",
    "gen_ai.tool.name": "add",
    "mcp.request.argument_keys": ("a", "b"),
    "mcp.user_intent": "The agent totals an invoice.",
    "mcp.protocol.version": handshake_version(),
    **SERVER,
}
NATIVE_ADD = {
    "fastmcp.span.seam": True,
    "fastmcp.server.name": "fast-demo",
    "fastmcp.component.type": "tool",
    "fastmcp.component.key": "tool:add@",
    "fastmcp.provider.type": "LocalProvider",
}
"""What fastmcp's own span adds to ``tools/call add`` in ``native`` mode."""


def scopes(mode: str) -> list[str]:
    """Who opened each SCRIPT span: fastmcp for requests in ``native`` mode, else us."""
    native = mode == "native"
    return ["fastmcp" if native and name in REQUESTS else OUR_SCOPE for name in SCRIPT]


def assert_exactly(attributes: Any, expected: dict[str, Any]) -> None:
    """``attributes`` are ``expected`` (keys, values, value types: ``True`` is not ``1``) + ``mcp.response.size``."""
    found = dict(attributes)
    size = found.pop("mcp.response.size")
    assert isinstance(size, int) and size > 0
    assert found == expected
    assert {key: type(value) for key, value in found.items()} == {key: type(value) for key, value in expected.items()}


async def script_over_stdio(receiver: Any, tmp_path: Any, mode: str) -> str:
    """SCRIPT against ``stdio_server.py fastmcp`` in ``mode``; the negotiated protocol version."""
    async with stdio_session(receiver, FASTMCP, tmp_path, FASTMCP_TELEMETRY_MODE=mode) as client:
        initialized = await client.initialize()
        await run_script(client)
    return initialized.protocol_version


async def test_stdio_one_server_span_per_message_exported_over_otlp(recorded, otlp_receiver, mode, tmp_path):
    protocol_version = await script_over_stdio(otlp_receiver, tmp_path, mode)
    spans = wait_for_session(otlp_receiver, tmp_path, spans=len(SCRIPT))

    assert [span.name for span in spans] == SCRIPT
    assert otlp_receiver.spans == spans, "nothing but one SERVER span per message: none doubled, no INTERNAL ones"
    assert [span.scope for span in spans] == scopes(mode)
    assert protocol_version == handshake_version()
    session_ids = {span.attributes["mcp.session.id"] for span in spans}
    assert len(session_ids) == 1, "one session id for the connection, ours and fastmcp's"
    (session_id,) = session_ids
    assert re.fullmatch(r"[0-9a-f]{32}", session_id)
    for span in spans:
        assert span.kind == SpanKind.SERVER
        assert (span.status_code, span.status_message) == (StatusCode.UNSET, "")
        assert span.resource["service.name"] == SERVICE
        assert span.attributes["network.transport"] == "pipe"
        assert span.attributes["mcp.protocol.version"] == protocol_version
        assert {key: span.attributes[key] for key in (*SERVER, *CLIENT)} == {**SERVER, **CLIENT}
        assert "mcp.session.stateless" not in span.attributes
        assert span.links == []

    (add,) = [span for span in spans if span.name == "tools/call add"]
    expected = {**ADD, **CLIENT, "mcp.session.id": session_id, "network.transport": "pipe"}
    assert_exactly(add.attributes, {**expected, **(NATIVE_ADD if mode == "native" else {})})

    # Each request's span is the child of the client's span for it, across the process boundary.
    clients = {span.name: span for span in recorded.client_spans()}
    assert list(clients) == REQUESTS
    for server in spans:
        if server.name in clients:
            client = clients[server.name]
            assert server.trace_id == format(client.context.trace_id, "032x"), server.name
            assert server.parent_span_id == format(client.context.span_id, "016x"), server.name
    (notification,) = [span for span in spans if span.name == "notifications/initialized"]
    assert notification.parent_span_id is None
    assert notification.trace_id not in {format(span.context.trace_id, "032x") for span in recorded.spans()}

    sessions = otlp_receiver.metric_points("mcp.server.session.duration")
    assert [(point.count, point.attributes, point.scope) for point in sessions] == [
        (1, {"network.transport": "pipe", "mcp.protocol.version": protocol_version,
             "mcp.client.name": notification.attributes["mcp.client.name"]}, OUR_SCOPE)
    ]  # fmt: skip
    operations = otlp_receiver.metric_points("mcp.server.operation.duration")
    assert sum(point.count for point in operations) == len(SCRIPT)
    assert {point.attributes["network.transport"] for point in operations} == {"pipe"}
    assert otlp_receiver.errors == []


async def run_over_http(recorded, *, stateless: bool) -> tuple[list[Any], set[str]]:
    """SCRIPT over streamable HTTP; the SERVER spans (checked to be all there is) and the session ids handed out."""
    with serving(build_fastmcp(), stateless=stateless) as server:
        async with http_client(server.url) as client:
            await run_script(client)
    spans = recorded.server_spans()
    assert [span.name for span in spans] == SCRIPT
    assert [span for span in recorded.spans() if span.kind != SpanKind.CLIENT] == spans, "no second span"

    clients = {span.name: span for span in recorded.client_spans()}
    assert list(clients) == REQUESTS
    for span in spans:
        assert (span.status.status_code, span.links) == (StatusCode.UNSET, ())
        assert {key: span.attributes[key] for key in (*SERVER, *HTTP)} == {**SERVER, **HTTP}
        assert span.attributes["mcp.protocol.version"] == handshake_version()
        assert span.attributes["client.address"] == "127.0.0.1"
        assert isinstance(span.attributes["client.port"], int) and span.attributes["client.port"] > 0
        if span.name in clients:
            assert span.parent.span_id == clients[span.name].context.span_id, span.name
            assert span.context.trace_id == clients[span.name].context.trace_id, span.name
        else:
            assert span.parent is None
    points = recorded.points("mcp.server.operation.duration")
    assert sum(point.count for point in points) == len(SCRIPT)
    assert {point.attributes["network.transport"] for point in points} == {"tcp"}
    return spans, server.session_ids.seen


async def test_stateful_http_one_server_span_per_message_with_the_transport_session_id(recorded_globally, mode):
    recorded = recorded_globally
    spans, session_ids = await run_over_http(recorded, stateless=False)

    assert [span.instrumentation_scope.name for span in spans] == scopes(mode)
    (session_id,) = session_ids
    for span in spans:
        assert span.attributes["mcp.session.id"] == session_id
        assert "mcp.session.stateless" not in span.attributes
        assert {key: span.attributes[key] for key in CLIENT} == CLIENT
    (add,) = [span for span in spans if span.name == "tools/call add"]
    attributes = dict(add.attributes)
    assert attributes.pop("client.port") > 0
    assert attributes.pop("user_agent.original").startswith("python-httpx")
    expected = {**ADD, **CLIENT, **HTTP, "mcp.session.id": session_id, "client.address": "127.0.0.1"}
    assert_exactly(attributes, {**expected, **(NATIVE_ADD if mode == "native" else {})})


async def test_stateless_http_one_server_span_per_message_without_session_id(recorded_globally, mode):
    recorded = recorded_globally
    spans, session_ids = await run_over_http(recorded, stateless=True)

    assert [span.instrumentation_scope.name for span in spans] == scopes(mode)
    assert session_ids == set()
    for span in spans:
        assert "mcp.session.id" not in span.attributes, f"{span.name}: fastmcp's per-request id is no session id"
        assert span.attributes["mcp.session.stateless"] is True
    # Every request is a connection of its own: the instrumented client names itself on each one, and all share
    # their caller's id.
    assert [span.attributes.get("mcp.client.name") for span in spans] == ["mcp"] * len(SCRIPT)
    assert len({span.attributes["mcp.caller.id"] for span in spans}) == 1
    (add,) = [span for span in spans if span.name == "tools/call add"]
    attributes = dict(add.attributes)
    assert attributes.pop("client.port") > 0
    assert attributes.pop("user_agent.original").startswith("python-httpx")
    assert len(attributes.pop("mcp.caller.id")) == 32
    expected = {**ADD, **CLIENT, **HTTP, "mcp.session.stateless": True, "client.address": "127.0.0.1"}
    assert_exactly(attributes, {**expected, **(NATIVE_ADD if mode == "native" else {})})
    assert recorded.points("mcp.server.session.duration") == []

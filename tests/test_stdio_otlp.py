"""A real stdio server in another process, instrumented by ``opentelemetry-instrument`` alone.

The server (``tests/apps/stdio_server.py``) never calls ``instrument()``: the
``mcp_analytics`` entry point does, and the distro's OTLP/HTTP exporter sends
its spans to ``tests.otlp_receiver`` on loopback. The client in this process is
instrumented by the ``recorded`` fixture, so the trace context it puts in
``params._meta`` must come back as the parent of each server span.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import mcp.client.stdio
import pytest
from mcp import ClientSession, StdioServerParameters
from opentelemetry.trace import SpanKind, StatusCode

from opentelemetry_instrumentation_mcp import __version__
from tests.apps.servers import IS_V2, KINDS, announced_version
from tests.apps.stdio_server import EXIT_SCOPE, EXIT_SPAN
from tests.otlp_receiver import OTLPReceiver, ReceivedSpan, otlp_receiver_fixture  # noqa: F401 - the fixture

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = Path(__file__).resolve().parent / "apps" / "stdio_server.py"
OPENTELEMETRY_INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
OUR_SCOPE = "opentelemetry_instrumentation_mcp"
SDK_SCOPE = "mcp-python-sdk"
SERVICE = "stdio-test-server"

SERVER_SCRIPT_SPANS = [
    "initialize",
    "notifications/initialized",
    "tools/list",
    "tools/call add",
    "tools/call fail",
    "resources/read",
    "prompts/get review",
]
REQUESTS = [name for name in SERVER_SCRIPT_SPANS if not name.startswith("notifications/")]
SESSION_TIMEOUT = 15  # interpreter start + auto-instrumentation + the script; seconds
ARRIVAL_TIMEOUT = 5  # after the server process has gone (the SDK's stdio client waits 2 s, then kills it)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def server_env(receiver: OTLPReceiver, **extra: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",  # exported only at shutdown (60 s interval): proves the exit flush
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@asynccontextmanager
async def stdio_session(
    receiver: OTLPReceiver, kind: str, tmp_path: Path, *server_args: str, **extra_env: str
) -> AsyncIterator[ClientSession]:
    """A (not yet initialized) client session to ``stdio_server.py kind`` under ``opentelemetry-instrument``.

    On exit the SDK's stdio client closes the server's stdin and waits for the process to end
    (killing it after 2 s); the server's stderr is in ``tmp_path / "server.stderr"``.
    """
    assert OPENTELEMETRY_INSTRUMENT.exists(), f"{OPENTELEMETRY_INSTRUMENT} missing (opentelemetry-instrumentation)"
    parameters = StdioServerParameters(
        command=str(OPENTELEMETRY_INSTRUMENT),
        args=[sys.executable, str(SERVER_SCRIPT), kind, *server_args],
        env=server_env(receiver, **extra_env),
        cwd=str(ROOT),
    )
    # stdio_client is looked up at call time, so the in-process instrumentation's wrapper (if any) is used.
    with (tmp_path / "server.stderr").open("w") as errlog:
        async with (
            mcp.client.stdio.stdio_client(parameters, errlog=errlog) as (read_stream, write_stream),
            ClientSession(read_stream, write_stream) as client,
        ):
            with anyio.fail_after(SESSION_TIMEOUT):
                yield client


async def run_script(client: Any) -> str:
    """The scripted session; returns the negotiated protocol version."""
    initialized = await client.initialize()
    await client.list_tools()
    assert (await client.call_tool("add", {"a": 2, "b": 3})).content[0].text == "5"
    failed = await client.call_tool("fail", {})
    assert getattr(failed, "is_error", None) or getattr(failed, "isError", None)
    await client.read_resource("demo://greeting")
    await client.get_prompt("review", {"code": "print(1)"})
    return str(getattr(initialized, "protocol_version", None) or initialized.protocolVersion)


def stderr_of(tmp_path: Path) -> str:
    return (tmp_path / "server.stderr").read_text()[-4000:]


def wait_for_session(
    receiver: OTLPReceiver, tmp_path: Path, spans: int = len(SERVER_SCRIPT_SPANS)
) -> list[ReceivedSpan]:
    """The server spans, once the session-duration metric (exported only by the exit flush) and ``spans`` are in."""
    try:
        receiver.wait_for(
            lambda r: r.metric_points("mcp.server.session.duration") and len(r.server_spans()) >= spans,
            timeout=ARRIVAL_TIMEOUT,
        )
    except AssertionError as failure:
        raise AssertionError(f"{failure}\nserver stderr:\n{stderr_of(tmp_path)}") from None
    return receiver.server_spans()


async def test_one_server_span_per_message_exported_over_otlp(recorded, otlp_receiver, kind, tmp_path):
    async with stdio_session(otlp_receiver, kind, tmp_path) as client:
        await run_script(client)
    spans = wait_for_session(otlp_receiver, tmp_path)

    assert [span.name for span in spans] == SERVER_SCRIPT_SPANS
    assert otlp_receiver.spans == spans, "nothing but SERVER spans"
    assert {span.scope for span in spans} == {OUR_SCOPE}, f"no {SDK_SCOPE!r} spans: ours replace the SDK's"
    assert {span.scope_version for span in spans} == {__version__}
    for span in spans:
        assert span.resource["service.name"] == SERVICE
        assert span.attributes["network.transport"] == "pipe"
        assert span.attributes["mcp.server.name"] == f"{kind}-demo"
        assert span.links == []
    session_ids = {span.attributes["mcp.session.id"] for span in spans}
    assert len(session_ids) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", session_ids.pop())
    assert otlp_receiver.errors == []
    assert {path for path, _ in otlp_receiver.requests} == {"/v1/traces", "/v1/metrics"}


async def test_tool_call_server_span_as_received(recorded, otlp_receiver, kind, tmp_path):
    async with stdio_session(otlp_receiver, kind, tmp_path) as client:
        protocol_version = await run_script(client)
    spans = {span.name: span for span in wait_for_session(otlp_receiver, tmp_path)}

    add = spans["tools/call add"]
    assert add.kind == SpanKind.SERVER
    assert add.status_code == StatusCode.UNSET
    assert add.status_message == ""
    attributes = dict(add.attributes)
    session_id = attributes.pop("mcp.session.id")
    assert re.fullmatch(r"[0-9a-f]{32}", session_id)
    size = attributes.pop("mcp.response.size")
    assert isinstance(size, int) and size > 0
    assert attributes == {
        "mcp.method.name": "tools/call",
        "mcp.request.argument_keys": ("a", "b"),
        "jsonrpc.request.id": "3" if IS_V2 else "2",  # 2.x numbers requests from 1, 1.x from 0
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "mcp.protocol.version": protocol_version,
        "mcp.client.name": "mcp",
        "mcp.client.version": "0.1.0",
        "mcp.server.name": f"{kind}-demo",
        "mcp.server.version": announced_version(kind),
        "network.transport": "pipe",
    }
    assert {
        type(value)
        for key, value in add.attributes.items()
        if key not in ("mcp.response.size", "mcp.request.argument_keys")
    } == {str}

    fail = spans["tools/call fail"]
    assert fail.attributes["error.type"] == "tool_error"
    assert fail.attributes["gen_ai.tool.name"] == "fail"
    assert "rpc.response.status_code" not in fail.attributes
    assert fail.status_code == StatusCode.ERROR

    request_ids = [int(spans[name].attributes["jsonrpc.request.id"]) for name in REQUESTS]
    first = 1 if IS_V2 else 0
    assert request_ids == list(range(first, first + len(REQUESTS)))
    assert "jsonrpc.request.id" not in spans["notifications/initialized"].attributes


async def test_server_spans_are_children_of_the_client_spans_across_the_process_boundary(
    recorded, otlp_receiver, kind, tmp_path
):
    async with stdio_session(otlp_receiver, kind, tmp_path) as client:
        await run_script(client)
    servers = wait_for_session(otlp_receiver, tmp_path)

    clients = {span.name: span for span in recorded.client_spans()}
    assert list(clients) == REQUESTS
    assert len({span.context.trace_id for span in clients.values()}) == len(REQUESTS), "one trace per request"
    for server in servers:
        if server.name.startswith("notifications/"):
            continue
        client = clients[server.name]
        assert server.trace_id == format(client.context.trace_id, "032x"), server.name
        assert server.parent_span_id == format(client.context.span_id, "016x"), server.name

    # A notification carries no client span: its server span starts a trace of its own.
    notification = next(span for span in servers if span.name == "notifications/initialized")
    assert notification.parent_span_id is None
    client_traces = {format(span.context.trace_id, "032x") for span in recorded.spans()}
    assert notification.trace_id not in client_traces
    assert notification.trace_id not in {span.trace_id for span in servers if span is not notification}


async def test_metrics_flushed_when_the_server_process_exits(recorded, otlp_receiver, kind, tmp_path):
    async with stdio_session(otlp_receiver, kind, tmp_path) as client:
        protocol_version = await run_script(client)
    spans = wait_for_session(otlp_receiver, tmp_path)

    sessions = otlp_receiver.metric_points("mcp.server.session.duration")
    client_name = spans[0].attributes["mcp.client.name"]
    assert [(point.count, point.attributes, point.scope) for point in sessions] == [
        (
            1,
            {"network.transport": "pipe", "mcp.protocol.version": protocol_version, "mcp.client.name": client_name},
            OUR_SCOPE,
        )
    ]
    operations = otlp_receiver.metric_points("mcp.server.operation.duration")
    assert sum(point.count for point in operations) == len(SERVER_SCRIPT_SPANS)
    assert {point.unit for point in operations} == {"s"}
    # Exemplars travel over OTLP: each points at a server span of that operation.
    by_id = {(span.trace_id, span.span_id): span for span in spans}
    for point in operations:
        assert point.exemplars, point
        for exemplar in point.exemplars:
            assert by_id[exemplar].attributes["mcp.method.name"] == point.attributes["mcp.method.name"]
    assert all(point.attributes["network.transport"] == "pipe" for point in operations)
    assert {point.resource["service.name"] for point in sessions + operations} == {SERVICE}


async def test_disabled_instrumentation_leaves_no_spans_of_ours(recorded, otlp_receiver, kind, tmp_path):
    async with stdio_session(
        otlp_receiver, kind, tmp_path, "--exit-span", OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="mcp_analytics"
    ) as client:
        await run_script(client)
    try:
        otlp_receiver.wait_for(lambda r: any(span.name == EXIT_SPAN for span in r.spans), timeout=ARRIVAL_TIMEOUT)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\nserver stderr:\n{stderr_of(tmp_path)}") from None

    spans = otlp_receiver.spans
    assert [span.scope for span in spans if span.name == EXIT_SPAN] == [EXIT_SCOPE]
    assert [span for span in spans if span.scope == OUR_SCOPE] == []
    assert otlp_receiver.metric_points("mcp.server.operation.duration") == []
    sdk_spans = [span for span in spans if span.scope == SDK_SCOPE]
    if IS_V2:  # the SDK's own OpenTelemetryMiddleware is left in place
        assert [span.name for span in sdk_spans] == SERVER_SCRIPT_SPANS
        assert {span.kind for span in sdk_spans} == {SpanKind.SERVER}
        clients = {span.name: span for span in recorded.client_spans()}
        for span in sdk_spans:
            if span.name in clients:  # it reads the same _meta our client span wrote
                assert span.parent_span_id == format(clients[span.name].context.span_id, "016x")
    else:  # 1.x has no tracing of its own
        assert sdk_spans == []
        assert [span.name for span in spans] == [EXIT_SPAN]


async def test_one_verdict_across_the_process_boundary(recorded, otlp_receiver, kind, tmp_path):
    """A tool that states an upstream failure: the client, whose own rules would say ``server``/``tool_error``,
    takes the verdict the server process sent over stdio, the same the server's span exports through OTLP."""
    async with stdio_session(otlp_receiver, kind, tmp_path) as client:
        await client.initialize()
        await client.list_tools()
        try:
            result = await client.call_tool("billing", {})
            assert getattr(result, "is_error", None) or getattr(result, "isError", None)
        except Exception:  # noqa: BLE001 - the 2.x low-level server answers a tool's exception as a JSON-RPC error
            assert IS_V2 and kind == "lowlevel"
    servers = wait_for_session(otlp_receiver, tmp_path, spans=4)  # initialize, initialized, tools/list, the call
    (server,) = [span for span in servers if span.name == "tools/call billing"]
    (client_span,) = [span for span in recorded.client_spans() if span.name == "tools/call billing"]
    assert server.attributes["error.type"] == client_span.attributes["error.type"]
    for attributes in (server.attributes, client_span.attributes):
        assert (attributes["mcp.failure.origin"], attributes["mcp.failure.reason"]) == ("upstream", "upstream_error")


async def test_a_console_exporter_on_stdout_is_warned_about_once(recorded, otlp_receiver, kind, tmp_path):
    """``OTEL_TRACES_EXPORTER=console`` prints spans into the protocol stream: the server says so on stderr.
    (The batch delay holds the spans until exit here, so this session still works; a real one breaks.)"""
    async with stdio_session(
        otlp_receiver, kind, tmp_path, OTEL_TRACES_EXPORTER="console", OTEL_BSP_SCHEDULE_DELAY="60000"
    ) as client:
        await run_script(client)
        await client.list_tools()
    stderr = (tmp_path / "server.stderr").read_text()
    # Once, naming the exporter and the fix (a framework's log handler may wrap the lines).
    assert stderr.count("ConsoleSpanExporter") == 1 and "over stdio, stdout carries the MCP" in stderr, stderr
    assert "OTEL_TRACES_EXPORTER=otlp" in stderr


async def test_no_stdout_warning_when_exporting_over_otlp(recorded, otlp_receiver, kind, tmp_path):
    async with stdio_session(otlp_receiver, kind, tmp_path) as client:
        await run_script(client)
    wait_for_session(otlp_receiver, tmp_path)
    assert "stdout carries the MCP protocol" not in (tmp_path / "server.stderr").read_text()

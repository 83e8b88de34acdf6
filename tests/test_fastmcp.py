"""fastmcp (4.x) servers: exactly one SERVER span per message in every telemetry mode.

Collected only where fastmcp is installed (the ``fastmcp`` nox session; see conftest.py).
"""

from __future__ import annotations

import re

import fastmcp
import pytest
from opentelemetry import trace
from opentelemetry.test.globals_test import reset_trace_globals

from opentelemetry_instrumentation_mcp import UserIdentity
from tests.apps.clients import in_memory
from tests.apps.servers import build_fastmcp
from tests.apps.upstream import upstream
from tests.conftest import instrumented
from tests.test_verdicts import FAILURES as VERDICTS
from tests.test_verdicts import assert_one_verdict, expected_of, provoke

pytestmark = pytest.mark.anyio

MODES = ("native", "propagation_only", "off")
SCRIPT = [
    "initialize",
    "notifications/initialized",
    "tools/list",
    "tools/call add",
    "resources/read",
    "prompts/get review",
]


@pytest.fixture(params=MODES, name="mode")
def mode_fixture(request: pytest.FixtureRequest):
    """fastmcp's telemetry mode, with the global tracer provider (which fastmcp uses) recording."""
    previous = fastmcp.settings.telemetry_mode
    fastmcp.settings.telemetry_mode = request.param
    yield request.param
    fastmcp.settings.telemetry_mode = previous


@pytest.fixture(name="recorded_globally")
def recorded_globally_fixture(mode):
    with instrumented() as recorded:
        reset_trace_globals()
        trace.set_tracer_provider(recorded.tracer_provider)
        try:
            yield recorded
        finally:
            reset_trace_globals()


async def run_script(client) -> None:
    await client.list_tools()
    await client.call_tool("add", {"a": 1, "b": 2, "context": "The agent totals an invoice."})
    await client.read_resource("demo://greeting")
    await client.get_prompt("review", {"code": "x"})


async def test_exactly_one_server_span_per_message(recorded_globally, mode):
    recorded = recorded_globally
    async with in_memory(build_fastmcp()) as client:
        await run_script(client)

    spans = recorded.server_spans()
    assert [span.name for span in spans] == SCRIPT
    expected_scope = "fastmcp" if mode == "native" else "opentelemetry_instrumentation_mcp"
    for span in spans:
        is_notification = span.name.startswith("notifications/")
        scope = "opentelemetry_instrumentation_mcp" if is_notification else expected_scope
        assert span.instrumentation_scope.name == scope, span.name
        assert span.attributes["mcp.client.name"] == "mcp"
        assert span.attributes["mcp.server.name"] == "fast-demo"
        assert re.fullmatch(r"[0-9a-f]{32}", span.attributes["mcp.session.id"])
    assert len({span.attributes["mcp.session.id"] for span in spans}) == 1, "one session id, ours and fastmcp's"

    assert spans[2].attributes["mcp.tools.listed"] == ("add", "fetch", "billing", "echo")
    call = spans[3]
    assert call.attributes["jsonrpc.request.id"].isdigit()
    assert call.attributes["gen_ai.operation.name"] == "execute_tool"
    assert call.attributes["mcp.user_intent"] == "The agent totals an invoice."
    assert call.attributes["mcp.request.argument_keys"] == ("a", "b")
    clients = {span.context.span_id: span for span in recorded.client_spans()}
    for span in spans:
        if span.parent is not None and span.parent.span_id in clients:
            assert clients[span.parent.span_id].name == span.name
    assert clients[call.parent.span_id].name == "tools/call add"
    points = recorded.points("mcp.server.operation.duration")
    assert sum(point.count for point in points) == len(SCRIPT)


async def test_failure_origin_on_fastmcp_tools(recorded_globally, mode):
    recorded = recorded_globally
    with upstream() as base:
        async with in_memory(build_fastmcp()) as client:
            await client.list_tools()
            await client.call_tool("fetch", {"url": f"{base}/500", "timeout": 5})
            await client.call_tool("billing", {})
            await client.call_tool("add", {"a": "not a number", "b": 1})
            await client.call_tool("nope", {})

    found = {
        span.attributes["gen_ai.tool.name"]: (
            span.attributes["mcp.failure.origin"],
            span.attributes["mcp.failure.reason"],
        )
        for span in recorded.server_spans()
        if span.name.startswith("tools/call")
    }
    assert found == {
        "fetch": ("upstream", "upstream_error"),
        "billing": ("upstream", "upstream_error"),
        "add": ("client", "invalid_params"),
        "nope": ("client", "unknown_tool"),
    }


async def test_identity_on_fastmcp(mode):
    with instrumented(identify=lambda request: UserIdentity("u-5", user_name="Eve")) as recorded:
        async with in_memory(build_fastmcp()) as client:
            await client.call_tool("add", {"a": 1, "b": 2})
    (call,) = [span for span in recorded.server_spans() if span.name == "tools/call add"]
    assert (call.attributes["user.id"], call.attributes["user.name"]) == ("u-5", "Eve")


FAILURES = [(kind, name, call, verdict) for kind, name, call, verdict in VERDICTS if kind != "tool fails"]
"""The failure kinds of ``test_verdicts`` (this server has no ``fail`` tool), with fastmcp's answers."""


@pytest.mark.parametrize(("failure", "name", "call", "verdict"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_one_verdict_per_failure(recorded_globally, mode, failure, name, call, verdict):
    with upstream() as base:
        async with in_memory(build_fastmcp()) as client:
            await provoke(client, call, base)
    # In native mode the span is fastmcp's: an exception that escapes it (a prompt's, a resource's) makes it ERROR.
    escapes = mode == "native" and name.startswith(("prompts/", "resources/"))
    assert_one_verdict(recorded_globally, name, expected_of(verdict, "highlevel"), framework_status=escapes)

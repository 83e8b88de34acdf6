"""Failure origin and reason, provoked for real on every server kind."""

from __future__ import annotations

import contextlib
import re

import anyio
import pytest
from opentelemetry.trace import StatusCode

from opentelemetry_instrumentation_mcp import ToolFailure
from opentelemetry_instrumentation_mcp.failures import REASONS, FailureOrigin, of_exception, of_jsonrpc, of_refusal
from tests.apps.clients import in_memory
from tests.apps.servers import IS_V2, KINDS, build
from tests.apps.upstream import upstream

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def failed_call(recorded, kind: str, tool: str, arguments: dict) -> tuple:
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        with contextlib.suppress(Exception):  # some kinds answer with a JSON-RPC error instead of isError
            await client.call_tool(tool, arguments)
    (span,) = [span for span in recorded.server_spans() if span.attributes.get("gen_ai.tool.name") == tool]
    return span.attributes["mcp.failure.origin"], span.attributes["mcp.failure.reason"], span


async def test_upstream_http_error_inside_a_tool(recorded, kind):
    with upstream() as base:
        origin, reason, span = await failed_call(recorded, kind, "fetch", {"url": f"{base}/500", "timeout": 5})
    assert (origin, reason) == ("upstream", "upstream_error")
    assert span.status.status_code == StatusCode.ERROR
    (point,) = [
        p for p in recorded.points("mcp.server.operation.duration") if p.attributes.get("gen_ai.tool.name") == "fetch"
    ]
    assert (point.attributes["mcp.failure.origin"], point.attributes["mcp.failure.reason"]) == (
        "upstream",
        "upstream_error",
    )


async def test_upstream_timeout_inside_a_tool(recorded, kind):
    with upstream() as base:
        origin, reason, _ = await failed_call(recorded, kind, "fetch", {"url": f"{base}/stall", "timeout": 0.3})
    assert (origin, reason) == ("upstream", "upstream_timeout")


async def test_tool_states_its_failure(recorded, kind):
    assert (await failed_call(recorded, kind, "billing", {}))[:2] == ("upstream", "upstream_error")


async def test_tool_that_fails_on_its_own(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        result = await client.call_tool("fail", {})
    (span,) = [span for span in recorded.server_spans() if span.attributes.get("gen_ai.tool.name") == "fail"]
    assert (span.attributes["mcp.failure.origin"], span.attributes["mcp.failure.reason"]) == ("server", "tool_error")
    assert span.attributes["error.type"] == "tool_error"
    # The status description is the error text the client received (each server kind words it its own way).
    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == result.content[0].text


async def test_unknown_tool(recorded, kind):
    assert (await failed_call(recorded, kind, "nope", {}))[:2] == ("client", "unknown_tool")


async def test_invalid_arguments(recorded, kind):
    origin, reason, _ = await failed_call(recorded, kind, "add", {"a": "not a number", "b": 1})
    if IS_V2 and kind == "lowlevel":
        # The 2.x low-level server does not validate arguments: the handler itself crashes.
        assert (origin, reason) == ("server", "internal_error")
    else:
        assert (origin, reason) == ("client", "invalid_params")


async def test_missing_resource(recorded, kind):
    async with in_memory(build(kind)) as client:
        with pytest.raises(Exception):  # noqa: B017, PT011 - each SDK line raises its own error type
            await client.read_resource("demo://missing")
    for span in (recorded.server_spans()[-1], recorded.client_spans()[-1]):
        assert span.name == "resources/read"
        assert (span.attributes["mcp.failure.origin"], span.attributes["mcp.failure.reason"]) == ("client", "not_found")


async def test_cancelled_call(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        with anyio.move_on_after(0.2):
            await client.call_tool("slow", {"seconds": 30})
    (span,) = [span for span in recorded.client_spans() if span.name == "tools/call slow"]
    assert (span.attributes["mcp.failure.origin"], span.attributes["mcp.failure.reason"]) == ("client", "cancelled")


async def test_successful_calls_carry_no_failure(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.call_tool("add", {"a": 1, "b": 2})
    for span in recorded.spans():
        assert "mcp.failure.origin" not in span.attributes
        assert "mcp.failure.reason" not in span.attributes


def test_every_reason_has_one_documented_origin():
    assert set(REASONS.values()) == {"client", "auth", "upstream", "server"}
    with pytest.raises(ValueError, match="unknown failure reason"):
        ToolFailure("x", reason="no_such_reason")


@pytest.mark.parametrize(
    ("options", "verdict"),
    [
        ({"reason": "upstream_timeout"}, ("upstream", "upstream_timeout")),
        ({"origin": "client"}, ("client", "invalid_params")),
        ({"origin": FailureOrigin.AUTH}, ("auth", "insufficient_scope")),
        ({"origin": "upstream"}, ("upstream", "upstream_error")),
        ({"origin": "server"}, ("server", "internal_error")),
        ({"origin": "client", "reason": "unknown_tool"}, ("client", "unknown_tool")),
    ],
)
def test_a_tool_states_its_verdict_by_origin_reason_or_both(options, verdict):
    assert (ToolFailure("x", **options).failure.origin, ToolFailure("x", **options).failure.reason) == verdict


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({}, "needs a reason or an origin"),
        ({"origin": "nobody"}, "unknown failure origin 'nobody'"),
        ({"origin": "client", "reason": "upstream_error"}, "'upstream_error' is a upstream failure, not client"),
    ],
)
def test_a_verdict_that_cannot_be_is_refused(options, complaint):
    with pytest.raises(ValueError, match=re.escape(complaint)):
        ToolFailure("x", **options)


async def test_a_tool_that_names_only_the_origin_gets_that_verdict_on_its_span(recorded):
    server = build("highlevel")

    @server.tool()
    def lookup(city: str) -> str:
        raise ToolFailure(f"no such city {city!r}", origin="client")

    async with in_memory(server) as client:
        result = await client.call_tool("lookup", {"city": "Atlantis"})
    assert getattr(result, "is_error", None) or getattr(result, "isError", None)
    (span,) = [span for span in recorded.server_spans() if span.name == "tools/call lookup"]
    assert (span.attributes["mcp.failure.origin"], span.attributes["mcp.failure.reason"]) == (
        "client",
        "invalid_params",
    )


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (-32700, "Parse error", ("client", "invalid_request")),
        (-32600, "Invalid Request", ("client", "invalid_request")),
        (-32601, "Method not found", ("client", "method_not_found")),
        (-32602, "Invalid request parameters", ("client", "invalid_params")),
        (-32602, "Unknown tool: x", ("client", "unknown_tool")),
        (-32002, "Resource not found", ("client", "not_found")),
        (-32603, "Internal error", ("server", "internal_error")),
        (0, "Request cancelled", ("client", "cancelled")),
        (0, "boom", ("server", "internal_error")),
        (-32050, "custom server error", ("server", "internal_error")),
    ],
)
def test_jsonrpc_codes(code, message, expected):
    found = of_jsonrpc(code, message)
    assert (found.origin, found.reason) == expected


@pytest.mark.parametrize(
    ("status", "header", "authenticate", "sent_token", "reason"),
    [
        (401, '{"origin":"auth","reason":"expired_token"}', 'Bearer error="invalid_token"', True, "expired_token"),
        (401, None, 'Bearer error="invalid_token", error_description="x"', True, "invalid_token"),
        (401, None, 'Bearer error="invalid_token"', False, "missing_token"),
        (401, None, None, False, "missing_token"),
        (401, None, "Basic realm=x", True, "invalid_token"),
        (403, None, 'Bearer error="insufficient_scope"', True, "insufficient_scope"),
        (403, None, None, True, "insufficient_scope"),
        (401, "not json", None, True, "invalid_token"),
        (401, '{"origin":"auth","reason":"no_such_reason"}', None, True, "invalid_token"),
        (401, '["expired_token"]', None, True, "invalid_token"),
    ],
)
def test_refusals_take_the_servers_verdict_else_rfc_6750(status, header, authenticate, sent_token, reason):
    found = of_refusal(status, header, authenticate, sent_token=sent_token)
    assert (found.origin, found.reason) == ("auth", reason)


def test_exception_chains_are_walked():
    try:
        try:
            raise TimeoutError("read timed out")
        except TimeoutError as cause:
            raise RuntimeError("the tool gave up") from cause
    except RuntimeError as error:
        found = of_exception(error)
    assert (found.origin, found.reason) == ("upstream", "upstream_timeout")
    assert of_exception(KeyError("x")).reason == "internal_error"


async def test_unknown_method_from_a_real_client(recorded):
    """2.x answers -32601 through the middleware (one span); 1.x rejects it before dispatch (no span)."""
    import httpx

    from tests.apps.http import serving
    from tests.apps.servers import handshake_version

    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": handshake_version(),
    }
    with serving(build("lowlevel"), stateless=True) as server:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                server.url, headers=headers, json={"jsonrpc": "2.0", "id": 5, "method": "no/such", "params": {}}
            )
    assert response.status_code in (200, 400)
    spans = [span for span in recorded.server_spans() if span.attributes.get("mcp.method.name") == "no/such"]
    if IS_V2:
        (span,) = spans
        assert (span.attributes["mcp.failure.origin"], span.attributes["mcp.failure.reason"]) == (
            "client",
            "method_not_found",
        )
        assert span.attributes["error.type"] == "-32601"
    else:
        assert spans == []

"""One failure, one verdict: the server span, the client span of the same request and both sides'
operation-duration points carry the same ``mcp.failure.origin`` and ``mcp.failure.reason``.

Every failure kind is provoked for real, with client and server both instrumented, on every server
kind, in memory and over streamable HTTP (stateful and stateless). The server sends its verdict in the
answer (``_meta`` of a result, ``data`` of a JSON-RPC error); an uninstrumented client sees the same
answer as without the instrumentation but for that one namespaced key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from opentelemetry.trace import StatusCode

from opentelemetry.exporter.mcp_analytics.events import to_event
from opentelemetry_instrumentation_mcp.failures import WIRE_KEY
from tests.apps.clients import in_memory
from tests.apps.http import http_client, serving
from tests.apps.servers import IS_V2, KINDS, build
from tests.apps.upstream import upstream

pytestmark = pytest.mark.anyio

Call = Callable[[Any, str], Awaitable[Any]]


def call_tool(tool: str, arguments: dict[str, Any]) -> Call:
    async def call(client: Any, base: str) -> Any:
        await client.list_tools()
        return await client.call_tool(
            tool,
            {key: value.format(base=base) if isinstance(value, str) else value for key, value in arguments.items()},
        )

    return call


def get_prompt(name: str) -> Call:
    async def call(client: Any, base: str) -> Any:
        return await client.get_prompt(name, {"code": "x"} if name == "review" else None)

    return call


def read_resource(uri: str) -> Call:
    async def call(client: Any, base: str) -> Any:
        return await client.read_resource(uri)

    return call


# (failure kind, span name, the call, the verdict by server kind: {kind: (origin, reason)} or one for all)
FAILURES: list[tuple[str, str, Any, Any]] = [
    ("unknown tool", "tools/call nope", ("nope", {}), ("client", "unknown_tool")),
    (
        "invalid arguments",
        "tools/call add",
        ("add", {"a": "not a number", "b": 1}),
        # The 2.x low-level server does not validate arguments: its handler crashes on them.
        {
            "lowlevel": ("server", "internal_error") if IS_V2 else ("client", "invalid_params"),
            "highlevel": ("client", "invalid_params"),
        },
    ),
    (
        "tool raises",
        "tools/call echo",
        ("echo", {"text": "raise:boom"}),
        {
            "lowlevel": ("server", "internal_error") if IS_V2 else ("server", "tool_error"),
            "highlevel": ("server", "tool_error"),
        },
    ),
    ("tool fails", "tools/call fail", ("fail", {}), ("server", "tool_error")),
    (
        "upstream HTTP error",
        "tools/call fetch",
        ("fetch", {"url": "{base}/500", "timeout": 5}),
        ("upstream", "upstream_error"),
    ),
    (
        "upstream timeout",
        "tools/call fetch",
        ("fetch", {"url": "{base}/stall", "timeout": 0.3}),
        ("upstream", "upstream_timeout"),
    ),
    ("stated by the tool", "tools/call billing", ("billing", {}), ("upstream", "upstream_error")),
    ("prompt raises", "prompts/get broken", get_prompt("broken"), ("server", "internal_error")),
    ("unknown prompt", "prompts/get missing", get_prompt("missing"), ("client", "not_found")),
    ("unknown resource", "resources/read", read_resource("demo://missing"), ("client", "not_found")),
]
IDS = [kind for kind, *_ in FAILURES]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def provoke(client: Any, call: Any, base: str) -> Any:
    """Make the call; what the client received (a result, or the error raised)."""
    if isinstance(call, tuple):
        call = call_tool(*call)
    try:
        return await call(client, base)
    except Exception as error:  # noqa: BLE001 - a JSON-RPC error is one of the answers under test
        return error


def expected_of(verdict: Any, kind: str) -> tuple[str, str]:
    return verdict[kind] if isinstance(verdict, dict) else verdict


def assert_one_verdict(recorded: Any, name: str, expected: tuple[str, str], *, framework_status: bool = False) -> None:
    """``framework_status``: the server span is a framework's (fastmcp's, enriched), whose status is the framework's
    to set: the OTel SDK marks a span ERROR when an exception escapes it, a client's mistake included."""
    (server,) = [span for span in recorded.server_spans() if span.name == name]
    (client,) = [span for span in recorded.client_spans() if span.name == name]
    for span in (server, client):
        found = (span.attributes["mcp.failure.origin"], span.attributes["mcp.failure.reason"])
        assert found == expected, f"{span.kind} span of {name}"
    assert server.attributes["error.type"] == client.attributes["error.type"]
    assert server.attributes.get("rpc.response.status_code") == client.attributes.get("rpc.response.status_code")
    assert client.status.status_code == StatusCode.ERROR
    server_fault = expected[0] in ("server", "upstream")
    if not framework_status:
        assert server.status.status_code == (StatusCode.ERROR if server_fault else StatusCode.UNSET)
    if server_fault:
        assert "error.message" not in server.attributes, "the status description says it"
    elif expected != ("client", "cancelled"):
        assert isinstance(server.attributes["error.message"], str) and server.attributes["error.message"]
    event = to_event(server)
    assert event["failure"] == {"origin": expected[0], "reason": expected[1]}
    assert event["error"]["message"] == (server.status.description or server.attributes.get("error.message"))
    points = recorded.snapshot()
    for metric in ("mcp.server.operation.duration", "mcp.client.operation.duration"):
        failed = [p for p in points[metric] if "mcp.failure.origin" in p.attributes]
        assert [(p.attributes["mcp.failure.origin"], p.attributes["mcp.failure.reason"], p.count) for p in failed] == [
            (*expected, 1)
        ], metric


@pytest.mark.parametrize(("failure", "name", "call", "verdict"), FAILURES, ids=IDS)
async def test_in_memory(recorded, kind, failure, name, call, verdict):
    with upstream() as base:
        async with in_memory(build(kind)) as client:
            await provoke(client, call, base)
    assert_one_verdict(recorded, name, expected_of(verdict, kind))


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
@pytest.mark.parametrize(("failure", "name", "call", "verdict"), FAILURES, ids=IDS)
async def test_streamable_http(recorded, kind, stateless, failure, name, call, verdict):
    with upstream() as base, serving(build(kind), stateless=stateless) as server:
        async with http_client(server.url) as client:
            await provoke(client, call, base)
    assert_one_verdict(recorded, name, expected_of(verdict, kind))


async def test_cancelled(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        with anyio.move_on_after(0.2):
            await client.call_tool("slow", {"seconds": 30})
    assert_one_verdict(recorded, "tools/call slow", ("client", "cancelled"))


async def test_the_verdict_travels_in_the_answer(recorded, kind):
    """An uninstrumented client reads the server's verdict under one namespaced key and nothing else changes."""
    with upstream() as base:
        async with in_memory(build(kind)) as client:
            result = await provoke(client, call_tool("fetch", {"url": "{base}/500", "timeout": 5}), base)
            error = await provoke(client, get_prompt("missing"), base)
            ok = await client.call_tool("add", {"a": 1, "b": 2})
    sent = {"origin": "upstream", "reason": "upstream_error"}
    if IS_V2 and kind == "lowlevel":  # the tool's exception is answered as a JSON-RPC error
        assert result.error.data[WIRE_KEY] == sent
    else:
        assert result.meta[WIRE_KEY] == sent
    assert error.error.data[WIRE_KEY] == {"origin": "client", "reason": "not_found"}
    assert ok.meta is None or WIRE_KEY not in ok.meta


async def test_exception_events(recorded, kind):
    """A tool or handler that raised records what it raised (type, message, stack) on the server span."""
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        await provoke(client, call_tool("echo", {"text": "raise:boom"}), "")
        await provoke(client, get_prompt("broken"), "")
    echo = next(span for span in recorded.server_spans() if span.name == "tools/call echo")
    (event,) = [event for event in echo.events if event.name == "exception"]
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "raise:boom"
    assert "raise:boom" in event.attributes["exception.stacktrace"]
    broken = next(span for span in recorded.server_spans() if span.name == "prompts/get broken")
    (event,) = [event for event in broken.events if event.name == "exception"]
    assert "the prompt failed on purpose" in event.attributes["exception.stacktrace"]
    assert "RuntimeError" in event.attributes["exception.stacktrace"]
    for span in recorded.client_spans():
        assert not [event for event in span.events if event.name == "exception"]

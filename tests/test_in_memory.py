"""Spans and metrics for a real client session against a real server over in-memory streams."""

from __future__ import annotations

import gc
import re
import weakref
from typing import Any

import anyio
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from tests.apps.clients import in_memory
from tests.apps.servers import IS_V2, KINDS, announced_version, build, handshake_version, listing, sdk_types
from tests.conftest import instrumented

pytestmark = pytest.mark.anyio

SERVER_SCRIPT = [
    "initialize",
    "notifications/initialized",
    "tools/list",
    "tools/call add",
    "tools/call fail",
    "resources/list",
    "resources/read",
    "prompts/list",
    "prompts/get review",
    "completion/complete",
    "ping",
]
CLIENT_SCRIPT = [name for name in SERVER_SCRIPT if not name.startswith("notifications/")]


async def run_script(client: Any) -> None:
    await client.list_tools()
    assert (await client.call_tool("add", {"a": 2, "b": 3})).content[0].text == "5"
    failed = await client.call_tool("fail", {})
    assert getattr(failed, "is_error", None) or getattr(failed, "isError", None)
    await client.list_resources()
    await client.read_resource("demo://greeting")
    await client.list_prompts()
    await client.get_prompt("review", {"code": "print(1)"})
    await client.complete(
        sdk_types().PromptReference(type="ref/prompt", name="review"), {"name": "code", "value": "pr"}
    )
    await client.send_ping()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_one_server_and_one_client_span_per_message(recorded, kind):
    async with in_memory(build(kind)) as client:
        await run_script(client)

    assert [span.name for span in recorded.server_spans()] == SERVER_SCRIPT
    assert [span.name for span in recorded.client_spans()] == CLIENT_SCRIPT
    scopes = {span.instrumentation_scope.name for span in recorded.spans()}
    assert scopes == {"opentelemetry_instrumentation_mcp"}, "no SDK-built-in or duplicate spans"


async def test_logging_set_level_span(recorded):
    """``logging/setLevel`` (low-level servers register it; deprecated on 2.x but still served)."""
    import warnings

    async with in_memory(build("lowlevel")) as client:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The logging capability is deprecated")
            await client.set_logging_level("info")

    assert [span.name for span in recorded.server_spans()][-1] == "logging/setLevel"
    assert [span.name for span in recorded.client_spans()][-1] == "logging/setLevel"
    assert recorded.server_spans()[-1].status.status_code == StatusCode.UNSET


async def test_tool_call_server_span_attributes(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        await client.call_tool("add", {"a": 2, "b": 3})

    span = next(span for span in recorded.server_spans() if span.name == "tools/call add")
    attributes = dict(span.attributes)
    session_id = attributes.pop("mcp.session.id")
    assert re.fullmatch(r"[0-9a-f]{32}", session_id)
    request_id = attributes.pop("jsonrpc.request.id")
    assert isinstance(request_id, str) and request_id.isdigit()
    size = attributes.pop("mcp.response.size")
    assert isinstance(size, int) and 30 < size < 500
    assert attributes == {
        "mcp.method.name": "tools/call",
        "mcp.request.argument_keys": ("a", "b"),
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "mcp.protocol.version": handshake_version(),
        "mcp.client.name": "mcp",
        "mcp.client.version": "0.1.0",
        "mcp.server.name": f"{kind}-demo",
        "mcp.server.version": announced_version(kind),
    }
    assert span.kind == SpanKind.SERVER
    assert span.status.status_code == StatusCode.UNSET


async def test_shapes_and_sizes_never_values(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.get_prompt("review", {"code": "print(secret)"})
        await client.read_resource("demo://greeting")
        await client.list_tools()
        await client.call_tool("add", {"b": 2, "a": 1})

    by_name = {span.name: span for span in recorded.server_spans()}
    assert by_name["prompts/get review"].attributes["mcp.request.argument_keys"] == ("code",)
    assert by_name["tools/call add"].attributes["mcp.request.argument_keys"] == ("a", "b")
    for name in ("prompts/get review", "resources/read", "tools/call add"):
        assert isinstance(by_name[name].attributes["mcp.response.size"], int)
    assert "mcp.response.size" not in by_name["tools/list"].attributes
    assert "mcp.request.argument_keys" not in by_name["tools/list"].attributes
    for span in recorded.spans():
        assert "print(secret)" not in str(dict(span.attributes))


LISTED = {
    "lowlevel": ("add", "fail", "slow", "fetch", "billing", "keys", "note", "echo", "image", "ask"),
    "highlevel": ("add", "fail", "slow", "fetch", "billing", "echo", "note"),
}


@pytest.mark.parametrize("intent", [True, False])
async def test_a_tools_list_span_names_the_listed_tools_in_order(kind, intent):
    with instrumented(intent=intent) as recorded:
        async with in_memory(build(kind)) as client:
            answer = await client.list_tools()
            await client.call_tool("add", {"a": 1, "b": 2})

    assert tuple(tool.name for tool in answer.tools) == LISTED[kind]
    server = {span.name: span for span in recorded.server_spans()}
    assert server["tools/list"].attributes["mcp.tools.listed"] == LISTED[kind]
    assert "mcp.tools.listed" not in server["tools/call add"].attributes
    client = {span.name: span for span in recorded.client_spans()}
    assert "mcp.tools.listed" not in client["tools/list"].attributes


async def test_a_long_tool_listing_is_cut_at_the_first_1000_names(recorded):
    async with in_memory(listing(1005)) as client:
        assert len((await client.list_tools()).tools) == 1005

    (span,) = [span for span in recorded.server_spans() if span.name == "tools/list"]
    assert span.attributes["mcp.tools.listed"] == tuple(f"tool_{i:04d}" for i in range(1000))


async def test_every_message_of_a_session_shares_its_session_id(recorded, kind):
    async with in_memory(build(kind)) as client:
        await run_script(client)
    async with in_memory(build(kind)) as client:
        await client.send_ping()

    ids = [span.attributes["mcp.session.id"] for span in recorded.server_spans()]
    assert len(set(ids[: len(SERVER_SCRIPT)])) == 1
    assert len(set(ids)) == 2, "a second connection gets its own id"


async def test_initialize_span_carries_negotiated_version_and_client(recorded, kind):
    async with in_memory(build(kind), client_info=sdk_types().Implementation(name="Claude Desktop", version="1.2.3")):
        pass

    initialize = recorded.server_spans()[0]
    assert initialize.name == "initialize"
    assert initialize.attributes["mcp.protocol.version"] == handshake_version()
    assert initialize.attributes["mcp.client.name"] == "Claude Desktop"
    assert initialize.attributes["mcp.client.version"] == "1.2.3"
    assert "gen_ai.tool.name" not in initialize.attributes


async def test_server_span_is_child_of_client_span(recorded, kind):
    async with in_memory(build(kind)) as client:
        await run_script(client)

    clients = {span.context.span_id: span for span in recorded.client_spans()}
    for server in recorded.server_spans():
        if server.name.startswith("notifications/"):
            assert server.parent is None
            continue
        parent = clients[server.parent.span_id]
        assert parent.name == server.name
        assert parent.attributes["jsonrpc.request.id"] == server.attributes["jsonrpc.request.id"]
        assert parent.context.trace_id == server.context.trace_id
        assert server.parent.is_remote


async def test_prompt_and_resource_attributes(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.get_prompt("review", {"code": "x"})
        await client.read_resource("demo://greeting")

    for spans in (recorded.server_spans(), recorded.client_spans()):
        prompt = next(span for span in spans if span.attributes["mcp.method.name"] == "prompts/get")
        assert prompt.name == "prompts/get review"
        assert prompt.attributes["gen_ai.prompt.name"] == "review"
        assert "gen_ai.operation.name" not in prompt.attributes
        read = next(span for span in spans if span.attributes["mcp.method.name"] == "resources/read")
        assert read.name == "resources/read"
        assert read.attributes["mcp.resource.uri"] == "demo://greeting"


async def test_tool_error_marks_both_spans(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        await client.call_tool("fail", {})

    for span in (recorded.server_spans()[-1], recorded.client_spans()[-1]):
        assert span.name == "tools/call fail"
        assert span.attributes["error.type"] == "tool_error"
        assert "rpc.response.status_code" not in span.attributes
        assert span.status.status_code == StatusCode.ERROR


async def test_jsonrpc_error_carries_the_code_the_client_received(recorded, kind):
    errors = pytest.importorskip("mcp.shared.exceptions")
    error_class = getattr(errors, "MCPError", None) or errors.McpError
    async with in_memory(build(kind)) as client:
        with pytest.raises(error_class) as raised:
            await client.read_resource("demo://missing")
    code = raised.value.error.code

    server, client_span = recorded.server_spans()[-1], recorded.client_spans()[-1]
    for span in (server, client_span):
        assert span.name == "resources/read"
        assert span.attributes["error.type"] == str(code)
        assert span.attributes["rpc.response.status_code"] == str(code)
    assert client_span.status.status_code == StatusCode.ERROR
    assert client_span.status.description == raised.value.error.message
    # A missing resource is the client's mistake whatever code the server kind answers it with.
    assert server.attributes["mcp.failure.origin"] == "client"
    assert server.status.status_code == StatusCode.UNSET


async def test_operation_duration_metrics(recorded, kind):
    async with in_memory(build(kind)) as client:
        await run_script(client)

    for name, script in (
        ("mcp.server.operation.duration", SERVER_SCRIPT),
        ("mcp.client.operation.duration", CLIENT_SCRIPT),
    ):
        metric = recorded.metric(name)
        assert metric.unit == "s"
        points = metric.data.data_points
        assert sum(point.count for point in points) == len(script)
        for point in points:
            assert point.explicit_bounds == (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
            assert not {"mcp.session.id", "jsonrpc.request.id", "mcp.client.version", "user.id"} & set(point.attributes)
        add = [p for p in points if p.attributes.get("gen_ai.tool.name") == "add"]
        assert len(add) == 1 and add[0].count == 1
        assert dict(add[0].attributes) == {
            "mcp.method.name": "tools/call",
            "mcp.client.name": "mcp",
            "gen_ai.tool.name": "add",
            "gen_ai.operation.name": "execute_tool",
            "mcp.protocol.version": handshake_version(),
        }
        failed = next(p for p in points if p.attributes.get("gen_ai.tool.name") == "fail")
        assert failed.attributes["error.type"] == "tool_error"


async def test_session_duration_recorded_once_per_side_when_the_session_closes(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.send_ping()
        await anyio.sleep(0.05)
        await client.send_ping()  # a session lasts from its first message to its last
        assert recorded.points("mcp.server.session.duration") == []

    for name in ("mcp.server.session.duration", "mcp.client.session.duration"):
        points = recorded.points(name)
        assert [point.count for point in points] == [1], name
        assert points[0].sum >= 0.05
        assert "error.type" not in points[0].attributes
        client_name = recorded.server_spans()[0].attributes["mcp.client.name"]
        assert points[0].attributes["mcp.client.name"] == client_name, "sessions per client"


async def test_cancelled_request_ends_its_spans(recorded, kind):
    server = build(kind)
    async with in_memory(server) as client:
        await client.list_tools()
        with anyio.move_on_after(0.2):
            await client.call_tool("slow", {"seconds": 30})
        await client.send_ping()

    await anyio.sleep(0.1)
    client_slow = next(span for span in recorded.client_spans() if span.name == "tools/call slow")
    assert client_slow.attributes["error.type"] == "cancelled"
    assert client_slow.status.status_code == StatusCode.ERROR
    if IS_V2:  # 2.x tells the server (notifications/cancelled); 1.x abandons the request silently
        server_slow = next(span for span in recorded.server_spans() if span.name == "tools/call slow")
        assert server_slow.attributes["error.type"] == "cancelled"
        (cancel,) = [span for span in recorded.server_spans() if span.name == "notifications/cancelled"]
        assert "jsonrpc.request.id" not in cancel.attributes


async def test_server_spans_end_when_the_connection_drops_mid_request(recorded, kind):
    server = build(kind)
    with anyio.move_on_after(0.3):
        async with in_memory(server) as client:
            await client.list_tools()
            await client.call_tool("slow", {"seconds": 30})

    slow = [span for span in recorded.server_spans() if span.name == "tools/call slow"]
    assert len(slow) == 1
    assert slow[0].attributes["error.type"] == "cancelled"
    assert slow[0].end_time is not None


async def test_duration_exemplars_point_at_the_operation_span(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        await client.call_tool("add", {"a": 1, "b": 2})

    points = recorded.snapshot()
    for name, spans in (
        ("mcp.server.operation.duration", recorded.server_spans()),
        ("mcp.client.operation.duration", recorded.client_spans()),
    ):
        (span,) = [span for span in spans if span.name == "tools/call add"]
        (point,) = [p for p in points[name] if p.attributes.get("gen_ai.tool.name") == "add"]
        assert [(e.trace_id, e.span_id) for e in point.exemplars] == [(span.context.trace_id, span.context.span_id)]


async def test_listings_name_the_prompts_and_the_tools_said_to_be_destructive(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        prompts = await client.list_prompts()

    server = {span.name: span for span in recorded.server_spans()}
    assert server["tools/list"].attributes["mcp.tools.destructive"] == ("billing",), (
        "echo is read-only: not destructive"
    )
    assert server["prompts/list"].attributes["mcp.prompts.listed"] == tuple(prompt.name for prompt in prompts.prompts)
    assert len(prompts.prompts) >= 1
    assert "mcp.prompts.listed" not in server["tools/list"].attributes
    assert "mcp.tools.destructive" not in server["prompts/list"].attributes


async def test_the_instrumentation_keeps_no_session_alive(recorded, kind):
    """What the adapters keep per SDK object (client sessions, their dispatchers, server connections) goes with it."""
    async with in_memory(build(kind)) as client:
        await client.call_tool("add", {"a": 2, "b": 3})
        collected = weakref.ref(client)
    del client
    gc.collect()

    assert collected() is None
    assert "tools/call add" in [span.name for span in recorded.client_spans()]  # the session was instrumented

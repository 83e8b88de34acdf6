"""Requests a server sends its client while handling a message (sampling, roots): a CLIENT span on the
server, in the session of the message it handles, and a SERVER span on the client for the callback that
answers it, the two joined by the trace context the request carries in ``_meta``; no SDK span besides."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from tests.apps.clients import in_memory
from tests.apps.http import http_client, serving
from tests.apps.servers import build, sdk_types

pytestmark = pytest.mark.anyio


async def sampling(context: Any, params: Any) -> Any:
    types = sdk_types()
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="sampled"), model="m"
    )


async def roots(context: Any) -> Any:
    types = sdk_types()
    return types.ListRootsResult(roots=[types.Root(uri="file:///work", name="work")])


CALLBACKS = {"sampling_callback": sampling, "list_roots_callback": roots}


def check(recorded: Any) -> None:
    spans = recorded.spans()
    assert not [span for span in spans if span.instrumentation_scope.name == "mcp-python-sdk"], "no SDK span"
    (tool,) = [span for span in spans if span.name == "tools/call ask" and span.kind is SpanKind.SERVER]
    session_id = tool.attributes["mcp.session.id"]
    for method in ("sampling/createMessage", "roots/list"):
        (sent,) = [span for span in spans if span.name == method and span.kind is SpanKind.CLIENT]
        (answered,) = [span for span in spans if span.name == method and span.kind is SpanKind.SERVER]
        assert sent.parent.span_id == tool.context.span_id, "sent while the tool call is handled"
        assert answered.parent.span_id == sent.context.span_id, "the client's callback continues the server's trace"
        assert sent.attributes["mcp.method.name"] == method
        assert sent.attributes["mcp.session.id"] == session_id
        assert sent.attributes["mcp.client.name"] == tool.attributes["mcp.client.name"]
        assert isinstance(sent.attributes["jsonrpc.request.id"], str)
        assert answered.attributes["jsonrpc.request.id"] == sent.attributes["jsonrpc.request.id"]
        assert "error.type" not in sent.attributes and "error.type" not in answered.attributes
    client_methods = [p.attributes["mcp.method.name"] for p in recorded.points("mcp.client.operation.duration")]
    assert {"sampling/createMessage", "roots/list"} <= set(client_methods)


async def test_in_memory(recorded):
    async with in_memory(build("lowlevel"), **CALLBACKS) as client:
        await client.list_tools()
        result = await client.call_tool("ask", {})
    assert result.content[0].text == "sampled (1 roots)"
    check(recorded)


async def test_over_streamable_http(recorded):
    with serving(build("lowlevel")) as server:
        async with http_client(server.url, **CALLBACKS) as client:
            await client.list_tools()
            result = await client.call_tool("ask", {})
    assert result.content[0].text == "sampled (1 roots)"
    check(recorded)

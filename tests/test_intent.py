"""User intent: advertised on every tool, taken out of every call, recorded on the span."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry_instrumentation_mcp import MCPInstrumentor
from opentelemetry_instrumentation_mcp.intent import DEFAULT_DESCRIPTION, MAX_INTENT_LENGTH
from tests.apps import servers
from tests.apps.clients import in_memory
from tests.apps.servers import KINDS, build

pytestmark = pytest.mark.anyio

WHY = "The agent adds two amounts to total the user's invoice."


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def schema_of(tool: Any) -> dict[str, Any]:
    return getattr(tool, "input_schema", None) or tool.inputSchema


def text_of(result: Any) -> str:
    return result.content[0].text


def is_error(result: Any) -> bool:
    """``is_error`` on 2.x, ``isError`` on 1.x (read only there: fastmcp warns on the old name)."""
    value = getattr(result, "is_error", None)
    return bool(getattr(result, "isError", None) if value is None else value)


def server_call(recorded, tool: str):
    (span,) = [s for s in recorded.server_spans() if s.attributes.get("gen_ai.tool.name") == tool]
    return span


async def test_every_tool_asks_for_the_intent(recorded, kind):
    originals = copy.deepcopy([servers.ADD_SCHEMA, servers.KEYS_SCHEMA, servers.NOTE_SCHEMA])
    async with in_memory(build(kind)) as client:
        first = (await client.list_tools()).tools
        second = (await client.list_tools()).tools

    for tool in first:
        schema = schema_of(tool)
        if tool.name == "note":
            continue
        assert schema["properties"]["context"] == {"type": "string", "description": DEFAULT_DESCRIPTION}
        assert schema["required"][-1] == "context"
        assert schema["required"].count("context") == 1
    assert [schema_of(t) for t in first] == [schema_of(t) for t in second], "listing twice adds it once"
    assert originals == [servers.ADD_SCHEMA, servers.KEYS_SCHEMA, servers.NOTE_SCHEMA], "the server's schemas untouched"


async def test_the_tool_never_sees_the_intent_and_the_span_records_it(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        result = await client.call_tool("add", {"a": 2, "b": 3, "context": WHY})
        if kind == "lowlevel":
            keys = await client.call_tool("keys", {"x": "1", "context": WHY})
            assert text_of(keys) == "x"  # neither received nor rejected (keys forbids unknown arguments)

    assert text_of(result) == "5" and not is_error(result)
    span = server_call(recorded, "add")
    assert span.attributes["mcp.user_intent"] == WHY
    assert span.attributes["mcp.request.argument_keys"] == ("a", "b")


async def test_a_call_without_the_intent_works_as_before(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        result = await client.call_tool("add", {"a": 2, "b": 3})
    assert text_of(result) == "5" and not is_error(result)
    assert "mcp.user_intent" not in server_call(recorded, "add").attributes


async def test_a_tool_with_its_own_context_parameter_is_left_alone(recorded, kind):
    async with in_memory(build(kind)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        result = await client.call_tool("note", {"context": "the tool's own value"})

    schema = schema_of(tools["note"])
    assert schema["properties"]["context"].get("description") != DEFAULT_DESCRIPTION
    assert schema["required"] == ["context"]
    assert text_of(result) == "the tool's own value"
    span = server_call(recorded, "note")
    assert "mcp.user_intent" not in span.attributes
    assert span.attributes["mcp.request.argument_keys"] == ("context",)


async def test_long_intents_are_truncated(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        await client.call_tool("add", {"a": 1, "b": 1, "context": "x" * 5000})
    intent = server_call(recorded, "add").attributes["mcp.user_intent"]
    assert len(intent) == MAX_INTENT_LENGTH and intent.endswith("…")


async def test_a_tool_never_listed_by_this_server_is_left_alone(recorded):
    async with in_memory(build("highlevel")) as client:
        result = await client.call_tool("add", {"a": 2, "b": 3, "context": WHY})
    assert text_of(result) == "5"
    assert "mcp.user_intent" not in server_call(recorded, "add").attributes


async def listed_schema(kind: str, **options: Any) -> tuple[dict[str, Any], Any]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = MCPInstrumentor()
    instrumentor.instrument(tracer_provider=provider, **options)
    try:
        async with in_memory(build(kind)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            await client.call_tool("add", {"a": 1, "b": 2, "why": WHY})
    finally:
        instrumentor.uninstrument()
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "tools/call add" and s.kind.name == "SERVER"]
    return schema_of(tools["add"]), span


async def test_options_rename_and_describe_the_parameter(kind):
    schema, span = await listed_schema(kind, intent_parameter="why", intent_description="Why?")
    assert schema["properties"]["why"] == {"type": "string", "description": "Why?"}
    assert "context" not in schema["properties"]
    assert span.attributes["mcp.user_intent"] == WHY


async def test_off_by_option_or_environment(kind, monkeypatch):
    schema, span = await listed_schema(kind, intent=False)
    assert "context" not in schema["properties"] and "mcp.user_intent" not in span.attributes
    monkeypatch.setenv("OTEL_INSTRUMENTATION_MCP_INTENT", "false")
    schema, _ = await listed_schema(kind)
    assert "context" not in schema["properties"]
    monkeypatch.setenv("OTEL_INSTRUMENTATION_MCP_INTENT", "true")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_MCP_INTENT_PARAMETER", "why")
    schema, span = await listed_schema(kind)
    assert "why" in schema["properties"] and span.attributes["mcp.user_intent"] == WHY

"""The OpenInference option: the attributes Phoenix and Arize read, derived from ours; off by default."""

from __future__ import annotations

import json

import pytest

from tests.apps.clients import in_memory
from tests.apps.servers import KINDS, build
from tests.conftest import instrumented

pytestmark = pytest.mark.anyio

OPENINFERENCE_KEYS = {"openinference.span.kind", "session.id", "tool.name", "input.value", "input.mime_type",
                      "output.value", "output.mime_type", "metadata"}  # fmt: skip


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def traffic(kind: str) -> None:
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        await client.call_tool("echo", {"text": "hello", "context": "The agent greets."})
        await client.call_tool("fail", {})
        await client.read_resource("demo://greeting")
        await client.get_prompt("review", {"code": "x = 1"})


def by_name(recorded, kind):
    return {span.name: span for span in recorded.spans(kind)}


async def test_off_by_default(kind):
    with instrumented(capture_content=True) as recorded:
        await traffic(kind)
    spans = recorded.spans()
    assert len(spans) >= 12
    assert all(not OPENINFERENCE_KEYS & set(span.attributes) for span in spans)


@pytest.mark.parametrize("switch", ["option", "environment"])
async def test_span_kinds_sessions_and_inputs(kind, switch, monkeypatch):
    from opentelemetry.trace import SpanKind

    options = {"openinference": True} if switch == "option" else {}
    if switch == "environment":
        monkeypatch.setenv("OTEL_INSTRUMENTATION_MCP_OPENINFERENCE", "true")
    with instrumented(capture_content=True, **options) as recorded:
        await traffic(kind)

    server = by_name(recorded, SpanKind.SERVER)
    kinds = {name: span.attributes["openinference.span.kind"] for name, span in server.items()}
    assert kinds == {
        "initialize": "CHAIN", "notifications/initialized": "CHAIN", "tools/list": "CHAIN",
        "tools/call echo": "TOOL", "tools/call fail": "TOOL", "resources/read": "RETRIEVER",
        "prompts/get review": "PROMPT",
    }  # fmt: skip
    session_ids = {span.attributes["session.id"] for span in server.values()}
    assert session_ids == {server["initialize"].attributes["mcp.session.id"]}, "one session, Phoenix's key"

    echo = server["tools/call echo"].attributes
    assert echo["tool.name"] == "echo"
    assert (echo["input.value"], echo["input.mime_type"]) == (echo["gen_ai.tool.call.arguments"], "application/json")
    assert json.loads(echo["input.value"]) == {"text": "hello"}, "the intent is not an input"
    assert (echo["output.value"], echo["output.mime_type"]) == (echo["gen_ai.tool.call.result"], "application/json")
    metadata = json.loads(echo["metadata"])
    assert metadata == {"mcp.client.name": echo["mcp.client.name"], "mcp.user_intent": "The agent greets."}

    fail = server["tools/call fail"].attributes
    failed = json.loads(fail["metadata"])
    assert failed["mcp.failure.origin"] == fail["mcp.failure.origin"] == "server"
    assert failed["mcp.failure.reason"] == fail["mcp.failure.reason"]
    review = server["prompts/get review"].attributes
    assert json.loads(review["input.value"]) == {"code": "x = 1"}
    assert "output.value" not in review and "input.value" not in server["tools/list"].attributes

    client = by_name(recorded, SpanKind.CLIENT)
    assert client["tools/call echo"].attributes["openinference.span.kind"] == "TOOL"
    assert client["tools/call echo"].attributes["tool.name"] == "echo"
    assert client["resources/read"].attributes["openinference.span.kind"] == "RETRIEVER"


async def test_without_content_capture_no_input_or_output():
    with instrumented(openinference=True) as recorded:
        await traffic(KINDS[0])
    for span in recorded.spans():
        assert span.attributes["openinference.span.kind"] in {"CHAIN", "TOOL", "PROMPT", "RETRIEVER"}
        assert not {"input.value", "output.value"} & set(span.attributes)

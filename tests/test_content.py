"""Content capture (opt-in) and redaction (always), on the exported spans themselves."""

from __future__ import annotations

import json
import logging

import pytest

from opentelemetry_instrumentation_mcp import UserIdentity
from opentelemetry_instrumentation_mcp.content import MAX_CONTENT_LENGTH
from tests.apps.clients import in_memory
from tests.apps.servers import KINDS, build
from tests.conftest import instrumented

pytestmark = pytest.mark.anyio

SECRET = "sk-live-0123456789"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def server_span(recorded, name: str):
    (span,) = [span for span in recorded.server_spans() if span.name == name]
    return span


async def test_nothing_is_captured_by_default(recorded, kind):
    async with in_memory(build(kind)) as client:
        await client.list_tools()
        await client.call_tool("echo", {"text": "hello", "context": "The agent greets."})
        await client.get_prompt("review", {"code": "x = 1"})
    for span in recorded.spans():
        assert not [key for key in span.attributes if key.startswith(("gen_ai.tool.call.", "gen_ai.prompt.variable."))]
    assert server_span(recorded, "tools/call echo").attributes["mcp.user_intent"] == "The agent greets."


@pytest.mark.parametrize(("value", "captured"), [("TRUE", True), ("1", True), (" yes ", True), ("off", False)])
async def test_the_environment_switch_reads_the_common_spellings(value, captured, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    with instrumented() as recorded:
        async with in_memory(build("highlevel")) as client:
            await client.call_tool("echo", {"text": "hello", "context": "The agent greets."})
    attributes = server_span(recorded, "tools/call echo").attributes
    assert ("gen_ai.tool.call.arguments" in attributes) is captured


async def test_an_unusable_environment_switch_is_logged_and_capture_stays_off(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "maybe")
    with caplog.at_level(logging.WARNING, logger="opentelemetry_instrumentation_mcp"), instrumented() as recorded:
        async with in_memory(build("highlevel")) as client:
            await client.call_tool("echo", {"text": "hello", "context": "x"})
    assert "gen_ai.tool.call.arguments" not in server_span(recorded, "tools/call echo").attributes
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT is one of 1, true, yes, on or 0, false, no, off "
        "(any case), not 'maybe'; false is used"
    ]


@pytest.mark.parametrize("switch", ["option", "environment"])
async def test_capture_records_arguments_results_and_prompt_variables(kind, switch, monkeypatch):
    options = {"capture_content": True} if switch == "option" else {}
    if switch == "environment":
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    with instrumented(**options) as recorded:
        async with in_memory(build(kind)) as client:
            await client.list_tools()
            await client.call_tool("echo", {"text": "hello", "context": "The agent greets."})
            await client.get_prompt("review", {"code": "x = 1"})

    echo = server_span(recorded, "tools/call echo")
    assert json.loads(echo.attributes["gen_ai.tool.call.arguments"]) == {"text": "hello"}, (
        "the intent is not an argument"
    )
    result = json.loads(echo.attributes["gen_ai.tool.call.result"])
    assert result["content"][0] == {"type": "text", "text": "hello"}
    assert server_span(recorded, "prompts/get review").attributes["gen_ai.prompt.variable.code"] == "x = 1"


async def test_binary_content_is_a_marker_and_long_values_are_cut():
    with instrumented(capture_content=True) as recorded:
        async with in_memory(build("lowlevel")) as client:
            await client.list_tools()
            await client.call_tool("image", {})
            await client.call_tool("echo", {"text": "y" * 50_000})

    image = json.loads(server_span(recorded, "tools/call image").attributes["gen_ai.tool.call.result"])
    assert image["content"][0]["data"] == "<image/png, 70 bytes>"
    long_result = server_span(recorded, "tools/call echo").attributes["gen_ai.tool.call.result"]
    assert len(long_result) == MAX_CONTENT_LENGTH and long_result.endswith("…")


def redact(text: str) -> str:
    return text.replace(SECRET, "[redacted]")


def identify(request) -> UserIdentity:
    return UserIdentity("u-1", user_name=f"Alice {SECRET}")


def exported(recorded) -> str:
    return "\n".join(span.to_json() for span in recorded.spans())


async def test_a_secret_in_every_captured_field_never_reaches_a_span(kind):
    with instrumented(capture_content=True, redact=redact, identify=identify) as recorded:
        async with in_memory(build(kind)) as client:
            await client.list_tools()
            await client.call_tool("echo", {"text": f"token {SECRET}", "context": f"The agent uses {SECRET}."})
            try:
                await client.call_tool("echo", {"text": f"raise: {SECRET}"})
            except Exception as error:  # noqa: BLE001 - the 2.x low-level server answers a JSON-RPC error
                assert SECRET in str(error), "what the client sees is untouched"  # noqa: PT017 - only some kinds raise
            await client.get_prompt("review", {"code": f"key = '{SECRET}'"})

    everything = exported(recorded)
    assert SECRET not in everything
    assert "[redacted]" in everything
    echo = next(span for span in recorded.server_spans() if span.name == "tools/call echo")
    assert echo.attributes["mcp.user_intent"] == "The agent uses [redacted]."
    assert echo.attributes["user.name"] == "Alice [redacted]"


async def test_a_redact_hook_that_raises_drops_the_values(kind, caplog):
    def broken(text: str) -> str:
        raise RuntimeError("redactor down")

    with (
        instrumented(capture_content=True, redact=broken) as recorded,
        caplog.at_level(logging.WARNING, logger="opentelemetry_instrumentation_mcp"),
    ):
        async with in_memory(build(kind)) as client:
            await client.list_tools()
            result = await client.call_tool("echo", {"text": SECRET, "context": SECRET})
    assert result.content[0].text == SECRET, "the server answers as ever"
    assert SECRET not in exported(recorded)
    echo = server_span(recorded, "tools/call echo")
    assert "mcp.user_intent" not in echo.attributes and "gen_ai.tool.call.result" not in echo.attributes
    assert len([r for r in caplog.records if "redact hook" in r.getMessage()]) == 1

"""Instrument / uninstrument lifecycle, suppression, transparency and failure isolation."""

from __future__ import annotations

import logging
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

import anyio
import pytest
from mcp import ClientSession
from mcp.shared.memory import create_client_server_memory_streams
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from opentelemetry_instrumentation_mcp import MCPInstrumentor
from opentelemetry_instrumentation_mcp.failures import WIRE_KEY
from tests.apps.clients import in_memory
from tests.apps.servers import IS_V2, KINDS, build, runnable, without_intent_property

pytestmark = pytest.mark.anyio

OUR_SCOPE = "opentelemetry_instrumentation_mcp"

# Functions each adapter wraps (module, attribute path).
PATCHED = (
    [
        ("mcp.server.runner", "ServerRunner.__init__"),
        ("mcp.client.session", "ClientSession.__aenter__"),
        ("mcp.shared.jsonrpc_dispatcher", "JSONRPCDispatcher.send_raw_request"),
        ("mcp.shared.direct_dispatcher", "DirectDispatcher.send_raw_request"),
        ("mcp.shared.jsonrpc_dispatcher", "otel_span"),
        ("mcp.shared.jsonrpc_dispatcher", "JSONRPCDispatcher._write_error"),
        ("mcp.client.session", "ClientSession._on_request"),
        ("mcp.server.stdio", "stdio_server"),
    ]
    if IS_V2
    else [
        ("mcp.server.lowlevel.server", "Server._handle_message"),
        ("mcp.server.session", "ServerSession._received_request"),
        ("mcp.shared.session", "RequestResponder.respond"),
        ("mcp.client.session", "ClientSession.send_request"),
        ("mcp.server.session", "ServerSession.send_request"),
        ("mcp.client.session", "ClientSession._received_request"),
        ("mcp.server.streamable_http", "StreamableHTTPServerTransport.connect"),
        ("mcp.server.stdio", "stdio_server"),
    ]
)


def resolve(module: str, path: str) -> Any:
    target: Any = import_module(module)
    for part in path.split("."):
        target = getattr(target, part)
    return target


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def script(server: Any) -> list[Any]:
    """What a client sees of a fixed conversation: results and errors, as plain data."""
    seen: list[Any] = []
    async with in_memory(server) as client:
        for call in (
            client.list_tools,
            lambda: client.call_tool("add", {"a": 1, "b": 2}),
            lambda: client.call_tool("fail", {}),
            lambda: client.call_tool("add", {"a": "not a number"}),
            lambda: client.read_resource("demo://greeting"),
            lambda: client.read_resource("demo://missing"),
            lambda: client.get_prompt("review", {"code": "x"}),
            client.send_ping,
        ):
            try:
                seen.append((await call()).model_dump())
            except Exception as error:  # noqa: BLE001 - the error is part of what the client sees
                details = getattr(error, "error", None)
                seen.append(
                    (type(error).__name__, str(error), getattr(details, "code", None), getattr(details, "data", None))
                )
    return seen


def test_entry_point_and_dependencies():
    (entry,) = [ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "mcp_analytics"]
    assert entry.load() is MCPInstrumentor
    instrumentor = MCPInstrumentor()
    assert list(instrumentor.instrumentation_dependencies()) == ["mcp >= 1.20, < 3"]
    assert all(ep.name != "mcp" for ep in entry_points(group="opentelemetry_instrumentor") if ep.value == entry.value)


async def test_uninstrument_restores_every_patch_and_stops_spans(kind):
    originals = {target: resolve(*target) for target in PATCHED}
    server = build(kind)
    sdk_chain = list(runnable(server).middleware) if IS_V2 else None
    recorded_provider = TracerProvider()
    instrumentor = MCPInstrumentor()
    instrumentor.instrument(tracer_provider=recorded_provider)
    for target, original in originals.items():
        assert resolve(*target) is not original, target
    async with in_memory(server) as client:
        await client.send_ping()
    if IS_V2:
        assert runnable(server).middleware[0] is not sdk_chain[0], "ours replaced the SDK middleware"
    instrumentor.uninstrument()

    for target, original in originals.items():
        assert resolve(*target) is original, target
    if IS_V2:
        assert runnable(server).middleware == sdk_chain
        assert runnable(server).middleware[0] is sdk_chain[0]


async def test_uninstrumented_session_records_nothing(recorded, kind):
    MCPInstrumentor().uninstrument()
    async with in_memory(build(kind)) as client:
        await client.call_tool("add", {"a": 1, "b": 2})
    assert recorded.spans() == []
    MCPInstrumentor().instrument(tracer_provider=recorded.tracer_provider)


async def test_servers_built_before_and_after_instrument_are_both_traced(kind):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    before = build(kind, name="built-before")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = MCPInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        after = build(kind, name="built-after")
        for server in (before, after):
            async with in_memory(server) as client:
                await client.call_tool("add", {"a": 1, "b": 2})
    finally:
        instrumentor.uninstrument()
    calls = [
        span for span in exporter.get_finished_spans() if span.name == "tools/call add" and span.kind.name == "SERVER"
    ]
    assert sorted(span.attributes["mcp.server.name"] for span in calls) == ["built-after", "built-before"]


async def test_suppressed_client_requests_make_no_client_span_and_carry_no_context(recorded, kind):
    async with in_memory(build(kind)) as client:
        with suppress_instrumentation():
            await client.call_tool("add", {"a": 1, "b": 2})

    assert [span.name for span in recorded.client_spans()] == ["initialize"]
    # In process, 2.x hands the sender's context (and so the suppression) to the server's handler;
    # 1.x does not: its server span exists, and nothing was injected for it to continue.
    calls = [span for span in recorded.server_spans() if span.name == "tools/call add"]
    assert [span.parent for span in calls] == ([] if IS_V2 else [None])


def without_intent(seen: list[Any]) -> list[Any]:
    """What the client saw, less the one documented change: the ``context`` property on listed tools."""
    cleaned = []
    for item in seen:
        if isinstance(item, dict) and "tools" in item:
            tools = []
            for tool in item["tools"]:
                key = "input_schema" if "input_schema" in tool else "inputSchema"
                schema = without_intent_property(tool[key])
                if schema is None:
                    tools.append(tool)  # the tool's own parameter: left alone
                    continue
                tools.append({**tool, key: schema})
            cleaned.append({**item, "tools": tools})
        else:
            cleaned.append(item)
    return cleaned


def without_verdicts(seen: list[Any]) -> list[Any]:
    """What the client saw, less the other documented change: the server's verdict on failed answers, under
    one namespaced key of a result's ``_meta`` or an error's ``data`` (a container it alone filled is None again)."""

    def strip(container: Any) -> Any:
        if not isinstance(container, dict) or WIRE_KEY not in container:
            return container
        rest = {key: value for key, value in container.items() if key != WIRE_KEY}
        return rest or None

    cleaned = []
    for item in seen:
        if isinstance(item, dict):
            cleaned.append({**item, "meta": strip(item.get("meta"))})
        elif isinstance(item, tuple):
            cleaned.append((*item[:3], strip(item[3])))
        else:
            cleaned.append(item)
    return cleaned


async def plain_script(kind: str) -> list[Any]:
    MCPInstrumentor().uninstrument()
    try:
        return await script(build(kind))
    finally:
        MCPInstrumentor().instrument(tracer_provider=TracerProvider())


async def test_what_clients_see_is_unchanged_by_instrumentation(recorded, kind):
    instrumented = await script(build(kind))
    plain = await plain_script(kind)
    assert instrumented != plain, "tools/list advertises the intent argument"
    assert without_verdicts(instrumented) != instrumented, "failed answers carry the verdict"
    assert without_verdicts(without_intent(instrumented)) == plain
    assert len(recorded.server_spans()) > 0


async def test_with_intent_off_clients_see_the_same_but_for_the_verdict(kind):
    instrumentor = MCPInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), intent=False)
    try:
        instrumented = await script(build(kind))
    finally:
        instrumentor.uninstrument()
    assert without_verdicts(instrumented) == await script(build(kind))


class BrokenProcessor(SpanProcessor):
    """A span processor that fails on every span: the instrumentation's own failure."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("broken span processor")


async def test_failing_instrumentation_never_reaches_the_server_or_client(kind, caplog):
    from opentelemetry_instrumentation_mcp.adapters import _wrapping

    _wrapping._internal_errors.reset()  # each place logs once per process: start from a clean slate
    expected = await script(build(kind))
    provider = TracerProvider()
    provider.add_span_processor(BrokenProcessor())
    instrumentor = MCPInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with caplog.at_level(logging.WARNING, logger="opentelemetry_instrumentation_mcp"):
            assert without_verdicts(without_intent(await script(build(kind)))) == expected
    finally:
        instrumentor.uninstrument()
    warnings = [r for r in caplog.records if r.name == "opentelemetry_instrumentation_mcp"]
    assert warnings, "the failure is logged"
    assert len({r.getMessage() for r in warnings}) == len(warnings), "each failure place is logged once"


class ServerBug(Exception):
    pass


def leaves_of(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves_of(inner)]
    return [error]


async def test_server_exceptions_propagate_unchanged(recorded):
    """With ``raise_exceptions=True`` the SDK re-raises a handler's exception: it must be the very same object."""
    bug = ServerBug("the server's own bug")
    server = runnable(build("lowlevel"))
    if IS_V2:
        import mcp_types

        async def broken(ctx: Any, params: Any) -> Any:
            raise bug

        server.add_request_handler("resources/read", mcp_types.ReadResourceRequestParams, broken)
    else:

        @server.read_resource()
        async def broken(uri: Any) -> Any:
            raise bug

    # PT011, PT012: the bug comes out of the task group, wrapped in a group whose type depends on the SDK line.
    with pytest.raises(BaseException) as raised:  # noqa: PT011, PT012
        async with (
            create_client_server_memory_streams() as (client_streams, server_streams),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(
                lambda: server.run(*server_streams, server.create_initialization_options(), raise_exceptions=True)
            )
            async with ClientSession(*client_streams) as client:
                await client.initialize()
                with anyio.fail_after(5):
                    await client.read_resource("demo://greeting")
    assert any(leaf is bug for leaf in leaves_of(raised.value))
    read = [span for span in recorded.server_spans() if span.name == "resources/read"]
    assert len(read) == 1 and read[0].end_time is not None

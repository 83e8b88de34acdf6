"""The analytics exporter: mapping, batching, retries and failure isolation, against a real HTTP endpoint."""

from __future__ import annotations

import socket
import time
from importlib.metadata import entry_points

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from mcp_analytics.store import Window
from opentelemetry.exporter.mcp_analytics import MCPAnalyticsExporter, install
from opentelemetry.exporter.mcp_analytics.events import is_analytics_span
from opentelemetry_instrumentation_mcp import publish_custom_event
from tests.apps.analytics_receiver import receiver
from tests.apps.clients import in_memory
from tests.apps.servers import build
from tests.conftest import instrumented

pytestmark = pytest.mark.anyio

WHY = "The agent totals the user's invoice."


async def finished_spans(recorded):
    async with in_memory(build("lowlevel")) as client:
        await client.list_tools()
        await client.list_prompts()
        await client.call_tool("add", {"a": 1, "b": 2, "context": WHY})
        await client.call_tool("fail", {})
        session_id = next(s for s in recorded.server_spans() if s.name == "tools/call add").attributes["mcp.session.id"]
        publish_custom_event(session_id, name="invoice_sent", resource_name="billing", parameters={"n": 1})
    unrelated = TracerProvider().get_tracer("other").start_span("unrelated work")
    unrelated.end()
    return [*recorded.spans(), unrelated]


def exporter_to(url: str, **options) -> tuple[MCPAnalyticsExporter, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return MCPAnalyticsExporter(
        url, "key-123", meter_provider=MeterProvider(metric_readers=[reader]), **options
    ), reader


def outcomes(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    return {
        point.attributes["outcome"]: point.value
        for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics for point in m.data.data_points
    }  # fmt: skip


async def test_mcp_spans_map_to_events(recorded):
    spans = await finished_spans(recorded)
    with receiver() as api:
        exporter, reader = exporter_to(api.url)
        assert exporter.export(spans) == SpanExportResult.SUCCESS

    (request,) = api.requests
    assert request.path == "/v1/events"
    assert request.headers["Authorization"] == "Bearer key-123"
    assert request.headers["Content-Encoding"] == "gzip"
    events = request.body["events"]
    analytics = [s for s in spans if "mcp.method.name" in s.attributes or "mcp.event.kind" in s.attributes]
    assert len(events) == len(analytics), "non-MCP spans are left out"
    assert len({event["event_id"] for event in events}) == len(events)
    by_type = {}
    for event in events:
        by_type.setdefault((event["type"], event["kind"]), []).append(event)
    (add,) = [e for e in by_type[("mcp:tools/call", "server")] if e["resource"] == "add"]
    assert add["intent"] == WHY
    assert add["client_name"] == "mcp" and add["server_name"] == "lowlevel-demo" and add["server_version"] == "1.2.3"
    assert add["argument_keys"] == ["a", "b"] and isinstance(add["response_size"], int)
    assert add["is_error"] is False and "error" not in add and "failure" not in add  # None values are left out
    assert len(add["session_id"]) == 32 and add["event_id"] == add["trace_id"] + add["span_id"]
    (fail,) = [e for e in by_type[("mcp:tools/call", "server")] if e["resource"] == "fail"]
    assert fail["is_error"] is True
    assert fail["error"]["type"] == "tool_error"
    assert fail["error"]["message"] == "the tool failed on purpose"  # the text the client received
    assert fail["failure"] == {"origin": "server", "reason": "tool_error"}
    (listed,) = by_type[("mcp:tools/list", "server")]
    assert listed["tools_listed"] == ["add", "fail", "slow", "fetch", "billing", "keys", "note", "echo", "image", "ask"]
    assert "tools_listed" not in add and "tools_listed" not in by_type[("mcp:tools/list", "client")][0]
    assert listed["destructive_tools"] == ["billing"]
    (prompts,) = by_type[("mcp:prompts/list", "server")]
    assert prompts["prompts_listed"] == ["review"] and "tools_listed" not in prompts
    (custom,) = by_type[("custom:invoice_sent", "internal")]
    assert custom["resource"] == "billing" and custom["custom"]["parameters"] == {"n": 1}
    assert custom["session_id"] == add["session_id"]
    assert outcomes(reader) == {"sent": len(events)}


async def test_server_errors_are_retried_with_the_same_event_ids(recorded):
    spans = await finished_spans(recorded)
    with receiver((500, {}, 0), (503, {}, 0)) as api:
        exporter, reader = exporter_to(api.url)
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert len(api.requests) == 3
    ids = [[e["event_id"] for e in request.body["events"]] for request in api.requests]
    assert ids[0] == ids[1] == ids[2]
    assert outcomes(reader) == {"sent": len(ids[0])}


@pytest.mark.parametrize("status", [429, 503])  # 503: the API's answer while its store is unreachable
async def test_429_and_503_wait_for_retry_after(recorded, status):
    spans = await finished_spans(recorded)
    with receiver((status, {"Retry-After": "1"}, 0)) as api:
        exporter, _ = exporter_to(api.url)
        assert exporter.export(spans) == SpanExportResult.SUCCESS
    first, second = api.requests
    assert second.at - first.at >= 0.95


async def test_client_errors_are_not_retried(recorded):
    spans = await finished_spans(recorded)
    with receiver((400, {}, 0)) as api:
        exporter, reader = exporter_to(api.url)
        assert exporter.export(spans) == SpanExportResult.FAILURE
    assert len(api.requests) == 1
    assert set(outcomes(reader)) == {"failed"}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_dead_or_slow_api_fails_within_the_timeout(recorded):
    spans = await finished_spans(recorded)
    exporter, reader = exporter_to(f"http://127.0.0.1:{closed_port()}", timeout=1.5)
    started = time.monotonic()
    assert exporter.export(spans) == SpanExportResult.FAILURE
    assert time.monotonic() - started <= 2.0
    with receiver((200, {}, 5.0)) as api:
        exporter, _ = exporter_to(api.url, timeout=1.0)
        started = time.monotonic()
        assert exporter.export(spans) == SpanExportResult.FAILURE
        assert time.monotonic() - started <= 1.5
    assert outcomes(reader)["failed"] > 0


async def test_the_server_never_waits_for_the_exporter():
    with receiver(*[(200, {}, 3.0)] * 5) as api:
        with instrumented() as recorded:
            processor = install(
                api.url, "key", tracer_provider=recorded.tracer_provider, schedule_delay_millis=50, timeout=10
            )
            started = time.monotonic()
            async with in_memory(build("lowlevel")) as client:
                for _ in range(30):
                    await client.call_tool("add", {"a": 1, "b": 2})
            elapsed = time.monotonic() - started
        assert elapsed < 2.0, "each export takes 3 s: the calls did not wait for it"
        processor.shutdown()  # flushes what is queued
    events = [event for request in api.requests for event in request.body["events"]]
    assert len([e for e in events if e["type"] == "mcp:tools/call" and e["kind"] == "server"]) == 30


def test_zero_code_entry_point(monkeypatch):
    (entry,) = [ep for ep in entry_points(group="opentelemetry_traces_exporter") if ep.name == "mcp_analytics"]
    assert entry.load() is MCPAnalyticsExporter
    monkeypatch.setenv("OTEL_EXPORTER_MCP_ANALYTICS_ENDPOINT", "http://127.0.0.1:9999/")
    monkeypatch.setenv("OTEL_EXPORTER_MCP_ANALYTICS_API_KEY", "from-env")
    exporter = entry.load()()
    assert (exporter.url, exporter.api_key) == ("http://127.0.0.1:9999/v1/events", "from-env")


async def test_spans_dropped_by_a_full_queue_are_counted(monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")  # the SDK's own processor metrics
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    with receiver(*[(200, {}, 1.0)] * 3) as api, instrumented() as recorded:
        processor = install(
            api.url, "key", tracer_provider=recorded.tracer_provider, meter_provider=meter_provider,
            max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=10, timeout=5,
        )  # fmt: skip
        async with in_memory(build("lowlevel")) as client:
            for _ in range(20):
                await client.call_tool("add", {"a": 1, "b": 2})
        processor.shutdown()
    data = reader.get_metrics_data()
    dropped = sum(
        point.value
        for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics if m.name == "otel.sdk.processor.span.processed"
        for point in m.data.data_points if point.attributes.get("error.type") == "queue_full"
    )  # fmt: skip
    assert dropped > 0
    sent = sum(len(request.body["events"]) for request in api.requests)
    assert sent + dropped >= 40, "every span was either sent or counted as dropped"


async def test_events_the_api_refuses_are_counted_and_the_others_stored(recorded):
    from mcp_analytics.api import create_app
    from mcp_analytics.duckdb_store import DuckDBStore
    from mcp_analytics.keys import ApiKeys
    from mcp_analytics.server import in_thread

    spans = await finished_spans(recorded)
    odd = TracerProvider().get_tracer("another instrumentation").start_span("tools/call huge")
    odd.set_attributes({"mcp.method.name": "tools/call", "gen_ai.tool.name": "huge", "mcp.response.size": 2**70})
    odd.end()
    store = DuckDBStore()
    try:
        with in_thread(create_app(store, ApiKeys([("p", "key-123")]))) as url:
            exporter, reader = exporter_to(url)
            assert exporter.export([*spans, odd]) == SpanExportResult.SUCCESS, "the batch was stored: not retried"
        mapped = [span for span in spans if is_analytics_span(span)]
        assert outcomes(reader) == {"sent": len(mapped), "rejected": 1}
        counted = [span for span in mapped if span.kind.name != "CLIENT"]  # panels leave client spans out
        assert store.panel("p", "summary", Window.parse(last="1h"))[0]["events"] == len(counted)
    finally:
        store.close()

"""Client-controlled values reach metrics only through a cap."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from opentelemetry_instrumentation_mcp.cardinality import LIMITS, OTHER
from opentelemetry_instrumentation_mcp.instruments import DURATION_BUCKETS, FINE_DURATION_BUCKETS
from opentelemetry_instrumentation_mcp.records import Message, Session
from opentelemetry_instrumentation_mcp.telemetry import Telemetry
from tests.apps.clients import in_memory
from tests.apps.servers import build
from tests.conftest import instrumented

pytestmark = pytest.mark.anyio


def no_error(exc: BaseException) -> None:
    return None


def test_ten_thousand_client_names_do_not_grow_the_metric_series():
    reader = InMemoryMetricReader()
    telemetry = Telemetry(TracerProvider(), MeterProvider(metric_readers=[reader]))
    for _ in range(10_000):
        session = Session(client_name=f"agent-{uuid.uuid4().hex}", protocol_version="2025-11-25")
        message = Message("tools/call", request_id="1", name=f"tool-{uuid.uuid4().hex}")
        operation = telemetry.server_operation(message, session, no_error)
        with operation:
            pass
        assert operation.span.attributes["mcp.client.name"] == session.client_name, "spans keep the real value"

    metrics = {
        m.name: m for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics for m in s.metrics
    }
    points = metrics["mcp.server.operation.duration"].data.data_points
    assert sum(point.count for point in points) == 10_000
    assert len(points) <= max(LIMITS.values()) + 1
    assert len({p.attributes["mcp.client.name"] for p in points}) == LIMITS["mcp.client.name"] + 1
    assert len({p.attributes["gen_ai.tool.name"] for p in points}) == LIMITS["gen_ai.tool.name"] + 1
    assert (
        sum(p.count for p in points if p.attributes["mcp.client.name"] == OTHER) == 10_000 - LIMITS["mcp.client.name"]
    )
    overflows = {
        dict(p.attributes)["attribute"]: p.value
        for p in metrics["mcp.instrumentation.metric_value_overflow"].data.data_points
    }
    assert overflows == {"mcp.client.name": 9_900, "gen_ai.tool.name": 9_000}


async def test_unknown_tool_names_from_a_real_client_are_capped(monkeypatch):
    monkeypatch.setitem(LIMITS, "gen_ai.tool.name", 3)
    with instrumented() as recorded:
        async with in_memory(build("highlevel")) as client:
            for index in range(5):
                await client.call_tool(f"no-such-tool-{index}", {})

    calls = [
        p for p in recorded.points("mcp.server.operation.duration") if p.attributes["mcp.method.name"] == "tools/call"
    ]
    names = sorted(p.attributes["gen_ai.tool.name"] for p in calls)
    assert names == [OTHER, "no-such-tool-0", "no-such-tool-1", "no-such-tool-2"]
    assert {p.attributes["gen_ai.tool.name"]: p.count for p in calls}[OTHER] == 2
    spans = [s.attributes["gen_ai.tool.name"] for s in recorded.server_spans() if s.name.startswith("tools/call")]
    assert spans == [f"no-such-tool-{index}" for index in range(5)]


def test_method_names_a_client_makes_up_are_capped():
    reader = InMemoryMetricReader()
    telemetry = Telemetry(TracerProvider(), MeterProvider(metric_readers=[reader]))
    session = Session(client_name="agent", protocol_version="2025-11-25")
    for index in range(200):
        with telemetry.server_operation(Message(f"made/up-{index}", request_id=str(index)), session, no_error):
            pass
    metrics = {
        m.name: m for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics for m in s.metrics
    }
    methods = {
        p.attributes["mcp.method.name"]: p.count for p in metrics["mcp.server.operation.duration"].data.data_points
    }
    assert len(methods) == LIMITS["mcp.method.name"] + 1 and methods[OTHER] == 200 - LIMITS["mcp.method.name"]


@pytest.mark.parametrize(
    ("given", "environment", "expected"),
    [
        (None, None, DURATION_BUCKETS),
        ("fine", None, FINE_DURATION_BUCKETS),
        (None, "fine", FINE_DURATION_BUCKETS),
        (None, "0.001, 0.01,0.1", (0.001, 0.01, 0.1)),
        ([0.005, 0.05], "fine", (0.005, 0.05)),
        (None, "0.1,0.01", DURATION_BUCKETS),  # not increasing: logged, the default kept
        (None, "fast", DURATION_BUCKETS),
    ],
)
async def test_duration_buckets_option_and_environment(given, environment, expected, monkeypatch, caplog):
    if environment is not None:
        monkeypatch.setenv("OTEL_INSTRUMENTATION_MCP_DURATION_BUCKETS", environment)
    options = {} if given is None else {"duration_buckets": given}
    with instrumented(**options) as recorded:
        async with in_memory(build("lowlevel")) as client:
            await client.call_tool("add", {"a": 1, "b": 2})
    snapshot = recorded.snapshot()
    for name in ("mcp.server.operation.duration", "mcp.client.operation.duration"):
        assert {tuple(p.explicit_bounds) for p in snapshot[name]} == {tuple(float(b) for b in expected)}, name
    for name in ("mcp.server.session.duration", "mcp.client.session.duration"):  # sessions keep the conventions'
        assert {tuple(p.explicit_bounds) for p in snapshot[name]} == {tuple(float(b) for b in DURATION_BUCKETS)}, name
    assert set(DURATION_BUCKETS) <= set(FINE_DURATION_BUCKETS), "rules written for the default still hold"
    warned = "are not increasing seconds" in caplog.text
    assert warned == (expected == DURATION_BUCKETS and environment not in (None, "default"))

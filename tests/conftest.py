from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from opentelemetry_instrumentation_mcp import MCPInstrumentor
from tests.apps.servers import IS_V2


@dataclass
class Recorded:
    """What the instrumented code exported, read through the real OTel SDK."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def spans(self, kind: SpanKind | None = None) -> list[ReadableSpan]:
        found = sorted(self.exporter.get_finished_spans(), key=lambda span: span.start_time or 0)
        return [span for span in found if kind is None or span.kind == kind]

    def server_spans(self) -> list[ReadableSpan]:
        return self.spans(SpanKind.SERVER)

    def client_spans(self) -> list[ReadableSpan]:
        return self.spans(SpanKind.CLIENT)

    def points(self, metric: str) -> list[Any]:
        return self.snapshot().get(metric, [])

    def snapshot(self) -> dict[str, list[Any]]:
        """One collection: every metric's points (exemplars are handed out once per collection)."""
        data = self.reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for instrument in scope.metrics:
                    found.setdefault(instrument.name, []).extend(instrument.data.data_points)
        return found

    def metric(self, name: str) -> Any:
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for instrument in scope.metrics:
                    if instrument.name == name:
                        return instrument
        return None


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    """``MCPInstrumentor`` instrumented with in-memory span and metric exporters, uninstrumented after."""
    with instrumented() as found:
        yield found


@contextmanager
def instrumented(**options: Any) -> Iterator[Recorded]:
    """Instrument with ``options`` (``identify=...``, ``intent=...``) and in-memory exporters, for one block."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentor = MCPInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, **options)
    try:
        yield Recorded(exporter, reader, tracer_provider)
    finally:
        instrumentor.uninstrument()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# Tests of what only one SDK line has are not collected on the other (rather than skipped).
collect_ignore = [] if IS_V2 else ["test_modern_protocol.py"]
if importlib.util.find_spec("fastmcp") is None:
    collect_ignore += ["test_fastmcp.py", "test_fastmcp_wire.py"]

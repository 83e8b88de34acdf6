"""Which exporters write to stdout (the MCP protocol stream over stdio), found in real SDK providers."""

from __future__ import annotations

import io
import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, ConsoleLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

from opentelemetry_instrumentation_mcp.stdout import exporters_on_stdout


def test_console_exporters_with_their_default_stream_are_found():
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    meter_provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(ConsoleMetricExporter())])
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(ConsoleLogRecordExporter()))
    try:
        found = exporters_on_stdout(tracer_provider, meter_provider, logger_provider)
        assert found == ["ConsoleLogRecordExporter", "ConsoleMetricExporter", "ConsoleSpanExporter"]
        assert exporters_on_stdout(tracer_provider) == ["ConsoleSpanExporter"]
    finally:
        for provider in (tracer_provider, meter_provider, logger_provider):
            provider.shutdown()


def test_other_streams_and_otlp_are_not():
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=io.StringIO())))
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")))
    try:
        assert exporters_on_stdout(tracer_provider, MeterProvider()) == []
    finally:
        tracer_provider.shutdown()

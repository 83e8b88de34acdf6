"""The MCP semantic-convention histograms."""

from __future__ import annotations

from opentelemetry.metrics import Counter, Histogram, Meter
from opentelemetry.semconv._incubating.metrics.mcp_metrics import (
    MCP_CLIENT_OPERATION_DURATION,
    MCP_CLIENT_SESSION_DURATION,
    MCP_SERVER_OPERATION_DURATION,
    MCP_SERVER_SESSION_DURATION,
)

SERVER_UPSTREAM_DURATION = "mcp.server.operation.upstream.duration"
"""Ours, not the conventions': the part of ``mcp.server.operation.duration`` spent waiting on dependencies."""
DURATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


def _duration(meter: Meter, name: str, description: str) -> Histogram:
    return meter.create_histogram(
        name=name,
        unit="s",
        description=description,
        explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
    )


class Instruments:
    """The four duration histograms of the MCP conventions and our upstream time, created once per meter."""

    def __init__(self, meter: Meter) -> None:
        self.server_operation = _duration(
            meter, MCP_SERVER_OPERATION_DURATION, "Duration of an MCP request or notification as observed by the server."
        )
        self.server_session = _duration(
            meter, MCP_SERVER_SESSION_DURATION, "Duration of an MCP session as observed by the server."
        )
        self.client_operation = _duration(
            meter, MCP_CLIENT_OPERATION_DURATION, "Duration of an MCP request or notification as observed by the client."
        )
        self.client_session = _duration(
            meter, MCP_CLIENT_SESSION_DURATION, "Duration of an MCP session as observed by the client."
        )
        self.server_upstream = _duration(
            meter, SERVER_UPSTREAM_DURATION,
            "Time an MCP server operation waited on its upstream calls (outermost CLIENT spans it started).",
        )  # fmt: skip
        self.overflow: Counter = meter.create_counter(
            name="mcp.instrumentation.metric_value_overflow",
            unit="{value}",
            description="Metric attribute values recorded as _OTHER because their attribute reached its cap.",
        )

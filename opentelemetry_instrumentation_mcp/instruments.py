"""The MCP semantic-convention histograms."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from itertools import pairwise

from opentelemetry.metrics import Counter, Histogram, Meter

# The MCP conventions' metrics (their semconv constants are marked as moved to the GenAI conventions repository).
MCP_CLIENT_OPERATION_DURATION = "mcp.client.operation.duration"
MCP_CLIENT_SESSION_DURATION = "mcp.client.session.duration"
MCP_SERVER_OPERATION_DURATION = "mcp.server.operation.duration"
MCP_SERVER_SESSION_DURATION = "mcp.server.session.duration"

SERVER_UPSTREAM_DURATION = "mcp.server.operation.upstream.duration"
"""Ours, not the conventions': the part of ``mcp.server.operation.duration`` spent waiting on dependencies."""
DURATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
"""The MCP conventions' boundaries (seconds): the default."""
FINE_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, *DURATION_BUCKETS)
"""For fast tools (``duration_buckets="fine"``): sub-10 ms detail, and every default boundary kept, so queries
and rules written for the default (``le="0.5"``) still hold."""
BUCKETS_ENV = "OTEL_INSTRUMENTATION_MCP_DURATION_BUCKETS"


def duration_buckets(given: str | Sequence[float] | None = None) -> tuple[float, ...]:
    """The option, else ``OTEL_INSTRUMENTATION_MCP_DURATION_BUCKETS``: ``default``, ``fine``, or increasing
    seconds (``0.001,0.01,0.1,1``). An unusable value is logged and the default kept."""
    value: str | Sequence[float | str] = os.environ.get(BUCKETS_ENV, "") if given is None else given
    if isinstance(value, str):
        named = {"": DURATION_BUCKETS, "default": DURATION_BUCKETS, "fine": FINE_DURATION_BUCKETS}
        if value.strip().lower() in named:
            return named[value.strip().lower()]
        value = value.split(",")
    try:
        bounds = tuple(float(bound) for bound in value)
    except (TypeError, ValueError):
        bounds = ()
    if bounds and bounds[0] >= 0 and all(low < high for low, high in pairwise(bounds)):
        return bounds
    logger.warning("duration buckets %r are not increasing seconds; the conventions' buckets are used", given or value)
    return DURATION_BUCKETS


logger = logging.getLogger(__name__)


class Instruments:
    """The four duration histograms of the MCP conventions and our upstream time, created once per meter.
    ``buckets``: the operations' boundaries (sessions keep the conventions')."""

    def __init__(self, meter: Meter, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        def duration(name: str, description: str, bounds: Sequence[float] = buckets) -> Histogram:
            return meter.create_histogram(
                name=name, unit="s", description=description, explicit_bucket_boundaries_advisory=bounds
            )

        self.server_operation = duration(
            MCP_SERVER_OPERATION_DURATION, "Duration of an MCP request or notification as observed by the server."
        )
        self.server_session = duration(
            MCP_SERVER_SESSION_DURATION, "Duration of an MCP session as observed by the server.", DURATION_BUCKETS
        )
        self.client_operation = duration(
            MCP_CLIENT_OPERATION_DURATION, "Duration of an MCP request or notification as observed by the client."
        )
        self.client_session = duration(
            MCP_CLIENT_SESSION_DURATION, "Duration of an MCP session as observed by the client.", DURATION_BUCKETS
        )
        self.server_upstream = duration(
            SERVER_UPSTREAM_DURATION,
            "Time an MCP server operation waited on its upstream calls (outermost CLIENT spans it started).",
        )
        self.overflow: Counter = meter.create_counter(
            name="mcp.instrumentation.metric_value_overflow",
            unit="{value}",
            description="Metric attribute values recorded as _OTHER because their attribute reached its cap.",
        )

"""MCP analytics exporter: finished MCP spans, as analytics events, to an analytics API.

One line::

    from opentelemetry.exporter.mcp_analytics import install
    install(endpoint="http://127.0.0.1:8765", api_key="...")

or zero code: ``OTEL_TRACES_EXPORTER=otlp,mcp_analytics`` with
``OTEL_EXPORTER_MCP_ANALYTICS_ENDPOINT`` and ``OTEL_EXPORTER_MCP_ANALYTICS_API_KEY``.
"""

from opentelemetry.exporter.mcp_analytics.events import to_event
from opentelemetry.exporter.mcp_analytics.span_exporter import MCPAnalyticsExporter, install

__all__ = ["MCPAnalyticsExporter", "install", "to_event"]

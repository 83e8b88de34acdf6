"""OpenTelemetry instrumentation for MCP servers and clients built on the official ``mcp`` SDK.

Usage::

    from opentelemetry_instrumentation_mcp import MCPInstrumentor

    MCPInstrumentor().instrument()

or, with no code change, ``opentelemetry-instrument python server.py``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.trace import get_tracer_provider

from opentelemetry_instrumentation_mcp import events, sdk, upstream
from opentelemetry_instrumentation_mcp.events import publish_custom_event
from opentelemetry_instrumentation_mcp.content import ContentPolicy
from opentelemetry_instrumentation_mcp.failures import FailureOrigin, ToolFailure
from opentelemetry_instrumentation_mcp.identity import DEFAULT_TIMEOUT, IdentifyRequest, Identifier, UserIdentity
from opentelemetry_instrumentation_mcp.intent import IntentOptions
from opentelemetry_instrumentation_mcp.package import _instruments_any
from opentelemetry_instrumentation_mcp.telemetry import Telemetry
from opentelemetry_instrumentation_mcp.version import __version__

__all__ = [
    "FailureOrigin",
    "IdentifyRequest",
    "MCPInstrumentor",
    "ToolFailure",
    "UserIdentity",
    "__version__",
    "publish_custom_event",
]


class MCPInstrumentor(BaseInstrumentor):
    """One span per MCP message, client and server, on ``mcp`` 1.x and 2.x, plus the MCP metrics."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments_any

    def _instrument(self, **kwargs: Any) -> None:
        """Options: ``tracer_provider``, ``meter_provider``; ``intent`` (bool), ``intent_parameter``,
        ``intent_description`` (else ``OTEL_INSTRUMENTATION_MCP_INTENT[_PARAMETER|_DESCRIPTION]``);
        ``identify`` (a hook: ``IdentifyRequest`` -> ``UserIdentity | None``, sync or async) and
        ``identify_timeout`` (seconds, default 1); ``capture_content`` (bool, else
        ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``) and ``redact`` (``str -> str``)."""
        intent = IntentOptions.resolve(
            kwargs.get("intent"), kwargs.get("intent_parameter"), kwargs.get("intent_description")
        )
        identifier = Identifier(kwargs.get("identify"), kwargs.get("identify_timeout", DEFAULT_TIMEOUT))
        content = ContentPolicy(kwargs.get("capture_content"), kwargs.get("redact"))
        telemetry = Telemetry(
            kwargs.get("tracer_provider"), kwargs.get("meter_provider"), intent, identifier, content
        )
        adapter = sdk.adapter()
        try:
            adapter.instrument(telemetry)
        except Exception:
            adapter.uninstrument()  # leave nothing half-patched
            raise
        self._upstream = upstream.attach(kwargs.get("tracer_provider") or get_tracer_provider())
        events.activate(telemetry)

    def _uninstrument(self, **kwargs: Any) -> None:
        events.activate(None)
        sdk.adapter().uninstrument()
        if getattr(self, "_upstream", None) is not None:
            self._upstream.enabled = False

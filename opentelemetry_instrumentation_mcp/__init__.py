"""OpenTelemetry instrumentation for MCP servers and clients built on the official ``mcp`` SDK.

Usage::

    from opentelemetry_instrumentation_mcp import MCPInstrumentor

    MCPInstrumentor().instrument()

or, with no code change, ``opentelemetry-instrument python server.py``.

The names below load on first use, so the attribute registry (``attributes``) and ``version`` import
without the instrumentation machinery (the exporter and the analytics API need only those).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from opentelemetry_instrumentation_mcp.version import __version__

if TYPE_CHECKING:
    from opentelemetry_instrumentation_mcp.events import publish_custom_event
    from opentelemetry_instrumentation_mcp.failures import FailureOrigin, ToolFailure
    from opentelemetry_instrumentation_mcp.identity import IdentifyRequest, UserIdentity
    from opentelemetry_instrumentation_mcp.instrumentor import MCPInstrumentor

__all__ = [
    "FailureOrigin",
    "IdentifyRequest",
    "MCPInstrumentor",
    "ToolFailure",
    "UserIdentity",
    "__version__",
    "publish_custom_event",
]

_LAZY = {
    "FailureOrigin": "failures",
    "IdentifyRequest": "identity",
    "MCPInstrumentor": "instrumentor",
    "ToolFailure": "failures",
    "UserIdentity": "identity",
    "publish_custom_event": "events",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""Wires the ``mcp`` 2.x adapters."""

from __future__ import annotations

from opentelemetry_instrumentation_mcp.adapters._tools import tool_manager_wrapper
from opentelemetry_instrumentation_mcp.adapters._auth import wrap_auth
from opentelemetry_instrumentation_mcp.adapters._wrapping import Patches
from opentelemetry_instrumentation_mcp.adapters._fastmcp import record_exception_wrapper, session_attributes_wrapper
from opentelemetry_instrumentation_mcp.adapters.v2.client import ClientPatch, sdk_span_wrapper
from opentelemetry_instrumentation_mcp.adapters.v2.server import (
    ServerPatch,
    internal_lookup_wrapper,
    modern_error_data_wrapper,
    write_error_wrapper,
)
from opentelemetry_instrumentation_mcp.telemetry import Telemetry
from opentelemetry_instrumentation_mcp.transport import client_http_transport_wrapper, client_stdio_wrapper, stdio_wrapper

_patches = Patches()
_server: ServerPatch | None = None


def instrument(telemetry: Telemetry) -> None:
    global _server
    _server = ServerPatch(telemetry)
    client = ClientPatch(telemetry)
    _patches.wrap("mcp.server.runner", "ServerRunner._compose_server_middleware", _server.compose_wrapper)
    _patches.wrap(
        "mcp.server._streamable_http_modern", "_tool_input_schema", internal_lookup_wrapper, optional=True
    )
    _patches.wrap("mcp.server.mcpserver.tools.tool_manager", "ToolManager.call_tool", tool_manager_wrapper)
    # Where the SDK turns a handler's exception into the wire error: our verdict goes into its data.
    _patches.wrap("mcp.shared.jsonrpc_dispatcher", "JSONRPCDispatcher._write_error", write_error_wrapper)
    _patches.wrap("mcp.server.runner", "modern_error_data", modern_error_data_wrapper)
    _patches.wrap("mcp.server._streamable_http_modern", "modern_error_data", modern_error_data_wrapper)
    serving_stdio = stdio_wrapper(telemetry.serving_stdio)
    _patches.wrap("mcp.server.stdio", "stdio_server", serving_stdio)
    _patches.wrap("mcp.server.mcpserver.server", "stdio_server", serving_stdio)
    _patches.wrap("mcp.client.stdio", "stdio_client", client_stdio_wrapper)
    _patches.wrap("mcp.client.client", "stdio_client", client_stdio_wrapper, optional=True)
    _patches.wrap("mcp.client.streamable_http", "StreamableHTTPTransport.__init__", client_http_transport_wrapper)
    _patches.wrap("mcp.client.session", "ClientSession.__aenter__", client.aenter_wrapper)
    _patches.wrap("mcp.client.session", "ClientSession._on_request", client.on_request_wrapper)
    wrap_auth(_patches, telemetry, client.sessions.refusals)
    # fastmcp, where installed: its tool errors, its span's outcome and session id.
    _patches.wrap("fastmcp.server.server", "FastMCP.call_tool", tool_manager_wrapper, optional=True)
    _patches.wrap("fastmcp.server.telemetry", "record_span_exception", record_exception_wrapper, optional=True)
    _patches.wrap(
        "fastmcp.server.telemetry", "get_session_span_attributes", session_attributes_wrapper, optional=True
    )
    _patches.wrap("mcp.client.session", "ClientSession.__aexit__", client.sessions.aexit_wrapper)
    _patches.wrap("mcp.shared.jsonrpc_dispatcher", "JSONRPCDispatcher.send_raw_request", client.jsonrpc_send_wrapper)
    _patches.wrap("mcp.shared.direct_dispatcher", "DirectDispatcher.send_raw_request", client.direct_send_wrapper)
    _patches.wrap("mcp.shared.jsonrpc_dispatcher", "otel_span", sdk_span_wrapper)


def uninstrument() -> None:
    global _server
    _patches.restore()
    if _server is not None:
        _server.uninstall()
        _server = None

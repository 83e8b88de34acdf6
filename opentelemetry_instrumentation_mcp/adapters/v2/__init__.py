"""Wires the ``mcp`` 2.x adapters."""

from __future__ import annotations

from opentelemetry_instrumentation_mcp.adapters._auth import wrap_auth
from opentelemetry_instrumentation_mcp.adapters._fastmcp import Enriched, argument_verdict, session_attributes_wrapper
from opentelemetry_instrumentation_mcp.adapters._tools import noting_wrapper, tool_manager_wrapper
from opentelemetry_instrumentation_mcp.adapters._wrapping import Patches
from opentelemetry_instrumentation_mcp.adapters.v2.client import ClientPatch, sdk_span_wrapper
from opentelemetry_instrumentation_mcp.adapters.v2.server import (
    ServerPatch,
    internal_lookup_wrapper,
    modern_error_data_wrapper,
    write_error_wrapper,
)
from opentelemetry_instrumentation_mcp.telemetry import Telemetry
from opentelemetry_instrumentation_mcp.transport import (
    client_http_transport_wrapper,
    client_stdio_wrapper,
    stdio_wrapper,
)


def wire(patches: Patches, telemetry: Telemetry) -> None:
    """Wrap the 2.x SDK for ``telemetry``; ``patches.restore()`` undoes all of it."""
    enriched = Enriched()
    server = ServerPatch(telemetry, enriched)
    patches.on_restore(server.uninstall)
    client = ClientPatch(telemetry)
    patches.wrap("mcp.server.runner", "ServerRunner.__init__", server.runner_wrapper)
    patches.wrap("mcp.server._streamable_http_modern", "_tool_input_schema", internal_lookup_wrapper, optional=True)
    patches.wrap("mcp.server.mcpserver.tools.tool_manager", "ToolManager.call_tool", tool_manager_wrapper)
    # Where the SDK turns a handler's exception into the wire error: our verdict goes into its data.
    patches.wrap("mcp.shared.jsonrpc_dispatcher", "JSONRPCDispatcher._write_error", write_error_wrapper)
    patches.wrap("mcp.server.runner", "modern_error_data", modern_error_data_wrapper)
    patches.wrap("mcp.server._streamable_http_modern", "modern_error_data", modern_error_data_wrapper)
    serving_stdio = stdio_wrapper(telemetry.serving_stdio)
    patches.wrap("mcp.server.stdio", "stdio_server", serving_stdio)
    patches.wrap("mcp.server.mcpserver.server", "stdio_server", serving_stdio)
    patches.wrap("mcp.client.stdio", "stdio_client", client_stdio_wrapper)
    patches.wrap("mcp.client.client", "stdio_client", client_stdio_wrapper, optional=True)
    patches.wrap("mcp.client.streamable_http", "StreamableHTTPTransport.__init__", client_http_transport_wrapper)
    patches.wrap("mcp.client.session", "ClientSession.__aenter__", client.aenter_wrapper)
    patches.wrap("mcp.client.session", "ClientSession._on_request", client.on_request_wrapper)
    wrap_auth(patches, telemetry, client.sessions.refusals)
    # fastmcp, where installed: its tool errors, its span's outcome and session id.
    patches.wrap("fastmcp.server.server", "FastMCP.call_tool", noting_wrapper(argument_verdict), optional=True)
    patches.wrap("fastmcp.server.telemetry", "record_span_exception", enriched.record_exception_wrapper, optional=True)
    patches.wrap("fastmcp.server.telemetry", "get_session_span_attributes", session_attributes_wrapper, optional=True)
    patches.wrap("mcp.client.session", "ClientSession.__aexit__", client.sessions.aexit_wrapper)
    patches.wrap("mcp.shared.jsonrpc_dispatcher", "JSONRPCDispatcher.send_raw_request", client.jsonrpc_send_wrapper)
    patches.wrap("mcp.shared.direct_dispatcher", "DirectDispatcher.send_raw_request", client.direct_send_wrapper)
    patches.wrap("mcp.shared.jsonrpc_dispatcher", "otel_span", sdk_span_wrapper)

"""Wires the ``mcp`` 1.x adapters."""

from __future__ import annotations

from opentelemetry_instrumentation_mcp.adapters._auth import wrap_auth
from opentelemetry_instrumentation_mcp.adapters._tools import error_result_wrapper, tool_manager_wrapper
from opentelemetry_instrumentation_mcp.adapters._wrapping import Patches
from opentelemetry_instrumentation_mcp.adapters.v1.client import ClientPatch
from opentelemetry_instrumentation_mcp.adapters.v1.server import ServerPatch, http_connect_wrapper
from opentelemetry_instrumentation_mcp.telemetry import Telemetry
from opentelemetry_instrumentation_mcp.transport import (
    client_http_transport_wrapper,
    client_stdio_wrapper,
    stdio_wrapper,
)


def wire(patches: Patches, telemetry: Telemetry) -> None:
    """Wrap the 1.x SDK for ``telemetry``; ``patches.restore()`` undoes all of it."""
    server = ServerPatch(telemetry)
    patches.on_restore(server.uninstall)
    client = ClientPatch(telemetry)
    patches.wrap("mcp.server.lowlevel.server", "Server._handle_message", server.handle_message_wrapper)
    patches.wrap("mcp.server.session", "ServerSession._received_request", server.received_request_wrapper)
    patches.wrap("mcp.shared.session", "RequestResponder.respond", server.respond_wrapper)
    patches.wrap("mcp.server.fastmcp.tools.tool_manager", "ToolManager.call_tool", tool_manager_wrapper)
    patches.wrap("mcp.server.lowlevel.server", "Server._make_error_result", error_result_wrapper, optional=True)
    serving_stdio = stdio_wrapper(telemetry.serving_stdio)
    patches.wrap("mcp.server.stdio", "stdio_server", serving_stdio)
    patches.wrap("mcp.server.fastmcp.server", "stdio_server", serving_stdio)
    patches.wrap("mcp.server.streamable_http", "StreamableHTTPServerTransport.connect", http_connect_wrapper)
    patches.wrap("mcp.client.session", "ClientSession.send_request", client.send_request_wrapper)
    patches.wrap("mcp.server.session", "ServerSession.send_request", client.send_request_wrapper)
    patches.wrap("mcp.client.session", "ClientSession._received_request", client.received_request_wrapper)
    patches.wrap("mcp.client.stdio", "stdio_client", client_stdio_wrapper)
    patches.wrap("mcp.client.streamable_http", "StreamableHTTPTransport.__init__", client_http_transport_wrapper)
    patches.wrap("mcp.client.session", "ClientSession.__aenter__", client.sessions.aenter_wrapper)
    wrap_auth(patches, telemetry, client.sessions.refusals)
    patches.wrap("mcp.client.session", "ClientSession.__aexit__", client.sessions.aexit_wrapper)

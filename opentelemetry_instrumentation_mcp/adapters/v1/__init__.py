"""Wires the ``mcp`` 1.x adapters."""

from __future__ import annotations


from opentelemetry_instrumentation_mcp.adapters._tools import error_result_wrapper, tool_manager_wrapper
from opentelemetry_instrumentation_mcp.adapters._auth import wrap_auth
from opentelemetry_instrumentation_mcp.adapters._wrapping import Patches
from opentelemetry_instrumentation_mcp.adapters.v1.client import ClientPatch
from opentelemetry_instrumentation_mcp.adapters.v1.server import ServerPatch, http_connect_wrapper
from opentelemetry_instrumentation_mcp.telemetry import Telemetry
from opentelemetry_instrumentation_mcp.transport import client_http_transport_wrapper, client_stdio_wrapper, stdio_wrapper

_patches = Patches()
_server: ServerPatch | None = None


def instrument(telemetry: Telemetry) -> None:
    global _server
    server = _server = ServerPatch(telemetry)
    client = ClientPatch(telemetry)
    _patches.wrap("mcp.server.lowlevel.server", "Server._handle_message", server.handle_message_wrapper)
    _patches.wrap("mcp.server.session", "ServerSession._received_request", server.received_request_wrapper)
    _patches.wrap("mcp.shared.session", "RequestResponder.respond", server.respond_wrapper)
    _patches.wrap("mcp.server.fastmcp.tools.tool_manager", "ToolManager.call_tool", tool_manager_wrapper)
    _patches.wrap("mcp.server.lowlevel.server", "Server._make_error_result", error_result_wrapper, optional=True)
    serving_stdio = stdio_wrapper(telemetry.serving_stdio)
    _patches.wrap("mcp.server.stdio", "stdio_server", serving_stdio)
    _patches.wrap("mcp.server.fastmcp.server", "stdio_server", serving_stdio)
    _patches.wrap("mcp.server.streamable_http", "StreamableHTTPServerTransport.connect", http_connect_wrapper)
    _patches.wrap("mcp.client.session", "ClientSession.send_request", client.send_request_wrapper)
    _patches.wrap("mcp.server.session", "ServerSession.send_request", client.send_request_wrapper)
    _patches.wrap("mcp.client.session", "ClientSession._received_request", client.received_request_wrapper)
    _patches.wrap("mcp.client.stdio", "stdio_client", client_stdio_wrapper)
    _patches.wrap("mcp.client.streamable_http", "StreamableHTTPTransport.__init__", client_http_transport_wrapper)
    _patches.wrap("mcp.client.session", "ClientSession.__aenter__", client.sessions.aenter_wrapper)
    wrap_auth(_patches, telemetry, client.sessions.refusals)
    _patches.wrap("mcp.client.session", "ClientSession.__aexit__", client.sessions.aexit_wrapper)


def uninstrument() -> None:
    global _server
    _patches.restore()
    if _server is not None:
        _server.uninstall()
        _server = None

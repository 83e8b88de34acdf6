"""Every attribute name this package writes, in one place.

OTel semantic-convention names come from ``opentelemetry-semantic-conventions``
where a current (not deprecated) constant exists; the rest are spelled here once. Nothing outside this
module spells an attribute name.
"""

from opentelemetry.semconv._incubating.attributes.jsonrpc_attributes import JSONRPC_REQUEST_ID
from opentelemetry.semconv._incubating.attributes.user_attributes import USER_ID, USER_NAME
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS, CLIENT_PORT
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE
from opentelemetry.semconv.attributes.network_attributes import (
    NETWORK_PROTOCOL_NAME,
    NETWORK_PROTOCOL_VERSION,
    NETWORK_TRANSPORT,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL

# The GenAI and MCP conventions' names. opentelemetry-semantic-conventions 0.66 marks its constants for them as
# moved to the GenAI conventions repository (same names): spelled here, so a release that drops them changes nothing.
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROMPT_NAME = "gen_ai.prompt.name"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
MCP_METHOD_NAME = "mcp.method.name"
MCP_PROTOCOL_VERSION = "mcp.protocol.version"
MCP_RESOURCE_URI = "mcp.resource.uri"
MCP_SESSION_ID = "mcp.session.id"
ERROR_MESSAGE = "error.message"
"""Deprecated in the general conventions for domain-specific ones; kept: what a client was told, where the
span status stays unset (see the README)."""

# Semantic-convention names without a constant in the installed semconv package.
RPC_RESPONSE_STATUS_CODE = "rpc.response.status_code"
GEN_AI_PROMPT_VARIABLE_PREFIX = "gen_ai.prompt.variable."

# Our extensions (documented in the README's attribute table).
MCP_CLIENT_NAME = "mcp.client.name"
MCP_CLIENT_VERSION = "mcp.client.version"
MCP_SERVER_NAME = "mcp.server.name"
MCP_SERVER_VERSION = "mcp.server.version"
MCP_SESSION_STATELESS = "mcp.session.stateless"
MCP_USER_INTENT = "mcp.user_intent"
MCP_USER_DATA = "mcp.user.data"
MCP_CALLER_ID = "mcp.caller.id"
MCP_REQUEST_ARGUMENT_KEYS = "mcp.request.argument_keys"
MCP_RESPONSE_SIZE = "mcp.response.size"
MCP_UPSTREAM_DURATION = "mcp.upstream.duration"
MCP_TOOLS_LISTED = "mcp.tools.listed"
MCP_TOOLS_DESTRUCTIVE = "mcp.tools.destructive"
MCP_PROMPTS_LISTED = "mcp.prompts.listed"
MCP_EVENT_KIND = "mcp.event.kind"
MCP_EVENT_NAME = "mcp.event.name"
MCP_EVENT_RESOURCE_NAME = "mcp.event.resource_name"
MCP_EVENT_PARAMETERS = "mcp.event.parameters"
MCP_EVENT_RESPONSE = "mcp.event.response"
MCP_EVENT_MESSAGE = "mcp.event.message"
MCP_EVENT_ERROR = "mcp.event.error"
MCP_FAILURE_ORIGIN = "mcp.failure.origin"
MCP_FAILURE_REASON = "mcp.failure.reason"

# Values.
EXECUTE_TOOL = "execute_tool"
TOOL_ERROR = "tool_error"
CUSTOM = "custom"
CUSTOM_EVENT_ERROR = "custom_event_error"
CANCELLED = "cancelled"

__all__ = [
    "CANCELLED",
    "CLIENT_ADDRESS",
    "CLIENT_PORT",
    "CUSTOM",
    "CUSTOM_EVENT_ERROR",
    "ERROR_MESSAGE",
    "ERROR_TYPE",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_STACKTRACE",
    "EXECUTE_TOOL",
    "GEN_AI_OPERATION_NAME",
    "GEN_AI_PROMPT_NAME",
    "GEN_AI_PROMPT_VARIABLE_PREFIX",
    "GEN_AI_TOOL_CALL_ARGUMENTS",
    "GEN_AI_TOOL_CALL_RESULT",
    "GEN_AI_TOOL_NAME",
    "JSONRPC_REQUEST_ID",
    "MCP_CALLER_ID",
    "MCP_CLIENT_NAME",
    "MCP_CLIENT_VERSION",
    "MCP_EVENT_ERROR",
    "MCP_EVENT_KIND",
    "MCP_EVENT_MESSAGE",
    "MCP_EVENT_NAME",
    "MCP_EVENT_PARAMETERS",
    "MCP_EVENT_RESOURCE_NAME",
    "MCP_EVENT_RESPONSE",
    "MCP_FAILURE_ORIGIN",
    "MCP_FAILURE_REASON",
    "MCP_METHOD_NAME",
    "MCP_PROMPTS_LISTED",
    "MCP_PROTOCOL_VERSION",
    "MCP_REQUEST_ARGUMENT_KEYS",
    "MCP_RESOURCE_URI",
    "MCP_RESPONSE_SIZE",
    "MCP_SERVER_NAME",
    "MCP_SERVER_VERSION",
    "MCP_SESSION_ID",
    "MCP_SESSION_STATELESS",
    "MCP_TOOLS_DESTRUCTIVE",
    "MCP_TOOLS_LISTED",
    "MCP_UPSTREAM_DURATION",
    "MCP_USER_DATA",
    "MCP_USER_INTENT",
    "NETWORK_PROTOCOL_NAME",
    "NETWORK_PROTOCOL_VERSION",
    "NETWORK_TRANSPORT",
    "RPC_RESPONSE_STATUS_CODE",
    "SERVER_ADDRESS",
    "SERVER_PORT",
    "TOOL_ERROR",
    "USER_AGENT_ORIGINAL",
    "USER_ID",
    "USER_NAME",
]

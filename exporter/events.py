"""Mapping a finished span to an analytics event.

Reads only the documented attribute registry (the OTel MCP conventions and this
project's ``mcp.*`` extensions), so spans from any instrumentation that follows
it map too, a TypeScript server's behind a Collector included.
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from opentelemetry_instrumentation_mcp import attributes as attr

EVENT_SCHEMA_VERSION = 1


def is_analytics_span(span: ReadableSpan) -> bool:
    """MCP messages (they carry ``mcp.method.name``) and custom events."""
    attributes = span.attributes or {}
    return attr.MCP_METHOD_NAME in attributes or attributes.get(attr.MCP_EVENT_KIND) == attr.CUSTOM


def event_id(span: ReadableSpan) -> str:
    """Stable per span: a retried batch is recognised, never counted twice."""
    context = span.get_span_context()
    return f"{context.trace_id:032x}{context.span_id:016x}"


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def to_event(span: ReadableSpan, project: str | None = None) -> dict[str, Any]:
    a = dict(span.attributes or {})
    custom = a.get(attr.MCP_EVENT_KIND) == attr.CUSTOM
    method = a.get(attr.MCP_METHOD_NAME)
    context = span.get_span_context()
    error_type = a.get(attr.ERROR_TYPE)
    failed = error_type is not None
    code = a.get(attr.RPC_RESPONSE_STATUS_CODE)
    prompt_variables = {
        key[len(attr.GEN_AI_PROMPT_VARIABLE_PREFIX) :]: value
        for key, value in a.items()
        if key.startswith(attr.GEN_AI_PROMPT_VARIABLE_PREFIX)
    }
    content = {
        "arguments": _json(a.get(attr.GEN_AI_TOOL_CALL_ARGUMENTS)),
        "result": _json(a.get(attr.GEN_AI_TOOL_CALL_RESULT)),
        "prompt_variables": prompt_variables or None,
    }
    event: dict[str, Any] = {
        "schema": EVENT_SCHEMA_VERSION,
        "event_id": event_id(span),
        "project": project,
        "session_id": a.get(attr.MCP_SESSION_ID),
        "stateless": bool(a.get(attr.MCP_SESSION_STATELESS, False)),
        "type": f"custom:{a.get(attr.MCP_EVENT_NAME, 'custom')}" if custom else f"mcp:{method}",
        "kind": span.kind.name.lower(),
        "resource": (
            a.get(attr.MCP_EVENT_RESOURCE_NAME)
            if custom
            else a.get(attr.GEN_AI_TOOL_NAME) or a.get(attr.GEN_AI_PROMPT_NAME) or a.get(attr.MCP_RESOURCE_URI)
        ),
        "timestamp_ns": span.start_time,
        "duration_ms": ((span.end_time or span.start_time or 0) - (span.start_time or 0)) / 1e6,
        "intent": a.get(attr.MCP_USER_INTENT),
        "user_id": a.get(attr.USER_ID),
        "user_name": a.get(attr.USER_NAME),
        "client_name": a.get(attr.MCP_CLIENT_NAME),
        "client_version": a.get(attr.MCP_CLIENT_VERSION),
        "server_name": a.get(attr.MCP_SERVER_NAME),
        "server_version": a.get(attr.MCP_SERVER_VERSION),
        "protocol_version": a.get(attr.MCP_PROTOCOL_VERSION),
        "transport": a.get(attr.NETWORK_TRANSPORT),
        "is_error": failed,
        "error": {
            "type": error_type,
            "message": span.status.description or a.get(attr.MCP_EVENT_ERROR),
            "code": int(code) if isinstance(code, str) and code.lstrip("-").isdigit() else None,
        }
        if failed
        else None,
        "failure": {"origin": a.get(attr.MCP_FAILURE_ORIGIN), "reason": a.get(attr.MCP_FAILURE_REASON)}
        if attr.MCP_FAILURE_ORIGIN in a
        else None,
        "argument_keys": list(a.get(attr.MCP_REQUEST_ARGUMENT_KEYS) or []),
        "response_size": a.get(attr.MCP_RESPONSE_SIZE),
        "upstream_ms": None if (up := _seconds(a.get(attr.MCP_UPSTREAM_DURATION))) is None else up * 1000,
        "content": content if any(value is not None for value in content.values()) else None,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
    }
    if custom:
        event["custom"] = {
            "parameters": _json(a.get(attr.MCP_EVENT_PARAMETERS)),
            "response": _json(a.get(attr.MCP_EVENT_RESPONSE)),
            "message": a.get(attr.MCP_EVENT_MESSAGE),
        }
    return event

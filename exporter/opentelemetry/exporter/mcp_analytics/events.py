"""Mapping a finished span to an analytics event.

Reads only the documented attribute registry (the OTel MCP conventions and this
project's ``mcp.*`` extensions), so spans from any instrumentation that follows
it map too, a TypeScript server's behind a Collector included.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from opentelemetry_instrumentation_mcp import attributes as attr

EVENT_SCHEMA_VERSION = 1
PROMPTS_GET = "prompts/get"
"""The only method whose spans carry ``gen_ai.prompt.variable.*``."""


def is_analytics_span(span: ReadableSpan) -> bool:
    """MCP messages (they carry ``mcp.method.name``) and custom events."""
    attributes = span.attributes or {}
    return attr.MCP_METHOD_NAME in attributes or attributes.get(attr.MCP_EVENT_KIND) == attr.CUSTOM


def event_id(span: ReadableSpan) -> str:
    """Stable per span: a retried batch is recognised, never counted twice."""
    return "".join(_ids(span))


def _ids(span: ReadableSpan) -> tuple[str, str]:
    """The span's trace id and span id, in hex."""
    context = span.get_span_context()
    if context is None:  # the SDK's spans always have one
        raise ValueError(f"span {span.name!r} has no span context")
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def _attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes as a plain dict.

    The SDK's ``span.attributes`` is a read-only view of a ``BoundedAttributes``, whose ``copy()`` is
    a dict copy made in C; ``dict(view)`` would call its Python ``__getitem__`` once per key (several
    times slower), and so would every lookup on the view itself.
    """
    attributes = span.attributes or {}
    copy = getattr(attributes, "copy", None)  # typed as a Mapping, which promises no copy()
    return copy() if copy is not None else dict(attributes)  # else another Mapping, without copy()


def _json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _content(a: Mapping[str, Any], method: Any) -> dict[str, Any] | None:
    """Captured content (opt-in in the instrumentation); None when the span carries none."""
    arguments = _json(a.get(attr.GEN_AI_TOOL_CALL_ARGUMENTS))
    result = _json(a.get(attr.GEN_AI_TOOL_CALL_RESULT))
    prompt_variables = None
    if method == PROMPTS_GET:
        prefix = attr.GEN_AI_PROMPT_VARIABLE_PREFIX
        prompt_variables = {key[len(prefix) :]: value for key, value in a.items() if key.startswith(prefix)} or None
    if arguments is None and result is None and prompt_variables is None:
        return None
    return {"arguments": arguments, "result": result, "prompt_variables": prompt_variables}


def to_event(span: ReadableSpan, project: str | None = None) -> dict[str, Any]:
    """The analytics event of an MCP span (``mcp_analytics.models.Event``).

    A field with nothing to say (None) is left out: the schema defaults every optional field to None,
    and the JSON is smaller, so faster to write and to gzip. ``event_id``, ``type`` and
    ``timestamp_ns`` (the span's start time, which every started span has) are always there.
    """
    a = _attributes(span)
    custom = a.get(attr.MCP_EVENT_KIND) == attr.CUSTOM
    method = a.get(attr.MCP_METHOD_NAME)
    trace_id, span_id = _ids(span)
    error_type = a.get(attr.ERROR_TYPE)
    failed = error_type is not None
    code = a.get(attr.RPC_RESPONSE_STATUS_CODE)
    event: dict[str, Any] = {
        "schema": EVENT_SCHEMA_VERSION,
        "event_id": trace_id + span_id,
        "stateless": bool(a.get(attr.MCP_SESSION_STATELESS, False)),
        "type": f"custom:{a.get(attr.MCP_EVENT_NAME, 'custom')}" if custom else f"mcp:{method}",
        "kind": span.kind.name.lower(),
        "timestamp_ns": span.start_time,
        "duration_ms": ((span.end_time or span.start_time or 0) - (span.start_time or 0)) / 1e6,
        "is_error": failed,
        "argument_keys": list(a.get(attr.MCP_REQUEST_ARGUMENT_KEYS) or []),
        "trace_id": trace_id,
        "span_id": span_id,
    }
    for field, value in (  # the optional fields, only when known
        ("project", project),
        ("session_id", a.get(attr.MCP_SESSION_ID)),
        (
            "resource",
            a.get(attr.MCP_EVENT_RESOURCE_NAME)
            if custom
            else a.get(attr.GEN_AI_TOOL_NAME) or a.get(attr.GEN_AI_PROMPT_NAME) or a.get(attr.MCP_RESOURCE_URI),
        ),
        ("intent", a.get(attr.MCP_USER_INTENT)),
        ("user_id", a.get(attr.USER_ID)),
        ("user_name", a.get(attr.USER_NAME)),
        ("user_data", user_data if isinstance(user_data := _json(a.get(attr.MCP_USER_DATA)), dict) else None),
        ("caller_id", a.get(attr.MCP_CALLER_ID)),
        ("client_name", a.get(attr.MCP_CLIENT_NAME)),
        ("client_version", a.get(attr.MCP_CLIENT_VERSION)),
        ("server_name", a.get(attr.MCP_SERVER_NAME)),
        ("server_version", a.get(attr.MCP_SERVER_VERSION)),
        ("protocol_version", a.get(attr.MCP_PROTOCOL_VERSION)),
        ("transport", a.get(attr.NETWORK_TRANSPORT)),
        (
            "error",
            {
                "type": error_type,
                "message": span.status.description or a.get(attr.ERROR_MESSAGE) or a.get(attr.MCP_EVENT_ERROR),
                "code": _jsonrpc_code(code),
            }
            if failed
            else None,
        ),
        (
            "failure",
            {"origin": a.get(attr.MCP_FAILURE_ORIGIN), "reason": a.get(attr.MCP_FAILURE_REASON)}
            if attr.MCP_FAILURE_ORIGIN in a
            else None,
        ),
        ("response_size", a.get(attr.MCP_RESPONSE_SIZE)),
        ("upstream_ms", None if (up := _seconds(a.get(attr.MCP_UPSTREAM_DURATION))) is None else up * 1000),
        ("tools_listed", None if (listed := a.get(attr.MCP_TOOLS_LISTED)) is None else list(listed)),
        ("destructive_tools", None if (listed := a.get(attr.MCP_TOOLS_DESTRUCTIVE)) is None else list(listed)),
        ("prompts_listed", None if (listed := a.get(attr.MCP_PROMPTS_LISTED)) is None else list(listed)),
        ("content", _content(a, method)),
    ):
        if value is not None:
            event[field] = value
    if custom:
        event["custom"] = {
            "parameters": _json(a.get(attr.MCP_EVENT_PARAMETERS)),
            "response": _json(a.get(attr.MCP_EVENT_RESPONSE)),
            "message": a.get(attr.MCP_EVENT_MESSAGE),
        }
    return event


def _jsonrpc_code(code: object) -> int | None:
    """``rpc.response.status_code`` as the JSON-RPC error code it names (32 bits), else None: a span with a
    nonsense code still maps (its ``error.type`` keeps the text)."""
    if not isinstance(code, str) or not code.lstrip("-").isdigit() or len(code) > 11:
        return None
    value = int(code)
    return value if -(2**31) <= value < 2**31 else None

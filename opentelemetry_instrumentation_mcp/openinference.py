"""OpenInference attributes (Arize Phoenix, Arize), derived from ours when a span ends; off by default.

Phoenix draws a span's kind, its session and its input and output from OpenInference
attributes only. With ``instrument(openinference=True)`` (or
``OTEL_INSTRUMENTATION_MCP_OPENINFERENCE=true``) each MCP span also carries:

- ``openinference.span.kind``: ``TOOL`` (``tools/call``), ``PROMPT`` (``prompts/get``),
  ``RETRIEVER`` (``resources/read``), ``CHAIN`` (every other message);
- ``session.id``: ``mcp.session.id``; ``tool.name``: ``gen_ai.tool.name``;
- ``input.value`` / ``output.value`` (``application/json``): the captured arguments and
  result, so only when content capture is on, redacted like every captured string;
- ``metadata``: JSON of the client, the user intent and the failure verdict.

Nothing is captured here that the span does not already hold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from opentelemetry.util.types import AttributeValue

from opentelemetry_instrumentation_mcp import attributes as attr

ENV = "OTEL_INSTRUMENTATION_MCP_OPENINFERENCE"

SPAN_KIND = "openinference.span.kind"
SESSION_ID = "session.id"
TOOL_NAME = "tool.name"
INPUT_VALUE = "input.value"
INPUT_MIME_TYPE = "input.mime_type"
OUTPUT_VALUE = "output.value"
OUTPUT_MIME_TYPE = "output.mime_type"
METADATA = "metadata"
JSON = "application/json"

_KINDS = {"tools/call": "TOOL", "prompts/get": "PROMPT", "resources/read": "RETRIEVER"}
_METADATA_KEYS = (
    attr.MCP_CLIENT_NAME,
    attr.MCP_USER_INTENT,
    attr.MCP_FAILURE_ORIGIN,
    attr.MCP_FAILURE_REASON,
)


def of(span: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
    """The OpenInference attributes of an MCP span with these attributes."""
    method = span.get(attr.MCP_METHOD_NAME)
    found: dict[str, AttributeValue] = {SPAN_KIND: _KINDS.get(method, "CHAIN") if isinstance(method, str) else "CHAIN"}
    for ours, theirs in ((attr.MCP_SESSION_ID, SESSION_ID), (attr.GEN_AI_TOOL_NAME, TOOL_NAME)):
        if ours in span:
            found[theirs] = span[ours]
    arguments = span.get(attr.GEN_AI_TOOL_CALL_ARGUMENTS)
    if arguments is None:
        variables = {
            key[len(attr.GEN_AI_PROMPT_VARIABLE_PREFIX):]: value
            for key, value in span.items() if key.startswith(attr.GEN_AI_PROMPT_VARIABLE_PREFIX)
        }  # fmt: skip
        arguments = json.dumps(variables, ensure_ascii=False) if variables else None
    if arguments is not None:
        found[INPUT_VALUE], found[INPUT_MIME_TYPE] = arguments, JSON
    result = span.get(attr.GEN_AI_TOOL_CALL_RESULT)
    if result is not None:
        found[OUTPUT_VALUE], found[OUTPUT_MIME_TYPE] = result, JSON
    metadata = {key: span[key] for key in _METADATA_KEYS if key in span}
    if metadata:
        found[METADATA] = json.dumps(metadata, ensure_ascii=False)
    return found

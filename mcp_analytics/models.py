"""The ingest schema of ``POST /v1/events``: what the exporter sends, checked field by field.

Limits are part of the contract: a batch, a string or a JSON value over them is
refused with a 4xx that names the field, never truncated silently.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import json

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest request body, after gzip decompression."""
MAX_EVENTS_PER_BATCH = 10_000
MAX_CONTENT_BYTES = 64 * 1024
"""Captured content (arguments, results, custom payloads) per event, as stored JSON."""
MAX_TOOLS_LISTED = 1000
"""Tool names of one ``tools/list`` event: as many as the instrumentation records in ``mcp.tools.listed``."""

Name = Annotated[str, StringConstraints(max_length=512)]
Text = Annotated[str, StringConstraints(max_length=16_384)]
HexId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Error(_Strict):
    type: Name | None = None
    message: Text | None = None
    code: int | None = None


class Failure(_Strict):
    origin: Name | None = None
    reason: Name | None = None


class Event(_Strict):
    """One MCP message (or custom event) as the exporter maps it (``exporter/events.py``)."""

    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    timestamp_ns: Annotated[int, Field(ge=0, lt=2**63)]
    duration_ms: Annotated[float, Field(ge=0)] = 0.0
    kind: Literal["server", "client", "internal", "producer", "consumer"] = "server"
    session_id: Name | None = None
    stateless: bool = False
    resource: Text | None = None
    intent: Text | None = None
    user_id: Name | None = None
    user_name: Name | None = None
    client_name: Name | None = None
    client_version: Name | None = None
    server_name: Name | None = None
    server_version: Name | None = None
    protocol_version: Name | None = None
    transport: Name | None = None
    is_error: bool = False
    error: Error | None = None
    failure: Failure | None = None
    argument_keys: Annotated[list[Name], Field(max_length=256)] = []
    tools_listed: Annotated[list[Name], Field(max_length=MAX_TOOLS_LISTED)] | None = None
    response_size: Annotated[int, Field(ge=0)] | None = None
    upstream_ms: Annotated[float, Field(ge=0)] | None = None
    content: dict[str, Any] | None = None
    custom: dict[str, Any] | None = None
    trace_id: HexId | None = None
    span_id: HexId | None = None

    @field_validator("content", "custom")
    @classmethod
    def _bounded(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, default=str)) > MAX_CONTENT_BYTES:
            raise ValueError(f"larger than {MAX_CONTENT_BYTES} bytes as JSON")
        return value


class EventBatch(_Strict):
    events: Annotated[list[Event], Field(max_length=MAX_EVENTS_PER_BATCH)]


class IngestResult(BaseModel):
    accepted: int = Field(description="Events stored by this request.")
    duplicates: int = Field(description="Events already stored (same event id): a retried batch is not counted twice.")

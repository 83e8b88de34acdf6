"""The ingest schema of ``POST /v1/events``: what the exporter sends, checked field by field.

Limits are part of the contract: a batch, a string or a JSON value over them is
refused with a 4xx that names the field, never truncated silently.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Required

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter
from typing_extensions import TypedDict

SCHEMA_VERSION = 1
"""The event format this API reads (the exporter's ``EVENT_SCHEMA_VERSION``): a batch with another is refused whole."""
MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest request body, after gzip decompression."""
MAX_EVENTS_PER_BATCH = 10_000
MAX_CONTENT_BYTES = 64 * 1024
"""Captured content (arguments, results, custom payloads) per event, as stored JSON."""
MAX_TOOLS_LISTED = 1000
"""Tool names of one ``tools/list`` event: as many as the instrumentation records in ``mcp.tools.listed``."""
DEFAULTS: dict[str, Any] = {"duration_ms": 0.0, "kind": "server", "stateless": False, "is_error": False,
                            "argument_keys": []}  # fmt: skip
"""What an event that leaves these fields out has (any other field it leaves out is null)."""

Name = Annotated[str, StringConstraints(max_length=512)]
Int32 = Annotated[int, Field(ge=-(2**31), lt=2**31)]
"""A JSON-RPC error code as stored (INTEGER)."""
Count = Annotated[int, Field(ge=0, lt=2**63)]
"""A size as stored (BIGINT)."""
Milliseconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A duration: finite (an infinite one would turn every percentile of its window into null)."""
Text = Annotated[str, StringConstraints(max_length=16_384)]
HexId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,64}$")]


def _as_bounded_json(value: dict[str, Any]) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str)
    if len(text) > MAX_CONTENT_BYTES:
        raise ValueError(f"larger than {MAX_CONTENT_BYTES} bytes as JSON")
    return text


JsonObject = Annotated[dict[str, Any], AfterValidator(_as_bounded_json)]
"""A JSON object, kept as its JSON text once validated (what the store writes)."""


def _documented_default(field: str) -> Any:
    """The ``Annotated`` metadata that shows ``DEFAULTS[field]`` as the field's default in the JSON schema."""
    return Field(json_schema_extra={"default": DEFAULTS[field]})


class Error(TypedDict, total=False):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    type: Name | None
    message: Text | None
    code: Int32 | None


class Failure(TypedDict, total=False):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    origin: Name | None
    reason: Name | None


class Event(TypedDict, total=False):
    """One MCP message (or custom event) as the exporter maps it (``exporter/events.py``).

    Validated events are plain dicts (several times cheaper to validate and to turn into columns than models):
    build them with ``validated_event``, not by calling ``Event``. A field the schema does not know is an error,
    never dropped: a new field comes with a new ``schema`` version."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    schema: Literal[1]
    """The format's version (``SCHEMA_VERSION``); events mapped from OTLP by the API itself have none."""
    project: Name | None
    """The project the exporter was configured with: it must be the API key's (checked by the API)."""
    event_id: Required[Annotated[str, StringConstraints(min_length=1, max_length=128)]]
    type: Required[Annotated[str, StringConstraints(min_length=1, max_length=256)]]
    timestamp_ns: Required[Annotated[int, Field(ge=0, lt=2**63)]]
    duration_ms: Annotated[Milliseconds, _documented_default("duration_ms")]
    kind: Annotated[Literal["server", "client", "internal", "producer", "consumer"], _documented_default("kind")]
    session_id: Name | None
    stateless: Annotated[bool, _documented_default("stateless")]
    resource: Text | None
    intent: Text | None
    user_id: Name | None
    user_name: Name | None
    user_data: JsonObject | None
    caller_id: Name | None
    client_name: Name | None
    client_version: Name | None
    server_name: Name | None
    server_version: Name | None
    protocol_version: Name | None
    transport: Name | None
    is_error: Annotated[bool, _documented_default("is_error")]
    error: Error | None
    failure: Failure | None
    argument_keys: Annotated[list[Name], Field(max_length=256), _documented_default("argument_keys")]
    tools_listed: Annotated[list[Name], Field(max_length=MAX_TOOLS_LISTED)] | None
    destructive_tools: Annotated[list[Name], Field(max_length=MAX_TOOLS_LISTED)] | None
    prompts_listed: Annotated[list[Name], Field(max_length=MAX_TOOLS_LISTED)] | None
    response_size: Count | None
    upstream_ms: Milliseconds | None
    content: JsonObject | None
    custom: JsonObject | None
    trace_id: HexId | None
    span_id: HexId | None


class EventBatch(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    events: Annotated[list[Event], Field(max_length=MAX_EVENTS_PER_BATCH)]


EVENT = TypeAdapter(Event)
BATCH = TypeAdapter(EventBatch)


def validated_event(**fields: Any) -> Event:
    """An event checked as ``POST /v1/events`` checks it (``pydantic.ValidationError`` otherwise)."""
    return EVENT.validate_python(fields)


class Rejection(BaseModel):
    index: int = Field(description="The event's position in the batch.")
    event_id: str | None = Field(None, description="Its event id, where it has a usable one.")
    loc: list[str | int] = Field(description="Where in the event the problem is.")
    msg: str


class IngestResult(BaseModel):
    accepted: int = Field(description="Events stored by this request.")
    duplicates: int = Field(description="Events already stored (same event id): a retried batch is not counted twice.")
    rejected: int = Field(0, description="Events refused (the others are stored): see `errors`.")
    errors: list[Rejection] = Field(default_factory=list, description="Why, for the first 20 refused events.")

"""OTLP/HTTP trace ingest: protobuf or JSON requests decoded to spans, then mapped like the exporter maps them.

So a Collector, or an MCP server in another language, can feed the API directly;
the span-to-event mapping stays in one place (``exporter/events.py``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode

from opentelemetry.exporter.mcp_analytics.events import is_analytics_span, to_event

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class OTLPDecodeError(ValueError):
    pass


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON spells trace and span ids in hex where protobuf's JSON mapping expects base64."""
    if isinstance(node, dict):
        return {
            key: base64.b64encode(bytes.fromhex(value)).decode()
            if key in _ID_FIELDS and isinstance(value, str)
            else _hex_ids_to_base64(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    return node


def decode(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        if content_type == PROTOBUF:
            request.ParseFromString(body)
        else:
            json_format.ParseDict(_hex_ids_to_base64(json.loads(body)), request, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        raise OTLPDecodeError(f"not an OTLP ExportTraceServiceRequest ({content_type}): {error}") from None
    return request


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    if which == "kvlist_value":
        return json.dumps({kv.key: _value(kv.value) for kv in value.kvlist_value.values}, default=str)
    return getattr(value, which) if which else None


def spans(request: ExportTraceServiceRequest) -> Iterator[ReadableSpan]:
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise OTLPDecodeError(f"span {span.name!r}: trace id must be 16 bytes and span id 8 bytes")
                code = StatusCode(span.status.code) if span.status.code in (0, 1, 2) else StatusCode.UNSET
                yield ReadableSpan(
                    name=span.name,
                    context=SpanContext(
                        int.from_bytes(span.trace_id, "big"), int.from_bytes(span.span_id, "big"), False
                    ),
                    attributes={kv.key: _value(kv.value) for kv in span.attributes},
                    kind=SpanKind(span.kind - 1) if 1 <= span.kind <= 5 else SpanKind.INTERNAL,
                    status=Status(code, span.status.message or None if code is StatusCode.ERROR else None),
                    start_time=span.start_time_unix_nano,
                    end_time=span.end_time_unix_nano,
                )


def events(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """The analytics events of the MCP spans in a request; other spans are not analytics and are left out."""
    return [to_event(span) for span in spans(request) if is_analytics_span(span)]

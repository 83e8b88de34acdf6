"""A real OTLP/HTTP receiver on 127.0.0.1 for tests: what another process exported, decoded.

It accepts ``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs`` with protobuf
bodies (gzip or not), answers 200 with the empty ``Export*ServiceResponse``,
and keeps what it decoded: spans flattened to ``ReceivedSpan``, metric data
points to ``ReceivedPoint``.

Use the ``otlp_receiver`` fixture (``from tests.otlp_receiver import
otlp_receiver_fixture``) or ``with OTLPReceiver() as receiver:``; point the
exporting process at ``receiver.endpoint`` (``OTEL_EXPORTER_OTLP_ENDPOINT``)
with ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf``.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.trace import SpanKind, StatusCode

if TYPE_CHECKING:
    from typing import Self

_T = TypeVar("_T")

_ROUTES: dict[str, tuple[Any, Any]] = {
    "/v1/traces": (ExportTraceServiceRequest, ExportTraceServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
}


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived on the wire. Ids are lowercase hex; a root span's ``parent_span_id`` is None."""

    name: str
    kind: SpanKind
    trace_id: str
    span_id: str
    parent_span_id: str | None
    attributes: dict[str, Any]
    status_code: StatusCode
    status_message: str
    resource: dict[str, Any]
    scope: str
    scope_version: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    links: list[tuple[str, str]] = field(default_factory=list)
    """``(trace_id, span_id)`` of each link."""
    events: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReceivedPoint:
    """One metric data point as it arrived: histogram points carry ``count``/``sum``, others ``value``."""

    metric: str
    unit: str
    data_type: str
    """``histogram``, ``sum``, ``gauge``, ``exponential_histogram`` or ``summary``."""
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    count: int | None = None
    sum: float | None = None
    value: float | int | None = None
    explicit_bounds: tuple[float, ...] = ()
    exemplars: tuple[tuple[str | None, str | None], ...] = ()
    """(trace id, span id) in hex of each exemplar."""


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as the Python value the exporting SDK was given (sequences as tuples)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(any_value(item) for item in value.array_value.values)
    if which == "kvlist_value":
        return key_values(value.kvlist_value.values)
    return getattr(value, which)


def key_values(pairs: Any) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


def _hex(raw: bytes) -> str | None:
    return raw.hex() if raw else None


def _spans_of(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    found = []
    for resource_spans in request.resource_spans:
        resource = key_values(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(
                    ReceivedSpan(
                        name=span.name,
                        # proto: UNSPECIFIED=0, INTERNAL=1, SERVER=2, ...; API: INTERNAL=0, SERVER=1, ...
                        kind=SpanKind(span.kind - 1) if span.kind else SpanKind.INTERNAL,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=_hex(span.parent_span_id),
                        attributes=key_values(span.attributes),
                        status_code=StatusCode(span.status.code),
                        status_message=span.status.message,
                        resource=resource,
                        scope=scope_spans.scope.name,
                        scope_version=scope_spans.scope.version,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                        events=[event.name for event in span.events],
                    )
                )
    return found


def _points_of(request: ExportMetricsServiceRequest) -> list[ReceivedPoint]:
    found = []
    for resource_metrics in request.resource_metrics:
        resource = key_values(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                data_type = metric.WhichOneof("data")
                if data_type is None:
                    continue
                common = {
                    "metric": metric.name,
                    "unit": metric.unit,
                    "data_type": data_type,
                    "resource": resource,
                    "scope": scope_metrics.scope.name,
                }
                for point in getattr(metric, data_type).data_points:
                    attributes = key_values(point.attributes)
                    if data_type in ("histogram", "exponential_histogram", "summary"):
                        bounds = tuple(point.explicit_bounds) if data_type == "histogram" else ()
                        exemplars = tuple((_hex(e.trace_id), _hex(e.span_id)) for e in getattr(point, "exemplars", ()))
                        found.append(
                            ReceivedPoint(
                                **common,
                                attributes=attributes,
                                count=point.count,
                                sum=point.sum,
                                explicit_bounds=bounds,
                                exemplars=exemplars,
                            )
                        )
                    else:
                        value = getattr(point, point.WhichOneof("value"))
                        found.append(ReceivedPoint(**common, attributes=attributes, value=value))
    return found


class OTLPReceiver:
    """An OTLP/HTTP protobuf receiver on a free loopback port, serving from a background thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._condition = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._points: list[ReceivedPoint] = []
        self._logs = 0
        self._requests: list[tuple[str, dict[str, str]]] = []
        self._errors: list[str] = []
        self._server = ThreadingHTTPServer((host, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        """The base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (exporters append ``/v1/traces`` etc.)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="otlp-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what arrived ------------------------------------------------------------------------

    @property
    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far, ordered by start time."""
        with self._condition:
            return sorted(self._spans, key=lambda span: span.start_time_unix_nano)

    def server_spans(self) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.kind == SpanKind.SERVER]

    @property
    def points(self) -> list[ReceivedPoint]:
        with self._condition:
            return list(self._points)

    def metric_points(self, name: str) -> list[ReceivedPoint]:
        return [point for point in self.points if point.metric == name]

    @property
    def requests(self) -> list[tuple[str, dict[str, str]]]:
        """``(path, headers)`` of every POST received, decodable or not."""
        with self._condition:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        """Requests the receiver could not decode (each one answered 400)."""
        with self._condition:
            return list(self._errors)

    def wait_for(self, predicate: Callable[[OTLPReceiver], _T], timeout: float = 10.0) -> _T:
        """Block until ``predicate(self)`` is truthy (checked on every arrival) and return its value.

        Raises ``AssertionError`` describing what did arrive when ``timeout`` seconds pass first.
        """
        with self._condition:
            result = self._condition.wait_for(lambda: predicate(self), timeout=timeout)
        if not result:
            names = [(span.scope, span.kind.name, span.name) for span in self.spans]
            raise AssertionError(
                f"OTLP receiver: condition not met within {timeout}s; spans received: {names}; "
                f"metric points: {len(self.points)}; requests: {[path for path, _ in self.requests]}; "
                f"errors: {self.errors}"
            )
        return result

    # -- HTTP ---------------------------------------------------------------------------------

    def _store(self, path: str, headers: dict[str, str], body: bytes) -> bytes:
        request_type, response_type = _ROUTES[path]
        request = request_type.FromString(body)
        with self._condition:
            self._requests.append((path, headers))
            if path == "/v1/traces":
                self._spans.extend(_spans_of(request))
            elif path == "/v1/metrics":
                self._points.extend(_points_of(request))
            else:
                self._logs += sum(len(s.log_records) for r in request.resource_logs for s in r.scope_logs)
            self._condition.notify_all()
        return response_type().SerializeToString()

    def _reject(self, path: str, headers: dict[str, str], reason: str) -> None:
        with self._condition:
            self._requests.append((path, headers))
            self._errors.append(f"{path}: {reason}")
            self._condition.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                headers = {key.lower(): value for key, value in self.headers.items()}
                if path not in _ROUTES:
                    receiver._reject(path, headers, "unknown path")
                    self._answer(404, b"")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    encoding = headers.get("content-encoding", "").lower()
                    if encoding == "gzip":
                        body = gzip.decompress(body)
                    elif encoding == "deflate":
                        body = zlib.decompress(body)
                    elif encoding not in ("", "identity"):
                        raise ValueError(f"unsupported Content-Encoding {encoding!r}")
                    answer = receiver._store(path, headers, body)
                except Exception as exc:  # noqa: BLE001 - any undecodable body is the exporter's fault
                    receiver._reject(path, headers, repr(exc))
                    self._answer(400, b"")
                    return
                self._answer(200, answer)

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        return Handler


@pytest.fixture(name="otlp_receiver")
def otlp_receiver_fixture() -> Iterator[OTLPReceiver]:
    """A started ``OTLPReceiver``, stopped after the test."""
    with OTLPReceiver() as receiver:
        yield receiver


__all__ = ["OTLPReceiver", "ReceivedPoint", "ReceivedSpan", "any_value", "otlp_receiver_fixture"]

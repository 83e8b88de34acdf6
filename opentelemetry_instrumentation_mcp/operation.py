"""One MCP operation: its span, its duration point, and how its outcome is recorded."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram
from opentelemetry.trace import Span, StatusCode, set_span_in_context
from opentelemetry.util.types import AttributeValue

from opentelemetry_instrumentation_mcp import attributes as attr
from opentelemetry_instrumentation_mcp import failures, openinference
from opentelemetry_instrumentation_mcp.content import ContentPolicy
from opentelemetry_instrumentation_mcp.failures import Failure

logger = logging.getLogger(__name__)

ErrorOf = Callable[[BaseException], "tuple[int, str, Any] | None"]
"""Maps an exception to the JSON-RPC error ``(code, message, data)`` the peer receives (server side) or
received (client side); None where no JSON-RPC error answers it."""

SERVER_SIDE_ORIGINS = frozenset({failures.FailureOrigin.SERVER.value, failures.FailureOrigin.UPSTREAM.value})
"""Failures that set a server span's status to ERROR: the server's own and its upstreams'."""


_CHILD_KEYS = (attr.MCP_SESSION_ID, attr.GEN_AI_TOOL_NAME)
"""What spans started inside a server operation (a tool's upstream calls) carry of it."""

current_server_operation: ContextVar[Operation | None] = ContextVar("opentelemetry_mcp_operation", default=None)
"""The SERVER operation whose handler is running (where a tool's exception is noted)."""


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.CancelledError):
        return True
    try:
        return isinstance(exc, anyio.get_cancelled_exc_class())
    except Exception:  # no running async library  # noqa: BLE001
        return False


@dataclass(frozen=True, slots=True)
class Side:
    """What every operation of one side (server or client) of one ``instrument()`` shares."""

    server: bool
    histogram: Histogram
    """``mcp.server.operation.duration`` or ``mcp.client.operation.duration``."""
    content: ContentPolicy
    openinference: bool = False
    """Add the OpenInference attributes derived from the span's own when it ends (``openinference``)."""
    upstream_histogram: Histogram | None = None
    """Where the upstream time is recorded too (server side), with the duration's attributes."""


class Operation:
    """A started span plus its metric point; a context manager that makes the span current.

    The adapter reports the outcome (``jsonrpc_error``, ``tool_error``) while the
    operation runs; ``__exit__`` classifies whatever exception escaped, ends the
    span and records the duration. It never raises.
    """

    __slots__ = (
        "_context",
        "_current_token",
        "_error_of",
        "_metric_attributes",
        "_noted",
        "_owned",
        "_side",
        "_span_attributes",
        "_start",
        "_token",
        "_upstream",
        "failure",
        "session",
        "span",
    )

    def __init__(
        self,
        span: Span,
        parent: Context | None,
        side: Side,
        metric_attributes: dict[str, AttributeValue],
        error_of: ErrorOf,
        *,
        span_attributes: dict[str, AttributeValue] | None = None,
        session: Any = None,
        owned: bool = True,
    ) -> None:
        self.span = span
        self._context = set_span_in_context(span, parent)
        self._token: Token[Context] | None = None
        self._current_token: Token[Operation | None] | None = None
        self._start = time.perf_counter()
        self._side = side
        self._metric_attributes = metric_attributes
        """Shared with other operations of the same target and session: replaced, never changed in place."""
        self._error_of = error_of
        self.failure: Failure | None = None
        """The verdict, once the operation failed."""
        self._noted: tuple[BaseException, BaseException, Failure | None] | None = None
        """What ``note_exception`` was told: the exception, what the tool raised, the adapter's verdict."""
        self._upstream: float | None = None
        self._owned = owned
        """False when the span is a framework's, current already and ended by it: this only enriches it."""
        self.session = session
        """The ``records.Session`` the message belongs to."""
        self._span_attributes = span_attributes
        """The attributes the span started with (server side), read by ``child_attributes``."""

    @property
    def child_attributes(self) -> dict[str, AttributeValue]:
        """What spans started inside this operation (its tool's upstream calls) are given of it."""
        started = self._span_attributes or {}
        return {key: started[key] for key in _CHILD_KEYS if key in started}

    def __enter__(self) -> Operation:
        if self._owned:
            self._token = otel_context.attach(self._context)
        if self._side.server:
            self._current_token = current_server_operation.set(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        if self._current_token is not None:
            current_server_operation.reset(self._current_token)
        try:
            if exc is not None and self.failure is None:
                self.exception(exc)
            self.end()
        except Exception:  # never raise into the application
            logger.debug("failed to end an MCP span", exc_info=True)

    def inject(self, carrier: dict[str, object]) -> None:
        """Write this span's context (``traceparent``, ``tracestate``, ``baggage``) into ``carrier``."""
        propagate.inject(carrier, context=self._context)

    def set_attributes(self, attributes: dict[str, AttributeValue]) -> None:
        """Add attributes known only later (negotiated version, client info)."""
        self.span.set_attributes(attributes)
        if attr.MCP_PROTOCOL_VERSION in attributes:
            version = attributes[attr.MCP_PROTOCOL_VERSION]
            self._metric_attributes = {**self._metric_attributes, attr.MCP_PROTOCOL_VERSION: version}

    def jsonrpc_error(self, code: int, message: str, data: Any = None) -> None:
        """The peer answered (or receives) a JSON-RPC error; ``data``: its ``data``, where a server's verdict may be."""
        found = self._noted_failure() if self._side.server else failures.from_wire(data)
        self._fail(str(code), message, found or failures.of_jsonrpc(code, message), status_code=str(code))

    def add_upstream(self, seconds: float) -> None:
        """An upstream call made while this operation ran took ``seconds``."""
        self._upstream = (self._upstream or 0.0) + seconds

    @property
    def captures_content(self) -> bool:
        return self._side.content.capture

    def capture_result(self, result: Any) -> None:
        """A ``tools/call`` result (wire-shaped), when content capture is on; binary content as markers."""
        captured = self._side.content.json(result)
        if captured is not None:
            self.span.set_attribute(attr.GEN_AI_TOOL_CALL_RESULT, captured)

    def response_size(self, size: int) -> None:
        """The answer's size in bytes, as JSON on the wire: the cost signal."""
        self.span.set_attribute(attr.MCP_RESPONSE_SIZE, size)

    def note_exception(
        self, exc: BaseException, raised: BaseException | None = None, verdict: Failure | None = None
    ) -> None:
        """``exc``: what a tool or handler raised, which the server answers (an ``isError`` result, a JSON-RPC
        error) without letting it escape; ``raised``: what the tool itself raised, where the SDK wrapped it;
        ``verdict``: what an adapter knows it means (else the exception chain is read)."""
        self._noted = (exc, raised or exc, verdict)

    def tool_error(self, text: str | None = None, meta: Any = None) -> None:
        """A ``tools/call`` result with ``isError`` (``text``: its first text content; ``meta``: its ``_meta``)."""
        found = self._noted_failure() if self._side.server else failures.from_wire(meta)
        self._fail(attr.TOOL_ERROR, text, found or failures.of_tool_result(text), status_code=None)

    def _noted_failure(self) -> Failure | None:
        """Server side: the noted exception, recorded as the span's exception event, and what its chain says."""
        if self._noted is None:
            return None
        exc, raised, verdict = self._noted
        self._record_exception(raised)
        return verdict or failures.of_exception(exc, default=None)

    def auth_failure(self, reason: str, http_status: int, description: str) -> None:
        """Refused by the server's bearer-auth middleware before MCP dispatch: the client must act."""
        self._fail(str(http_status), description, failures.failure(reason), status_code=None)

    def cancelled(self) -> None:
        """The request was cancelled (by the peer or by its caller) before it completed."""
        self._fail(attr.CANCELLED, "cancelled", failures.CANCELLED, status_code=None)

    def exception(self, exc: BaseException) -> None:
        """``exc`` escaped the operation: a handler raised (server side), or the request failed (client side)."""
        if _is_cancellation(exc):
            self.cancelled()
            return
        error = self._error_of(exc)
        if error is None:  # no JSON-RPC answer: the request itself failed
            self._record_exception(exc)
            found = failures.of_exception(exc) or failures.INTERNAL_ERROR
            self._fail(type(exc).__qualname__, str(exc), found, status_code=None)
            return
        if self._side.server:  # a handler raised: the peer gets ``error``, the span what was raised and why
            self.note_exception(exc)
        self.jsonrpc_error(*error)

    def _record_exception(self, exc: BaseException) -> None:
        """The exception event, its message and stack trace redacted like every other captured string."""
        stacktrace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        event: dict[str, AttributeValue] = {}
        for key, value in ((attr.EXCEPTION_MESSAGE, str(exc)), (attr.EXCEPTION_STACKTRACE, stacktrace)):
            event[key] = self._side.content.text(value) or ""
        self.span.record_exception(exc, attributes=event)

    def _fail(self, error_type: str, description: str | None, failure: Failure, *, status_code: str | None) -> None:
        """Record the verdict. Status ERROR: on a client every failure; on a server only its own or its
        upstream's (a client's mistake, an auth refusal or a cancellation leaves it unset, and ``error.message``
        says what the peer was told)."""
        self.failure = failure
        found: dict[str, AttributeValue] = {
            attr.ERROR_TYPE: error_type,
            attr.MCP_FAILURE_ORIGIN: failure.origin,
            attr.MCP_FAILURE_REASON: failure.reason,
        }
        if status_code is not None:
            found[attr.RPC_RESPONSE_STATUS_CODE] = status_code
        # A closed set of origins and reasons: bounded cardinality. A new dict: the operation's was shared.
        self._metric_attributes = {**self._metric_attributes, **found}
        self.span.set_attributes(found)
        content = self._side.content
        if not self._side.server or failure.origin in SERVER_SIDE_ORIGINS:
            self.span.set_status(StatusCode.ERROR, content.text(description))
            return
        message = content.text(description)  # no ERROR status to describe it: what the peer was told
        if message:
            self.span.set_attribute(attr.ERROR_MESSAGE, message)

    def end(self) -> None:
        side = self._side
        if self._upstream is not None:
            self.span.set_attribute(attr.MCP_UPSTREAM_DURATION, self._upstream)
            if side.upstream_histogram is not None:
                side.upstream_histogram.record(self._upstream, self._metric_attributes, context=self._context)
        if side.openinference and self.span.is_recording():
            self.span.set_attributes(openinference.of(getattr(self.span, "attributes", None) or {}))
        if self._owned:
            self.span.end()
        # In the span's context, so an exemplar of this point refers to this operation's span.
        side.histogram.record(time.perf_counter() - self._start, self._metric_attributes, context=self._context)

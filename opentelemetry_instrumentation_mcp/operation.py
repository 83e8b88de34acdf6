"""One MCP operation: its span, its duration point, and how its outcome is recorded."""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any
from contextvars import ContextVar, Token
from types import TracebackType

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram
from opentelemetry.trace import Span, StatusCode, set_span_in_context
from opentelemetry.util.types import AttributeValue

from opentelemetry_instrumentation_mcp import attributes as attr
from opentelemetry_instrumentation_mcp import failures
from opentelemetry_instrumentation_mcp.content import ContentPolicy
from opentelemetry_instrumentation_mcp.failures import Failure

logger = logging.getLogger(__name__)

ErrorOf = Callable[[BaseException], "tuple[int, str] | None"]
"""Maps an SDK exception to the JSON-RPC ``(code, message)`` the peer receives, or None."""

# JSON-RPC codes that mean the client made a mistake: not a failure of the server
# (parse error, invalid request, method not found, invalid params, resource not found).
CLIENT_FAULT_CODES = frozenset({-32700, -32600, -32601, -32602, -32002})


current_server_operation: ContextVar[Operation | None] = ContextVar("opentelemetry_mcp_operation", default=None)
"""The SERVER operation whose handler is running (where a tool's exception is noted)."""


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.CancelledError):
        return True
    import anyio  # noqa: PLC0415 - only reached under an instrumented mcp, which depends on anyio

    try:
        return isinstance(exc, anyio.get_cancelled_exc_class())
    except Exception:  # no running async library  # noqa: BLE001
        return False


class Operation:
    """A started span plus its metric point; a context manager that makes the span current.

    The adapter reports the outcome (``jsonrpc_error``, ``tool_error``) while the
    operation runs; ``__exit__`` classifies whatever exception escaped, ends the
    span and records the duration. It never raises.
    """

    __slots__ = (
        "span",
        "_context",
        "_token",
        "_start",
        "_histogram",
        "_metric_attributes",
        "_server_side",
        "_error_of",
        "_failed",
        "_tool_exception",
        "_current_token",
        "_content",
        "_upstream",
        "child_attributes",
        "session",
        "_owned",
    )

    def __init__(
        self,
        span: Span,
        parent: Context | None,
        histogram: Histogram,
        metric_attributes: dict[str, AttributeValue],
        *,
        server_side: bool,
        error_of: ErrorOf,
        content: ContentPolicy,
        child_attributes: dict[str, AttributeValue] | None = None,
        session: Any = None,
        owned: bool = True,
    ) -> None:
        self.span = span
        self._context = set_span_in_context(span, parent)
        self._token: object | None = None
        self._start = time.perf_counter()
        self._histogram = histogram
        self._metric_attributes = metric_attributes
        self._server_side = server_side
        self._error_of = error_of
        self._failed = False
        self._tool_exception: BaseException | None = None
        self._current_token: Token[Operation | None] | None = None
        self._content = content
        self._upstream: float | None = None
        self._owned = owned
        """False when the span is a framework's, current already and ended by it: this only enriches it."""
        self.session = session
        """Server side: the ``records.Session`` the message belongs to."""
        self.child_attributes = child_attributes or {}
        """What spans started inside this operation (its tool's upstream calls) are given."""

    def __enter__(self) -> Operation:
        if self._owned:
            self._token = otel_context.attach(self._context)
        if self._server_side:
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
            if exc is not None and not self._failed:
                self.exception(exc)
            self.end()
        except Exception:  # never raise into the application  # noqa: BLE001
            logger.debug("failed to end an MCP span", exc_info=True)

    def inject(self, carrier: dict[str, object]) -> None:
        """Write this span's context (``traceparent``, ``tracestate``, ``baggage``) into ``carrier``."""
        propagate.inject(carrier, context=self._context)

    def set_attributes(self, attributes: dict[str, AttributeValue]) -> None:
        """Add attributes known only later (negotiated version, client info)."""
        self.span.set_attributes(attributes)
        if attr.MCP_PROTOCOL_VERSION in attributes:
            self._metric_attributes[attr.MCP_PROTOCOL_VERSION] = attributes[attr.MCP_PROTOCOL_VERSION]

    def jsonrpc_error(self, code: int, message: str) -> None:
        """The peer answered (or receives) a JSON-RPC error."""
        is_error = not self._server_side or code not in CLIENT_FAULT_CODES
        self._fail(str(code), message, failures.of_jsonrpc(code, message), status_code=str(code), is_error=is_error)

    def add_upstream(self, seconds: float) -> None:
        """An upstream call made while this operation ran took ``seconds``."""
        self._upstream = (self._upstream or 0.0) + seconds

    @property
    def captures_content(self) -> bool:
        return self._content.capture

    def capture_result(self, result: Any) -> None:
        """A ``tools/call`` result (wire-shaped), when content capture is on; binary content as markers."""
        captured = self._content.json(result)
        if captured is not None:
            self.span.set_attribute(attr.GEN_AI_TOOL_CALL_RESULT, captured)

    def response_size(self, size: int) -> None:
        """The answer's size in bytes, as JSON on the wire: the cost signal."""
        self.span.set_attribute(attr.MCP_RESPONSE_SIZE, size)

    def note_tool_exception(self, exc: BaseException) -> None:
        """The exception a tool raised, which the server turns into an ``isError`` result."""
        self._tool_exception = exc

    def tool_error(self, text: str | None = None) -> None:
        """A ``tools/call`` result with ``isError`` (``text``: its first text content)."""
        found = None
        if self._tool_exception is not None:
            found = failures.of_exception(self._tool_exception, default=None)
        if found is None:
            found = failures.of_tool_result(text)
        self._fail(attr.TOOL_ERROR, text, found, status_code=None, is_error=True)

    def auth_failure(self, reason: str, http_status: int, description: str) -> None:
        """Refused by the server's bearer-auth middleware before MCP dispatch: the client must act."""
        self._fail(str(http_status), description, failures.failure(reason), status_code=None, is_error=False)

    def cancelled(self) -> None:
        """The request was cancelled (by the peer or by its caller) before it completed."""
        self._fail(attr.CANCELLED, "cancelled", failures.CANCELLED, status_code=None, is_error=True)

    def exception(self, exc: BaseException) -> None:
        if _is_cancellation(exc):
            self.cancelled()
            return
        error = self._error_of(exc)
        if error is not None:
            self.jsonrpc_error(*error)
            return
        self._record_exception(exc)
        found = failures.of_exception(exc) or failures.INTERNAL_ERROR
        self._fail(type(exc).__qualname__, str(exc), found, status_code=None, is_error=True)

    def _record_exception(self, exc: BaseException) -> None:
        """The exception event, its message and stack trace redacted like every other captured string."""
        stacktrace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        event: dict[str, AttributeValue] = {}
        for key, value in ((attr.EXCEPTION_MESSAGE, str(exc)), (attr.EXCEPTION_STACKTRACE, stacktrace)):
            event[key] = self._content.text(value) or ""
        self.span.record_exception(exc, attributes=event)

    def _fail(
        self, error_type: str, description: str | None, failure: Failure, *, status_code: str | None, is_error: bool
    ) -> None:
        self._failed = True
        found: dict[str, AttributeValue] = {attr.ERROR_TYPE: error_type, attr.MCP_FAILURE_ORIGIN: failure.origin}
        if status_code is not None:
            found[attr.RPC_RESPONSE_STATUS_CODE] = status_code
        self._metric_attributes.update(found)
        found[attr.MCP_FAILURE_REASON] = failure.reason
        self.span.set_attributes(found)
        if is_error:
            self.span.set_status(StatusCode.ERROR, self._content.text(description))

    def end(self) -> None:
        if self._upstream is not None:
            self.span.set_attribute(attr.MCP_UPSTREAM_DURATION, self._upstream)
        if self._owned:
            self.span.end()
        # In the span's context, so an exemplar of this point refers to this operation's span.
        self._histogram.record(time.perf_counter() - self._start, self._metric_attributes, context=self._context)


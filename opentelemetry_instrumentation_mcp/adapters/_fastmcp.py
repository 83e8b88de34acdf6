"""fastmcp (4.x) servers: one SERVER span per message, whatever fastmcp's telemetry mode.

fastmcp replaces the SDK's tracing middleware with its own ``FastMCPServerMiddleware``,
which in ``native`` mode opens a SERVER span for every request (not notifications).
Our middleware goes right after it in the chain: where fastmcp's span is current it is
enriched (attributes, outcome, intent, identity, metrics) instead of a second span;
where it is not (notifications, ``propagation_only``, ``off``), ours is opened.
On stateless traffic fastmcp's span gets no ``mcp.session.id`` (see ``session_attributes_wrapper``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry.trace import Span, SpanKind, get_current_span

from opentelemetry_instrumentation_mcp import attributes as attr
from opentelemetry_instrumentation_mcp import failures
from opentelemetry_instrumentation_mcp.failures import Failure

_SCOPE = "fastmcp"
_SESSION_STATE_KEY = "_fastmcp_state_prefix"
"""Where fastmcp keeps the session id it makes up for connections without a transport id."""
_MAX_ENRICHED = 10_000

_stateless: ContextVar[bool] = ContextVar("opentelemetry_mcp_fastmcp_stateless", default=False)
"""True while fastmcp handles a stateless message (stateless HTTP, 2026-07-28)."""


def is_framework_middleware(middleware: Any) -> bool:
    kind = type(middleware)
    return kind.__name__ == "FastMCPServerMiddleware" and kind.__module__.startswith(_SCOPE)


def framework_span() -> Span | None:
    """The SERVER span fastmcp opened for the message being handled, if it did."""
    span = get_current_span()
    scope = getattr(span, "instrumentation_scope", None)
    if (
        span.is_recording()
        and getattr(span, "kind", None) is SpanKind.SERVER
        and getattr(scope, "name", None) == _SCOPE
    ):
        return span
    return None


def argument_verdict(exc: BaseException) -> Failure | None:
    """fastmcp checks a tool's arguments itself: its ``ValidationError`` is the client's mistake."""
    if type(exc).__module__.split(".", 1)[0] == "fastmcp" and type(exc).__name__ == "ValidationError":
        return failures.failure("invalid_params")
    return None


class Enriched:
    """The fastmcp spans whose outcome we recorded (the last ``_MAX_ENRICHED``): fastmcp must not overwrite it."""

    def __init__(self) -> None:
        self._span_ids: OrderedDict[int, None] = OrderedDict()

    def add(self, span: Span) -> None:
        self._span_ids[span.get_span_context().span_id] = None
        while len(self._span_ids) > _MAX_ENRICHED:
            self._span_ids.popitem(last=False)

    def record_exception_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``fastmcp.server.telemetry.record_span_exception(span, exc)``: ours already recorded it."""
        span = args[0] if args else kwargs.get("span")
        if span is not None and span.get_span_context().span_id in self._span_ids:  # fastmcp may call it twice
            return None
        return wrapped(*args, **kwargs)


def shared_session_id(connection: Any, minted: str) -> str:
    """One id for a connection without a transport id: fastmcp's if it made one, else ours, given to it."""
    state = getattr(connection, "state", None)
    if not isinstance(state, dict):
        return minted
    return state.setdefault(_SESSION_STATE_KEY, minted)


@contextmanager
def stateless_message() -> Iterator[None]:
    """fastmcp handles one stateless message (stateless HTTP, 2026-07-28) within this block."""
    token = _stateless.set(True)
    try:
        yield
    finally:
        _stateless.reset(token)


def session_attributes_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wraps ``fastmcp.server.telemetry.get_session_span_attributes``: a stateless message has no session id.

    fastmcp mints a throwaway id for each stateless request and would put it on its span as ``mcp.session.id``.
    """
    found = wrapped(*args, **kwargs)
    if _stateless.get() and isinstance(found, dict) and attr.MCP_SESSION_ID in found:
        return {key: value for key, value in found.items() if key != attr.MCP_SESSION_ID}
    return found

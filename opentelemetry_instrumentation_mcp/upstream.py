"""Upstream time: how long a tool waited on its dependencies.

A span processor on the SDK tracer provider watches spans that start while an
MCP server operation runs (a tool's httpx, requests, aiohttp or database call,
traced by their own instrumentations). It gives each the operation's session id
and tool name, and adds the duration of every outermost CLIENT span among them
to the operation, which records the sum as ``mcp.upstream.duration`` (seconds).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind

from opentelemetry_instrumentation_mcp._log import WarnOnce
from opentelemetry_instrumentation_mcp.operation import current_server_operation

try:
    from opentelemetry.sdk.trace import SpanProcessor
except ImportError:  # API only: nothing to attach to
    SpanProcessor = object  # type: ignore[assignment,misc]

MAX_TRACKED = 10_000
"""Upstream spans tracked at once; beyond that, new ones are not counted (and that is logged once)."""


class UpstreamTimer(SpanProcessor):
    def __init__(self) -> None:
        self.enabled = True
        self._open: dict[int, Any] = {}
        """span id of an open upstream CLIENT span -> the operation it counts for."""
        self._warn = WarnOnce()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if not self.enabled:
            return
        operation = current_server_operation.get()
        if operation is None or span is operation.span:
            return
        span.set_attributes(operation.child_attributes)
        parent = span.parent.span_id if span.parent is not None else None
        if span.kind is not SpanKind.CLIENT or parent in self._open:
            return  # not an upstream call, or inside one that is already counted
        if len(self._open) >= MAX_TRACKED:
            self._warn("full", "more than %d upstream spans open at once: further ones are not timed", MAX_TRACKED)
            return
        self._open[span.context.span_id] = operation

    def on_end(self, span: Any) -> None:
        operation = self._open.pop(span.context.span_id, None)
        if operation is not None and span.end_time and span.start_time:
            operation.add_upstream((span.end_time - span.start_time) / 1e9)

    def shutdown(self) -> None:
        self._open.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def attach(tracer_provider: Any) -> UpstreamTimer | None:
    """Add a timer to an SDK tracer provider; None where there is none to add it to."""
    if SpanProcessor is object or not hasattr(tracer_provider, "add_span_processor"):
        return None
    timer = UpstreamTimer()
    tracer_provider.add_span_processor(timer)
    return timer


def detach(tracer_provider: Any, timer: UpstreamTimer) -> None:
    """Take ``timer`` off ``tracer_provider``. The SDK has no public way to remove a span processor: its
    multi-processor's tuple is rebuilt under its lock; where that is not there, the timer is only disabled."""
    timer.enabled = False
    timer.shutdown()
    processors = getattr(tracer_provider, "_active_span_processor", None)
    lock, current = getattr(processors, "_lock", None), getattr(processors, "_span_processors", None)
    if processors is None or lock is None or not isinstance(current, tuple):
        return
    with lock:
        # SLF001: the SDK has no way to remove a span processor; this is its own code's update, under its lock.
        processors._span_processors = tuple(p for p in processors._span_processors if p is not timer)  # noqa: SLF001

"""Custom events: what a product team records next to the MCP messages of a session.

``publish_custom_event`` records one span in a session, with the session's
client, user and session attributes and ``mcp.event.kind=custom`` (no
``mcp.method.name``): from inside a request (the current session; the span is a
child of the request's span) or from anywhere else by session id (a session this
process does not hold, ended or served elsewhere, gets the event under its id alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry_instrumentation_mcp.operation import current_server_operation
from opentelemetry_instrumentation_mcp.records import Session

if TYPE_CHECKING:
    from opentelemetry_instrumentation_mcp.telemetry import Telemetry


@dataclass(frozen=True, slots=True)
class CustomEvent:
    name: str = "custom"
    resource_name: str | None = None
    parameters: Any = None
    response: Any = None
    message: str | None = None
    duration: float | None = None
    """Seconds the event took; the span ends now and starts that long ago."""
    is_error: bool = False
    error: str | None = None


def publish_custom_event(target: object = None, /, **fields: Any) -> bool:
    """Record a custom event; True if it was recorded. Never raises.

    ``target``: a session id (``str``), or None / the server to mean the session
    of the request being handled. ``fields``: ``name``, ``resource_name``,
    ``parameters``, ``response``, ``message``, ``duration`` (seconds),
    ``is_error``, ``error``. Every string is redacted like captured content.
    """
    from opentelemetry_instrumentation_mcp.instrumentor import MCPInstrumentor  # noqa: PLC0415 - it imports our users

    telemetry: Telemetry | None = MCPInstrumentor().telemetry  # the instrumentor is a singleton
    if telemetry is None:
        return False
    try:
        event = CustomEvent(**fields)
        operation = current_server_operation.get()
        if isinstance(target, str) and target:
            session = telemetry.find_session(target)
            if session is None and operation is not None and operation.session.session_id == target:
                session = operation.session
            if session is None:  # a session this process does not hold (ended, or another instance's)
                session = Session(session_id=target)
        else:
            session = None if operation is None else operation.session
        if session is None:
            telemetry.warn(
                "event: no session", "a custom event was not recorded: no session id given outside a request"
            )
            return False
        telemetry.custom_event(session, event)
        return True
    except Exception:  # noqa: BLE001 - publishing must never fail the caller
        telemetry.warn("event: failed", "a custom event was not recorded: failed", exc_info=True)
        return False

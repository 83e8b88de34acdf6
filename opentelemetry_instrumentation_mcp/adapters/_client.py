"""Client-side bookkeeping shared by the 1.x and 2.x client adapters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from opentelemetry_instrumentation_mcp.adapters._auth import Refusals
from opentelemetry_instrumentation_mcp.adapters._tools import first_text
from opentelemetry_instrumentation_mcp.adapters._wrapping import ObjectMap, log_internal_error
from opentelemetry_instrumentation_mcp.operation import ErrorOf, Operation, current_server_operation
from opentelemetry_instrumentation_mcp.records import CLIENT_INFO_META_KEY, Message, Session
from opentelemetry_instrumentation_mcp.telemetry import Telemetry
from opentelemetry_instrumentation_mcp.transport import current_server_peer

sdk_client_span_suppressed: ContextVar[bool] = ContextVar("opentelemetry_mcp_sdk_client_span", default=False)
"""True while our CLIENT span covers a request, so the 2.x SDK's own ``MCP send`` span is not opened."""


class ClientSessions:
    """One ``Session`` record per client session object, and its span lifecycle."""

    def __init__(self, telemetry: Telemetry, error_of: ErrorOf, describe: Callable[[Any, Session], bool]) -> None:
        self.telemetry = telemetry
        self.error_of = error_of
        self._describe = describe
        """Refreshes a record from the SDK's client session (client/server info, protocol version); True once
        there is nothing left to learn (after the handshake)."""
        self._sessions: ObjectMap[Session] = ObjectMap()
        self.refusals = Refusals()
        """Requests the server's auth refused over HTTP, whose CLIENT operations take the verdict when they fail."""

    def session_of(self, client: Any) -> Session:
        session = self._sessions.get(id(client))
        if session is None:
            session = self._sessions.put(client, new_session())
        if not session.described:
            session.described = self._describe(client, session)
        return session

    def start(self, client: Any, message: Message) -> Operation | None:
        try:
            session = self.session_of(client)
            if session.peer is not None:
                message.peer_address, message.peer_port = session.peer.address, session.peer.port
                session.session_id = session.peer.session_id
            operation = self.telemetry.client_operation(message, session, self.error_of)
            if operation is not None:
                operation.session = session
            return operation
        except Exception:  # noqa: BLE001
            log_internal_error("an MCP client request")
            return None

    def failed(self, operation: Operation) -> None:
        """The request of the current ``operation`` raised: a refused request fails with the refusal's verdict
        (its caller sees -32603 on 2.x and a cancellation on 1.x)."""
        self.refusals.take(operation)

    def start_server_initiated(self, message: Message) -> Operation | None:
        """Server side: a request the server sends its client while it handles a message (``sampling/createMessage``,
        ``elicitation/create``, ``roots/list``, ``ping``): a CLIENT span in the session of the message it handles."""
        handling = current_server_operation.get()
        if handling is None or handling.session is None:
            return None
        try:
            operation = self.telemetry.client_operation(message, handling.session, self.error_of)
            if operation is not None:
                operation.session = handling.session
            return operation
        except Exception:  # noqa: BLE001
            log_internal_error("a server-initiated request")
            return None

    def start_callback(self, client: Any, message: Message, error_of: ErrorOf) -> Operation | None:
        """Client side: a request the server sent, answered by the client's callback: a SERVER span in the
        client's session (its parent the server's CLIENT span, through ``_meta``)."""
        try:
            return self.telemetry.server_operation(message, self.session_of(client), error_of, link_ambient=False)
        except Exception:  # noqa: BLE001
            log_internal_error("a server-initiated request")
            return None

    async def aenter_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``ClientSession.__aenter__``: the session's clock starts."""
        result = await wrapped(*args, **kwargs)
        try:
            self._sessions.put(instance, new_session())
        except Exception:  # noqa: BLE001
            log_internal_error("an MCP client session start")
        return result

    async def aexit_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``ClientSession.__aexit__``: records ``mcp.client.session.duration``."""
        try:
            return await wrapped(*args, **kwargs)
        finally:
            session = self._sessions.get(id(instance))
            if session is not None:
                exc = args[1] if len(args) > 1 else kwargs.get("exc_val")
                self.telemetry.end_session(session, error_type=None if exc is None else type(exc).__qualname__)


def new_session() -> Session:
    """A client session record, knowing the server it talks to when a client transport said so."""
    peer = current_server_peer.get()
    if peer is None:
        return Session(client_side=True)
    current_server_peer.set(None)  # one transport, one session
    return Session(transport=peer.transport, peer=peer, client_side=True)


def record_tool_result(
    operation: Operation, method: str, is_error: bool, content: Any = None, meta: Any = None
) -> None:
    """A ``tools/call`` result with ``isError``: the server's verdict from its ``_meta``, else judged by its text."""
    if method == "tools/call" and is_error:
        operation.tool_error(first_text(content), meta)


def client_info_meta(operation: Operation, method: str) -> dict[str, Any] | None:
    """What a request to a stateless HTTP server adds to its ``_meta``: the client info, as 2026-07-28 requests
    carry it, since the server has no session to remember the ``initialize`` by (None for every other request)."""
    session = operation.session
    peer = None if session is None else session.peer
    if (
        method == "initialize"
        or peer is None
        or peer.http is None
        or peer.session_id is not None  # a stateful server: it knows the client from the handshake
        or session.stateless  # 2026-07-28 traffic: the SDK sends it itself
        or session.client_name is None
    ):
        return None
    return {CLIENT_INFO_META_KEY: {"name": session.client_name, "version": session.client_version or ""}}


def with_meta(
    params: Mapping[str, Any] | None, operation: Operation | None, added: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A copy of wire ``params`` whose ``_meta`` carries the span's trace context (``operation``) and ``added``
    keys where the caller's own ``_meta`` has none of that name."""
    out = dict(params) if params else {}
    meta = out.get("_meta")
    carrier = dict(meta) if isinstance(meta, Mapping) else {}
    if operation is not None:
        operation.inject(carrier)
    for key, value in (added or {}).items():
        carrier.setdefault(key, value)
    if carrier:
        out["_meta"] = carrier
    return out

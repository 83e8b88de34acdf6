"""``mcp`` 1.x client: one CLIENT span per ``ClientSession.send_request``."""

from __future__ import annotations

from typing import Any

from mcp import types
from mcp.server.session import ServerSession

from opentelemetry_instrumentation_mcp import attributes as attr
from opentelemetry_instrumentation_mcp.adapters._client import ClientSessions, client_info_meta, record_tool_result
from opentelemetry_instrumentation_mcp.adapters.v1.server import error_of, message_of, observe
from opentelemetry_instrumentation_mcp.records import Session, implementation
from opentelemetry_instrumentation_mcp.telemetry import Telemetry


class RequestWithMeta:
    """Stands in for a request model in ``BaseSession.send_request``: it dumps with the
    trace context added to ``params._meta`` and leaves the caller's object untouched."""

    __slots__ = ("_carrier", "_request")

    def __init__(self, request: Any, carrier: dict[str, Any]) -> None:
        self._request = request
        self._carrier = carrier

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() and error messages see the request's type
        return type(self._request)

    def model_dump(self, **kwargs: Any) -> dict[str, Any]:
        data = self._request.model_dump(**kwargs)
        params = data.get("params") or {}
        params["_meta"] = {**(params.get("_meta") or {}), **self._carrier}
        data["params"] = params
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def describe(client: Any, session: Session) -> bool:
    session.client_name, session.client_version = implementation(client._client_info)  # noqa: SLF001
    return True  # the client info is fixed; the handshake's answer is read by ``send_request_wrapper``


class ClientPatch:
    def __init__(self, telemetry: Telemetry) -> None:
        self.sessions = ClientSessions(telemetry, error_of, describe)

    async def received_request_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``ClientSession._received_request(responder)``: a request the server sent, answered by a callback."""
        responder = args[0]
        root = responder.request.root
        try:
            message = message_of(root.method, root.params, responder.request_id)
            session = self.sessions.session_of(instance)
        except Exception:  # noqa: BLE001
            return await wrapped(*args, **kwargs)
        operation = self.sessions.start_callback(instance, message, error_of)
        return await observe(operation, wrapped, args, kwargs, session, responder, message.method)

    async def send_request_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``ClientSession.send_request(request, result_type, ...)`` and ``ServerSession``'s."""
        request = args[0] if args else kwargs["request"]
        root = getattr(request, "root", request)
        try:
            next_id = instance._request_id  # noqa: SLF001 - the id send_request is about to use
            message = message_of(root.method, root.params, next_id)
            if isinstance(instance, ServerSession):  # a request the server sends its client while handling one
                operation = self.sessions.start_server_initiated(message)
            else:
                operation = self.sessions.start(instance, message)
        except Exception:  # noqa: BLE001
            operation = None
        if operation is None:
            return await wrapped(*args, **kwargs)
        carrier: dict[str, Any] = client_info_meta(operation, root.method) or {}
        operation.inject(carrier)
        if carrier:  # else nothing to add (no span context, no client info): the request goes as it was made
            with_meta = RequestWithMeta(request, carrier)
            if args:
                args = (with_meta, *args[1:])
            else:
                kwargs = {**kwargs, "request": with_meta}
        with operation:
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException:
                self.sessions.failed(operation)
                raise
            if isinstance(result, types.InitializeResult):
                session = self.sessions.session_of(instance)
                session.protocol_version = str(result.protocolVersion)
                session.server_name = result.serverInfo.name
                session.server_version = result.serverInfo.version or None
                operation.set_attributes({attr.MCP_PROTOCOL_VERSION: session.protocol_version})
            if isinstance(result, types.CallToolResult):
                record_tool_result(operation, root.method, result.isError, result.content, result.meta)
        return result

"""``mcp`` 2.x client: one CLIENT span per request, in place of the SDK's ``MCP send`` span."""

from __future__ import annotations

import weakref
from contextlib import nullcontext
from functools import partial
from typing import Any

from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import INVALID_SPAN

from opentelemetry_instrumentation_mcp import attributes as attr
from opentelemetry_instrumentation_mcp.adapters._client import (
    ClientSessions,
    client_info_meta,
    record_tool_result,
    sdk_client_span_suppressed,
    with_meta,
)
from opentelemetry_instrumentation_mcp.adapters._wrapping import ObjectMap
from opentelemetry_instrumentation_mcp.adapters.v2.server import error_of as server_error_of
from opentelemetry_instrumentation_mcp.operation import Operation
from opentelemetry_instrumentation_mcp.records import Session, implementation, message_from_params
from opentelemetry_instrumentation_mcp.telemetry import Telemetry


def error_of(exc: BaseException) -> tuple[int, str, Any] | None:
    """The JSON-RPC error a request received, as the SDK raises it to the caller."""
    return (exc.error.code, exc.error.message, exc.error.data) if isinstance(exc, MCPError) else None


def describe(client: Any, session: Session) -> bool:
    session.client_name, session.client_version = implementation(client._client_info)  # noqa: SLF001
    session.protocol_version = client.protocol_version
    session.stateless = session.protocol_version in MODERN_PROTOCOL_VERSIONS
    server = client.server_info
    session.server_name = None if server is None else server.name
    session.server_version = None if server is None else server.version or None
    return server is not None  # the handshake is done


class ClientPatch:
    """CLIENT spans for the requests a ``ClientSession`` sends through its dispatcher."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.sessions = ClientSessions(telemetry, error_of, describe)
        self._clients: ObjectMap[weakref.ref[Any]] = ObjectMap()
        """dispatcher -> the ``ClientSession`` it sends for, weakly (the session holds its dispatcher; server-side
        dispatchers are not in it)."""
        self.jsonrpc_send_wrapper = partial(self._send, inject=False)
        """Wraps ``JSONRPCDispatcher.send_raw_request``, which injects the current context into ``_meta`` itself."""
        self.direct_send_wrapper = partial(self._send, inject=True)
        """Wraps ``DirectDispatcher.send_raw_request`` (in-process 2026-07-28), which does not inject."""

    async def on_request_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``ClientSession._on_request(dctx, method, params)``: a request the server sent, answered by a callback."""
        dctx, method, params = _bind_request(*args, **kwargs)
        operation = self.sessions.start_callback(
            instance, message_from_params(method, dctx.request_id, params), server_error_of
        )
        if operation is None:
            return await wrapped(*args, **kwargs)
        with operation:
            return await wrapped(*args, **kwargs)

    async def aenter_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``ClientSession.__aenter__``: remembers the session's dispatcher, starts its clock."""
        self._clients.put(instance._dispatcher, weakref.ref(instance))  # noqa: SLF001
        return await self.sessions.aenter_wrapper(wrapped, instance, args, kwargs)

    async def _send(self, wrapped: Any, instance: Any, args: Any, kwargs: Any, *, inject: bool) -> Any:
        """The CLIENT span around one request of a ``ClientSession``, current while the dispatcher sends it."""
        known = self._clients.get(id(instance))
        client = None if known is None else known()
        rest: dict[str, Any] = {}
        if len(args) == 3 and not kwargs:  # how the SDK calls it
            method, params, opts = args
        else:
            method, params, opts, rest = _bind(*args, **kwargs)
        # The id the dispatcher is about to give this request: the caller's, or its counter's next.
        request_id = opts.get("request_id") if opts else None
        if request_id is None:
            counter = getattr(instance, "_next_id", None)
            request_id = None if counter is None else counter + 1
        message = message_from_params(method, request_id, params)
        if client is not None:
            operation = self.sessions.start(client, message)
        else:  # a server's dispatcher: a request it sends its client while handling a message
            operation = self.sessions.start_server_initiated(message)
        if operation is None:
            return await wrapped(*args, **kwargs)
        added = client_info_meta(operation, method)
        if inject or added:
            params = with_meta(params, operation if inject else None, added)
        suppress_token = sdk_client_span_suppressed.set(True)
        try:
            with operation:
                try:
                    result = await wrapped(method, params, opts, **rest)
                except BaseException:
                    self.sessions.failed(operation)
                    raise
                record_result(operation, method, result)
        finally:
            sdk_client_span_suppressed.reset(suppress_token)
        return result


def record_result(operation: Operation, method: str, result: Any) -> None:
    if not isinstance(result, dict):
        return
    if method == "initialize" and isinstance(result.get("protocolVersion"), str):
        operation.set_attributes({attr.MCP_PROTOCOL_VERSION: result["protocolVersion"]})
    if result.get("isError") is True:
        record_tool_result(operation, method, True, result.get("content"), result.get("_meta"))


def _bind(method: str, params: Any = None, opts: Any = None, **rest: Any) -> tuple[str, Any, Any, dict[str, Any]]:
    return method, params, opts, rest


def _bind_request(dctx: Any, method: str, params: Any = None) -> tuple[Any, str, Any]:
    return dctx, method, params


_NO_SPAN = nullcontext(INVALID_SPAN)


def sdk_span_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wraps ``mcp.shared.jsonrpc_dispatcher.otel_span``: no SDK span under ours, nor where suppressed."""
    if sdk_client_span_suppressed.get() or not is_instrumentation_enabled():
        return _NO_SPAN
    return wrapped(*args, **kwargs)

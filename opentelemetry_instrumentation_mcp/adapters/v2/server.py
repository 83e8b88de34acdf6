"""``mcp`` 2.x server: our middleware in place of the SDK's ``OpenTelemetryMiddleware``."""

from __future__ import annotations

import sys
import uuid
import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp_types import INTERNAL_ERROR, CallToolResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from opentelemetry_instrumentation_mcp import attributes as attr
from opentelemetry_instrumentation_mcp import failures
from opentelemetry_instrumentation_mcp.adapters import _fastmcp as fastmcp
from opentelemetry_instrumentation_mcp.adapters._http import auth_token, http_peer, http_transport
from opentelemetry_instrumentation_mcp.adapters._tools import first_text, record_listing, record_size
from opentelemetry_instrumentation_mcp.adapters._wrapping import ObjectMap, log_internal_error
from opentelemetry_instrumentation_mcp.failures import Failure
from opentelemetry_instrumentation_mcp.identity import IdentifyRequest, is_due
from opentelemetry_instrumentation_mcp.intent import ToolCatalog
from opentelemetry_instrumentation_mcp.records import (
    RESULT_SIZE_METHODS,
    Session,
    Transport,
    implementation,
    message_from_params,
)
from opentelemetry_instrumentation_mcp.telemetry import Telemetry
from opentelemetry_instrumentation_mcp.transport import current_transport

_internal_lookup: ContextVar[bool] = ContextVar("opentelemetry_mcp_internal_lookup", default=False)
"""True while the SDK runs a request of its own through the middleware (not an incoming message)."""


async def internal_lookup_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wraps ``_tool_input_schema``: on 2026-07-28 HTTP the SDK lists tools itself to check headers."""
    token = _internal_lookup.set(True)
    try:
        return await wrapped(*args, **kwargs)
    finally:
        _internal_lookup.reset(token)


def error_of(exc: BaseException) -> tuple[int, str, Any]:
    """The JSON-RPC error the 2.x SDK answers for a handler's ``exc`` on a handshake-era connection."""
    error = handler_exception_to_error_data(exc)
    if error is None:
        return 0, str(exc), None  # what JSONRPCDispatcher answers for any other exception
    return error.code, error.message, error.data


def modern_error_of(exc: BaseException) -> tuple[int, str, Any]:
    """The same on 2026-07-28 traffic, where anything but an ``MCPError`` is a generic internal error."""
    error = handler_exception_to_error_data(exc)
    if error is None:
        return INTERNAL_ERROR, "Internal server error", None
    return error.code, error.message, error.data


_answered: ContextVar[tuple[BaseException, Failure] | None] = ContextVar("opentelemetry_mcp_answered", default=None)
"""The exception a request's handler raised and our verdict on it, until the SDK writes the error it answers.

Set in the request's own task by the middleware, read where the SDK turns that exception into the wire error."""


def _with_verdict(error: Any, exc: BaseException | None) -> Any:
    """``error`` (the SDK's ``ErrorData`` for ``exc``) with our verdict in its ``data``, where it can carry one."""
    answered = _answered.get()
    if answered is None or exc is None or answered[0] is not exc:
        return error
    data = failures.carrying(error.data, answered[1])
    return error if data is None else error.model_copy(update={"data": data})


async def write_error_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wraps ``JSONRPCDispatcher._write_error(request_id, error)``, called while the handler's exception is handled."""
    try:
        request_id, error = _bind_write_error(*args, **kwargs)
        error = _with_verdict(error, sys.exc_info()[1])
    except Exception:  # noqa: BLE001
        log_internal_error("a 2.x error response")
        return await wrapped(*args, **kwargs)
    return await wrapped(request_id, error)


def _bind_write_error(request_id: Any, error: Any) -> tuple[Any, Any]:
    return request_id, error


def modern_error_data_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wraps ``modern_error_data(exc)``: the 2026-07-28 entries' error for a handler's exception."""
    error = wrapped(*args, **kwargs)
    try:
        return _with_verdict(error, args[0] if args else kwargs.get("exc"))
    except Exception:  # noqa: BLE001
        log_internal_error("a 2.x error response")
        return error


def _with_params(ctx: ServerRequestContext[Any, Any], params: Mapping[str, Any]) -> ServerRequestContext[Any, Any]:
    """A shallow copy of ``ctx`` with other ``params`` (``dataclasses.replace`` runs ``__init__`` again: 3x slower);
    the caller's context is left as it was."""
    try:
        copied = object.__new__(type(ctx))
        copied.__dict__.update(ctx.__dict__)
    except TypeError:  # a context without a __dict__ (slots)
        return replace(ctx, params=params)
    copied.params = params
    return copied


class TelemetryMiddleware:
    """Opens one SERVER span per inbound request and notification of one ``Server``."""

    def __init__(
        self, telemetry: Telemetry, server: Any, replaced: Any | None, *, enriched: fastmcp.Enriched | None = None
    ) -> None:
        self.telemetry = telemetry
        self.server_name, self.server_version = server.name, getattr(server, "version", None) or None
        self.replaced = replaced
        """The SDK middleware this one stands in for, put back by ``uninstrument()``."""
        self.enriched = enriched
        """Placed after fastmcp's middleware: enrich the span fastmcp opened, if it did, and note it here."""
        self.after_framework = enriched is not None
        self.catalog = ToolCatalog(telemetry.intent)
        self._sessions: ObjectMap[Session] = ObjectMap()

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if _internal_lookup.get():
            return await call_next(ctx)
        intent = None
        if ctx.method == "tools/call" and self.catalog.options.enabled:
            ctx, intent = self._take_intent(ctx)
        try:
            session = self._session(ctx)
            if is_due(session, ctx.method):
                await self.telemetry.identify(session, self._identify_request(ctx, session))
            existing = fastmcp.framework_span() if self.after_framework else None
            errors = modern_error_of if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS else error_of
            peer = http_peer(ctx.request) if ctx.request is not None else {}
            message = message_from_params(ctx.method, ctx.request_id, ctx.params, intent=intent, **peer)
            operation = self.telemetry.server_operation(message, session, errors, framework_span=existing)
            if existing is not None and operation is not None and self.enriched is not None:
                self.enriched.add(existing)
        except Exception:  # noqa: BLE001
            log_internal_error("a 2.x server message")
            operation = None
        if operation is None:
            return self._advertise_intent(ctx, await call_next(ctx))
        try:
            with operation:
                if self.after_framework and session.stateless:
                    with fastmcp.stateless_message():
                        result = await call_next(ctx)
                else:
                    result = await call_next(ctx)
                if ctx.method == "tools/list":
                    result = self._advertise_intent(ctx, result)
                try:
                    result = self._record_result(ctx, result, operation)
                except Exception:  # noqa: BLE001
                    log_internal_error("a 2.x server result")
        except Exception as exc:
            if operation.failure is not None:
                _answered.set((exc, operation.failure))  # in this request's task: read where the SDK answers it
            raise
        return result

    def _take_intent(self, ctx: ServerRequestContext[Any, Any]) -> tuple[ServerRequestContext[Any, Any], str | None]:
        """A ``tools/call`` continues without the intent argument; the tool never sees it."""
        params = ctx.params
        if type(params) is not dict and not isinstance(params, Mapping):
            return ctx, None
        try:
            intent, arguments = self.catalog.take(params.get("name"), params.get("arguments"))
        except Exception:  # noqa: BLE001
            log_internal_error("taking a 2.x user intent")
            return ctx, None
        if arguments is None:
            return ctx, None
        return _with_params(ctx, {**params, "arguments": arguments}), intent

    def _advertise_intent(self, ctx: ServerRequestContext[Any, Any], result: HandlerResult) -> HandlerResult:
        """A ``tools/list`` answer whose tools (copies) ask for the intent argument."""
        if ctx.method != "tools/list" or not self.catalog.options.enabled or not isinstance(result, Mapping):
            return result
        try:
            tools = [self._with_intent(tool) for tool in result.get("tools") or ()]
        except Exception:  # noqa: BLE001
            log_internal_error("advertising the 2.x user intent")
            return result
        return {**result, "tools": tools}

    def _with_intent(self, tool: Any) -> Any:
        schema = (
            self.catalog.with_intent(tool.get("name"), tool.get("inputSchema")) if isinstance(tool, Mapping) else None
        )
        return tool if schema is None else {**tool, "inputSchema": schema}

    @staticmethod
    def _identify_request(ctx: ServerRequestContext[Any, Any], session: Session) -> IdentifyRequest:
        headers = ctx.request.headers if ctx.request is not None else None
        return IdentifyRequest(ctx.method, ctx.params, headers, auth_token(), session.session_id)

    def _session(self, ctx: ServerRequestContext[Any, Any]) -> Session:
        connection = ctx.session._connection  # noqa: SLF001 - the per-connection state, see ../shared/reference
        session = self._sessions.get(id(connection))
        if session is None:
            session = self._new_session(ctx, connection)
        if session.client_name is None:
            params = ctx.session.client_params
            if params is not None:
                session.client_name, session.client_version = implementation(params.client_info)
            elif ctx.method == "initialize" and ctx.params:
                session.client_name, session.client_version = implementation(ctx.params.get("clientInfo"))
        return session

    def _new_session(self, ctx: ServerRequestContext[Any, Any], connection: Any) -> Session:
        transport = http_transport(ctx.request) if ctx.request is not None else current_transport.get() or Transport()
        fields = {"server_name": self.server_name, "server_version": self.server_version,
                  "protocol_version": ctx.protocol_version}  # fmt: skip
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS or (
            ctx.request is not None and connection.session_id is None
        ):
            # Stateless HTTP and 2026-07-28 traffic: a throwaway connection per request.
            return Session(stateless=True, transport=transport, **fields)
        session_id = connection.session_id
        if session_id is None and self.after_framework:
            session_id = fastmcp.shared_session_id(connection, uuid.uuid4().hex)
        session = Session.stateful(session_id, transport, **fields)
        self.telemetry.open_session(session)
        self._sessions.put(connection, session)
        connection.exit_stack.callback(self.telemetry.end_session, session)
        return session

    def _record_result(self, ctx: ServerRequestContext[Any, Any], result: HandlerResult, operation: Any) -> Any:
        """Read the answer onto the operation; the answer the client gets (a failure carries our verdict)."""
        method = ctx.method
        if method in RESULT_SIZE_METHODS and result is not None:
            record_size(operation, result)
        if method == "tools/call":
            wire = (
                result.model_dump(mode="json", by_alias=True, exclude_none=True)
                if isinstance(result, CallToolResult)
                else result
            )
            if type(wire) is dict or isinstance(wire, Mapping):
                if wire.get("isError") is True:
                    operation.tool_error(first_text(wire.get("content")))
                if self.telemetry.content.capture:
                    operation.capture_result({key: value for key, value in wire.items() if key != "_meta"})
        elif method == "initialize" and isinstance(result, Mapping):
            session = self._sessions.get(id(ctx.session._connection))  # noqa: SLF001
            version = result.get("protocolVersion")
            if isinstance(version, str):
                if session is not None:
                    session.protocol_version = version
                operation.set_attributes({attr.MCP_PROTOCOL_VERSION: version})
        elif method in ("tools/list", "prompts/list") and isinstance(result, Mapping):
            record_listing(operation, method, result)
        if operation.failure is not None and isinstance(result, Mapping):
            result = {**result, "_meta": failures.carrying(result.get("_meta"), operation.failure)}
        return result


class ServerPatch:
    """Installs ``TelemetryMiddleware`` on each ``Server`` the first time it serves a connection."""

    def __init__(self, telemetry: Telemetry, enriched: fastmcp.Enriched) -> None:
        self.telemetry = telemetry
        self.enriched = enriched
        self._servers: weakref.WeakSet[Any] = weakref.WeakSet()

    def runner_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> None:
        """Wraps ``ServerRunner.__init__``: a runner serves one connection (or one stateless request) of a server,
        whose messages all pass the server's middleware (read per message: installed before the first)."""
        wrapped(*args, **kwargs)
        try:
            if instance.server not in self._servers:
                self._install(instance.server)
        except Exception:  # noqa: BLE001
            log_internal_error("installing the 2.x server middleware")

    def _install(self, server: Any) -> None:
        chain = server.middleware
        self._servers.add(server)
        for index, middleware in enumerate(chain):
            if isinstance(middleware, OpenTelemetryMiddleware):
                chain[index] = TelemetryMiddleware(self.telemetry, server, replaced=middleware)
                return
            if fastmcp.is_framework_middleware(middleware):
                ours = TelemetryMiddleware(self.telemetry, server, replaced=None, enriched=self.enriched)
                chain.insert(index + 1, ours)
                return
        chain.insert(0, TelemetryMiddleware(self.telemetry, server, replaced=None))

    def uninstall(self) -> None:
        for server in list(self._servers):
            chain = server.middleware
            for index, middleware in enumerate(chain):
                if isinstance(middleware, TelemetryMiddleware):
                    if middleware.replaced is None:
                        del chain[index]
                    else:
                        chain[index] = middleware.replaced
                    break
        self._servers = weakref.WeakSet()

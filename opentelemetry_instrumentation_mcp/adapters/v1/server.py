"""``mcp`` 1.x server: spans around ``Server._handle_message`` and the ``initialize`` handshake.

1.x answers ``initialize`` inside ``ServerSession._received_request`` and every
other message in ``Server._handle_message``; both answer through
``RequestResponder.respond``, where the outcome is read.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from mcp import types
from mcp.server.session import ServerSession
from mcp.shared.exceptions import McpError
from mcp.shared.session import RequestResponder

from opentelemetry_instrumentation_mcp import attributes as attr
from opentelemetry_instrumentation_mcp import failures
from opentelemetry_instrumentation_mcp.adapters._http import auth_token, http_peer, http_transport
from opentelemetry_instrumentation_mcp.adapters._tools import first_text, record_listing, record_size
from opentelemetry_instrumentation_mcp.adapters._wrapping import ObjectMap, log_internal_error
from opentelemetry_instrumentation_mcp.failures import Failure
from opentelemetry_instrumentation_mcp.identity import IdentifyRequest, is_due
from opentelemetry_instrumentation_mcp.intent import ToolCatalog
from opentelemetry_instrumentation_mcp.operation import Operation, current_server_operation
from opentelemetry_instrumentation_mcp.records import (
    ARGUMENT_METHODS,
    RESULT_SIZE_METHODS,
    Message,
    Session,
    Transport,
    argument_keys,
    implementation,
)
from opentelemetry_instrumentation_mcp.telemetry import Telemetry
from opentelemetry_instrumentation_mcp.transport import current_http_session_id, current_transport, entered_with


@dataclass(slots=True)
class _Awaited:
    """The request whose answer the current operation waits for."""

    responder: Any
    operation: Operation | None
    session: Session
    method: str
    catalog: ToolCatalog | None
    answered: bool = False

    def answer(self, response: Any) -> Any:
        """Record the answer on the operation; a ``tools/list`` answer comes back advertising the intent."""
        self.answered = True
        if self.catalog is not None and self.method == "tools/list":
            response = _with_intent(response, self.catalog)
        if self.operation is not None:
            _record_response(response, self.operation, self.session)
            if self.method in RESULT_SIZE_METHODS and not isinstance(response, types.ErrorData):
                record_size(self.operation, response)
            if self.operation.failure is not None:
                response = _with_verdict(response, self.operation.failure)
        return response


_responding: ContextVar[_Awaited | None] = ContextVar("opentelemetry_mcp_v1_responding", default=None)


def error_of(exc: BaseException) -> tuple[int, str, Any] | None:
    """The JSON-RPC error of an ``McpError`` (1.x answers a handler's other exceptions before we see them)."""
    if isinstance(exc, McpError):
        return exc.error.code, exc.error.message, exc.error.data
    return None


def message_of(method: str, params: Any, request_id: object | None = None, request: Any | None = None) -> Message:
    """A ``Message`` from a 1.x request or notification model (camelCase attributes)."""
    request_id = None if request_id is None else str(request_id)
    message = Message(method, request_id) if request is None else Message(method, request_id, **http_peer(request))
    if params is None:
        return message
    if method in ARGUMENT_METHODS:
        message.name = params.name
        arguments = message.arguments = params.arguments  # a dict or None (validated)
        message.argument_keys = () if arguments is None else argument_keys(arguments)
    fields = params.__dict__  # a field's value; getattr would raise (and catch) on models without one
    uri = fields.get("uri")
    if uri is not None:
        message.uri = str(uri)
    meta = fields.get("meta")
    if meta is not None and meta.__pydantic_extra__:  # ``model_extra``, without its property's call
        message.meta = meta.__pydantic_extra__
    return message


class NotingHandler:
    """Stands in for a 1.x request handler in ``Server.request_handlers``: notes what the handler raised on
    the current operation (1.x answers it as a JSON-RPC error without letting it escape), then re-raises it."""

    __slots__ = ("__wrapped__",)

    def __init__(self, handler: Any) -> None:
        self.__wrapped__ = handler

    async def __call__(self, request: Any) -> Any:
        try:
            return await self.__wrapped__(request)
        except Exception as exc:
            operation = current_server_operation.get()
            if operation is not None:
                operation.note_exception(exc)
            raise


def http_request_of(responder: Any) -> Any | None:
    metadata = getattr(responder, "message_metadata", None)
    return getattr(metadata, "request_context", None)


class ServerPatch:
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self._sessions: ObjectMap[Session] = ObjectMap()
        self._catalogs: ObjectMap[ToolCatalog] = ObjectMap()
        """Per low-level ``Server``: which of its tools declare the intent parameter."""
        self._noting: weakref.WeakSet[Any] = weakref.WeakSet()
        """Servers some of whose request handlers stand behind a ``NotingHandler``."""

    def _note_handler_exceptions(self, server: Any, request_type: type) -> None:
        handlers = server.request_handlers
        handler = handlers.get(request_type)
        if handler is not None and not isinstance(handler, NotingHandler):
            handlers[request_type] = NotingHandler(handler)
            self._noting.add(server)

    def uninstall(self) -> None:
        """Put every request handler a ``NotingHandler`` stands in for back in its place."""
        for server in list(self._noting):
            handlers = server.request_handlers
            for request_type, handler in list(handlers.items()):
                if isinstance(handler, NotingHandler):
                    handlers[request_type] = handler.__wrapped__
        self._noting = weakref.WeakSet()

    def _catalog(self, server: Any) -> ToolCatalog | None:
        if not self.telemetry.intent.enabled:
            return None
        catalog = self._catalogs.get(id(server))
        if catalog is None:
            catalog = self._catalogs.put(server, ToolCatalog(self.telemetry.intent))
        return catalog

    async def handle_message_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``Server._handle_message(message, session, ...)``: every message but ``initialize``."""
        message, server_session = args[0], args[1]
        try:
            catalog = self._catalog(instance)
            if isinstance(message, RequestResponder):
                root = message.request.root
                self._note_handler_exceptions(instance, type(root))
                request = http_request_of(message)
                intent = _take_intent(root, catalog) if catalog is not None else None
                record = message_of(root.method, root.params, message.request_id, request)
                record.intent = intent
            elif isinstance(message, types.ClientNotification):
                root, request = message.root, None
                record = message_of(root.method, root.params)
            else:
                return await wrapped(*args, **kwargs)
            session = self._session(server_session, request, instance.create_initialization_options)
            if is_due(session, record.method):
                await self._identify(session, record, root.params, request)
        except Exception:  # noqa: BLE001
            log_internal_error("a 1.x server message")
            return await wrapped(*args, **kwargs)
        responder = message if isinstance(message, RequestResponder) else None
        operation = self._start(record, session)
        return await observe(operation, wrapped, args, kwargs, session, responder, record.method, catalog)

    async def _identify(self, session: Session, record: Message, params: Any, request: Any | None) -> None:
        wire = None if params is None else params.model_dump(by_alias=True, mode="json", exclude_none=True)
        headers = None if request is None else request.headers
        identify = IdentifyRequest(record.method, wire, headers, auth_token(), session.session_id)
        await self.telemetry.identify(session, identify)

    def received_request_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``ServerSession._received_request(responder)``, where 1.x answers ``initialize`` (any other
        request goes on as it came, its coroutine returned as it is)."""
        if not isinstance(args[0].request.root, types.InitializeRequest):
            return wrapped(*args, **kwargs)
        return self._initialize(wrapped, instance, args, kwargs)

    async def _initialize(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        responder = args[0]
        root = responder.request.root
        try:
            request = http_request_of(responder)
            record = message_of(root.method, root.params, responder.request_id, request)
            session = self._session(instance, request, lambda: instance._init_options)  # noqa: SLF001
            session.client_name, session.client_version = implementation(root.params.clientInfo)
            if is_due(session, record.method):
                await self._identify(session, record, root.params, request)
        except Exception:  # noqa: BLE001
            log_internal_error("a 1.x initialize")
            return await wrapped(*args, **kwargs)
        return await observe(self._start(record, session), wrapped, args, kwargs, session, responder, record.method)

    def respond_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``RequestResponder.respond(response)``: the outcome of the observed request (read as the call
        is made; the coroutine the SDK awaits is its own)."""
        awaited = _responding.get()
        if awaited is None or awaited.responder is not instance:
            return wrapped(*args, **kwargs)
        response = args[0] if args else kwargs.pop("response")
        try:
            response = awaited.answer(response)
        except Exception:  # noqa: BLE001
            log_internal_error("a 1.x response")
        return wrapped(response, *args[1:], **kwargs)

    def _start(self, message: Message, session: Session) -> Operation | None:
        try:
            return self.telemetry.server_operation(message, session, error_of, link_ambient=False)
        except Exception:  # noqa: BLE001
            log_internal_error("a 1.x server message")
            return None

    def _session(self, server_session: ServerSession, request: Any | None, options: Callable[[], Any]) -> Session:
        """The session of ``server_session``, made on its first message; ``options``: what the server announces."""
        session = self._sessions.get(id(server_session))
        if session is None:
            announced = options()
            server = {"server_name": announced.server_name, "server_version": announced.server_version or None}
            transport = http_transport(request) if request is not None else current_transport.get() or Transport()
            session_id = current_http_session_id.get()
            if transport.name == "tcp" and session_id is None:
                version = request.headers.get("mcp-protocol-version") if request is not None else None
                session = Session(stateless=True, transport=transport, protocol_version=version, **server)
            else:
                session = Session.stateful(session_id, transport, **server)
                self.telemetry.open_session(session)
                server_session._exit_stack.callback(self.telemetry.end_session, session)  # noqa: SLF001
            self._sessions.put(server_session, session)
        if session.client_name is None and server_session.client_params is not None:
            params = server_session.client_params
            session.client_name, session.client_version = implementation(params.clientInfo)
            session.protocol_version = session.protocol_version or str(params.protocolVersion)  # typed str | int
        return session


async def observe(
    operation: Operation | None,
    wrapped: Any,
    args: Any,
    kwargs: Any,
    session: Session,
    responder: Any | None,
    method: str,
    catalog: ToolCatalog | None = None,
) -> Any:
    """Run the handling of a received message inside its SERVER ``operation``; its answer is read where
    ``responder`` responds (``ServerPatch.respond_wrapper``). Also the client's, for the requests a server sends."""
    awaited = None if responder is None else _Awaited(responder, operation, session, method, catalog)
    token = _responding.set(awaited) if awaited is not None else None
    try:
        if operation is None:
            return await wrapped(*args, **kwargs)
        with operation:
            result = await wrapped(*args, **kwargs)
            # Cancelled by the client, or (mcp < 1.2x) a cancellation the SDK swallowed unanswered.
            if responder is not None and awaited is not None and (responder.cancelled or not awaited.answered):
                operation.cancelled()
    finally:
        if token is not None:
            _responding.reset(token)
    return result


def _take_intent(request: Any, catalog: ToolCatalog | None) -> str | None:
    """A ``tools/call`` goes on without the intent argument (the request was parsed for this call alone)."""
    if catalog is None or not isinstance(request, types.CallToolRequest):
        return None
    intent, arguments = catalog.take(request.params.name, request.params.arguments)
    if arguments is not None:
        request.params.arguments = arguments
    return intent


def _with_intent(response: Any, catalog: ToolCatalog) -> Any:
    """A copy of a ``tools/list`` answer whose tools (copies) ask for the intent argument."""
    result = getattr(response, "root", None)
    if not isinstance(result, types.ListToolsResult):
        return response
    tools = []
    for tool in result.tools:
        schema = catalog.with_intent(tool.name, tool.inputSchema)
        tools.append(tool if schema is None else tool.model_copy(update={"inputSchema": schema}))
    return types.ServerResult(result.model_copy(update={"tools": tools}))


def _with_verdict(response: Any, found: Failure) -> Any:
    """A copy of the answer carrying our verdict: in an error's ``data``, in a result's ``_meta``."""
    if isinstance(response, types.ErrorData):
        data = failures.carrying(response.data, found)
        return response if data is None else response.model_copy(update={"data": data})
    result = getattr(response, "root", None)
    if result is None or not hasattr(result, "meta"):
        return response
    return types.ServerResult(result.model_copy(update={"meta": failures.carrying(result.meta, found)}))


def _record_response(response: Any, operation: Operation, session: Session) -> None:
    if isinstance(response, types.ErrorData):
        operation.jsonrpc_error(response.code, response.message)
        return
    result = getattr(response, "root", response)
    if isinstance(result, types.CallToolResult):
        if result.isError:
            operation.tool_error(first_text(result.content))
        if operation.captures_content:
            operation.capture_result(result.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"meta"}))
    elif isinstance(result, types.InitializeResult):
        session.protocol_version = str(result.protocolVersion)
        operation.set_attributes({attr.MCP_PROTOCOL_VERSION: session.protocol_version})
    elif isinstance(result, types.ListToolsResult):
        record_listing(operation, "tools/list", result)
    elif isinstance(result, types.ListPromptsResult):
        record_listing(operation, "prompts/list", result)


def http_connect_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wraps ``StreamableHTTPServerTransport.connect()``: the server runs knowing its HTTP session id."""
    values: dict[ContextVar[Any], Any] = {
        current_transport: Transport(name="tcp", protocol_name="http"),
        current_http_session_id: instance.mcp_session_id,
    }
    return entered_with(wrapped(*args, **kwargs), values)

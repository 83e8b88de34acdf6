"""Requests the SDK's bearer-auth middleware refuses before MCP dispatch (same on 1.x and 2.x).

Server side: ``RequireAuthMiddleware`` answers 401 or 403 without reading the
request, so no MCP span would exist. Its wrapper records one: the JSON-RPC
message is read from the refused request's body, the reason (missing, invalid or
expired token, insufficient scope) from what ``BearerAuthBackend`` saw; the
verdict goes back in the ``failures.HEADER`` response header.

Client side: no MCP answer reaches the caller (2.x makes the refusal a -32603
error, 1.x an ``HTTPStatusError`` that cancels the request), so ``Refusals``
notes the refused POST's verdict where the transport receives it, for the
request's CLIENT operation to take.
"""

from __future__ import annotations

import json
import time
from contextvars import ContextVar
from typing import Any

import anyio

from opentelemetry_instrumentation_mcp import failures
from opentelemetry_instrumentation_mcp.adapters._http import http_peer, http_transport
from opentelemetry_instrumentation_mcp.adapters._wrapping import Patches, log_internal_error
from opentelemetry_instrumentation_mcp.failures import Failure
from opentelemetry_instrumentation_mcp.operation import Operation
from opentelemetry_instrumentation_mcp.records import Message, Session, message_from_params
from opentelemetry_instrumentation_mcp.telemetry import Telemetry

_REASON_KEY = "opentelemetry_mcp.auth_failure"
_SEEN_KEY = "opentelemetry_mcp.auth_seen"
"""Set once a refusal middleware saw the request (a subclass may call the base class's)."""
"""Where the backend's verdict waits in the ASGI scope for the refusal."""
MAX_BODY = 64 * 1024
"""Bytes of a refused request read to name its MCP method; a larger body is named ``unknown``."""

_verified: ContextVar[Any] = ContextVar("opentelemetry_mcp_verified_token", default=None)
_posting: ContextVar[int | None] = ContextVar("opentelemetry_mcp_posting", default=None)
"""Client side: the span id of the request a streamable HTTP transport is POSTing (from its ``traceparent``)."""


def wrap_auth(patches: Patches, telemetry: Telemetry, refusals: Refusals) -> None:
    """The bearer-auth patches, the same on both lines: a refusal's span on the server, its verdict on the client."""
    server = AuthPatch(telemetry)
    bearer = "mcp.server.auth.middleware.bearer_auth"
    patches.wrap(bearer, "BearerAuthBackend.__init__", backend_init_wrapper)
    patches.wrap(bearer, "BearerAuthBackend.authenticate", authenticate_wrapper)
    patches.wrap(bearer, "RequireAuthMiddleware.__call__", server.require_auth_wrapper)
    patches.wrap(
        "fastmcp.server.auth.middleware", "RequireAuthMiddleware.__call__", server.require_auth_wrapper, optional=True
    )
    patches.wrap("mcp.client.streamable_http", "StreamableHTTPTransport._handle_post_request", refusals.post_wrapper)
    patches.wrap("httpx", "AsyncClient.send", refusals.send_wrapper)
    patches.wrap("httpx2", "AsyncClient.send", refusals.send_wrapper, optional=True)  # mcp 2.x's HTTP client


class RememberingVerifier:
    """Stands in for a ``TokenVerifier`` to remember its last answer (to tell an expired token apart)."""

    def __init__(self, verifier: Any) -> None:
        self._verifier = verifier

    async def verify_token(self, token: str) -> Any:
        answer = await self._verifier.verify_token(token)
        _verified.set(answer)
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._verifier, name)


def backend_init_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> None:
    """Wraps ``BearerAuthBackend.__init__``."""
    wrapped(*args, **kwargs)
    instance.token_verifier = RememberingVerifier(instance.token_verifier)


async def authenticate_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wraps ``BearerAuthBackend.authenticate(conn)``: notes why it refused, if it did."""
    _verified.set(None)
    result = await wrapped(*args, **kwargs)
    if result is None:
        conn = args[0] if args else kwargs["conn"]
        header = conn.headers.get("authorization") or ""
        if not header.lower().startswith("bearer "):
            reason = "missing_token"
        else:
            token = _verified.get()
            expires_at = getattr(token, "expires_at", None)
            reason = "expired_token" if expires_at and expires_at < int(time.time()) else "invalid_token"
        conn.scope[_REASON_KEY] = reason
    return result


class AuthPatch:
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    async def require_auth_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``RequireAuthMiddleware.__call__(scope, receive, send)``."""
        scope, receive, send = args
        if scope.get("type") != "http" or scope.get(_SEEN_KEY):
            return await wrapped(*args, **kwargs)
        scope[_SEEN_KEY] = True
        reason = _refusal(instance, scope)
        if reason is None:
            return await wrapped(*args, **kwargs)
        # The middleware will refuse without reading the request: read it first, to name the MCP message.
        body, receive = await _read_ahead(receive)
        status: list[int] = []

        async def watching(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                if message["status"] in (401, 403):  # the verdict, for an instrumented client
                    verdict = (failures.HEADER.encode(), failures.to_header(failures.failure(reason)))
                    message = {**message, "headers": [*message.get("headers", ()), verdict]}
            await send(message)

        await wrapped(scope, receive, watching)
        if status and status[0] in (401, 403):
            try:
                self._record(scope, body, reason, status[0])
            except Exception:  # noqa: BLE001
                log_internal_error("a refused request")

    def _record(self, scope: Any, body: bytes | None, reason: str, status: int) -> None:
        from starlette.requests import Request  # noqa: PLC0415 - the SDK's HTTP stack

        request = Request(scope)
        message = _message_of(body, request)
        session = Session(session_id=request.headers.get("mcp-session-id"), transport=http_transport(request))
        operation = self.telemetry.server_operation(message, session, lambda exc: None)
        if operation is not None:
            operation.auth_failure(reason, status, f"refused by the server's bearer auth: {reason}")
            operation.end()


def _refusal(middleware: Any, scope: Any) -> str | None:
    """Why ``RequireAuthMiddleware`` is about to refuse this request (None: it lets it through)."""
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser  # noqa: PLC0415

    if not isinstance(scope.get("user"), AuthenticatedUser):
        return scope.get(_REASON_KEY) or "invalid_token"
    credentials = scope.get("auth")
    granted = set(getattr(credentials, "scopes", None) or ())
    return None if set(middleware.required_scopes) <= granted else "insufficient_scope"


async def _read_ahead(receive: Any) -> tuple[bytes | None, Any]:
    """The request's body (up to ``MAX_BODY``, within 0.5 s) and a ``receive`` that replays what was read."""
    read: list[Any] = []
    body = b""
    with anyio.move_on_after(0.5):
        while len(body) <= MAX_BODY:
            message = await receive()
            read.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body"):
                break

    async def replay() -> Any:
        return read.pop(0) if read else await receive()

    complete = bool(read) and read[-1]["type"] == "http.request" and not read[-1].get("more_body")
    return (body if complete else None), replay


def _message_of(body: bytes | None, request: Any) -> Message:
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("method"), str):
        return message_from_params(payload["method"], payload.get("id"), payload.get("params"), **http_peer(request))
    return Message(method="unknown", **http_peer(request))


class Refusals:
    """Client side: the verdicts of refused requests (HTTP 401/403) until their CLIENT operations take them."""

    LIMIT = 256
    """Refusals kept at once; each waits only until its request's caller sees the failure."""

    def __init__(self) -> None:
        self._found: dict[int, tuple[Failure, int]] = {}

    async def post_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``StreamableHTTPTransport._handle_post_request(ctx)``: which request the transport POSTs."""
        token = _posting.set(_span_id_of(args[0] if args else kwargs["ctx"]))
        try:
            return await wrapped(*args, **kwargs)
        finally:
            _posting.reset(token)

    async def send_wrapper(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        """Wraps ``AsyncClient.send`` of httpx (and httpx2): notes a refusal of the request being POSTed."""
        response = await wrapped(*args, **kwargs)
        span_id = _posting.get()
        if span_id is not None and response.status_code in (401, 403):
            try:
                self._note(span_id, response)
            except Exception:  # noqa: BLE001
                log_internal_error("an auth refusal")
        return response

    def _note(self, span_id: int, response: Any) -> None:
        headers = response.headers
        found = failures.of_refusal(
            response.status_code,
            headers.get(failures.HEADER),
            headers.get("www-authenticate"),
            sent_token="authorization" in response.request.headers,
        )
        if len(self._found) >= self.LIMIT:
            self._found.pop(next(iter(self._found)))
        self._found[span_id] = (found, response.status_code)

    def take(self, operation: Operation) -> None:
        """A CLIENT operation failed: if its request was refused, that is its verdict."""
        found = self._found.pop(operation.span.get_span_context().span_id, None)
        if found is not None:
            failure, status = found
            operation.auth_failure(
                failure.reason, status, f"refused by the server's auth (HTTP {status}): {failure.reason}"
            )


def _span_id_of(ctx: Any) -> int | None:
    """The span id in a JSON-RPC request's ``params._meta.traceparent`` (W3C trace context), else None."""
    message = ctx.session_message.message
    message = getattr(message, "root", message)  # 1.x wraps it in a root model
    params = getattr(message, "params", None) if getattr(message, "id", None) is not None else None
    meta = params.get("_meta") if isinstance(params, dict) else None
    traceparent = meta.get("traceparent") if isinstance(meta, dict) else None
    parts = traceparent.split("-") if isinstance(traceparent, str) else ()
    try:
        return int(parts[2], 16) if len(parts) == 4 else None
    except ValueError:
        return None

"""Reading a Starlette request (both SDK lines serve streamable HTTP through Starlette)."""

from __future__ import annotations

from typing import Any

from opentelemetry_instrumentation_mcp.records import Transport


def http_transport(request: Any) -> Transport:
    return Transport(name="tcp", protocol_name="http", protocol_version=request.scope.get("http_version"))


def http_peer(request: Any | None) -> dict[str, Any]:
    """The HTTP request's fields of a ``Message``: the peer's address, the user agent, the caller."""
    if request is None:
        return {}
    client = request.client
    headers = request.headers
    user_agent = headers.get("user-agent")
    found: dict[str, Any] = {
        "user_agent": user_agent,
        "caller": (None if client is None else client.host, user_agent, headers.get("authorization")),
    }
    if client is not None:
        found["peer_address"], found["peer_port"] = client.host, client.port
    return found


def auth_token() -> Any | None:
    """The access token the SDK's bearer-auth middleware validated for this request, if any."""
    from mcp.server.auth.middleware.auth_context import get_access_token  # noqa: PLC0415

    return get_access_token()

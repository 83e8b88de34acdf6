"""Reading a Starlette request (both SDK lines serve streamable HTTP through Starlette)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry_instrumentation_mcp.records import Transport


def http_transport(request: Any) -> Transport:
    return Transport(name="tcp", protocol_name="http", protocol_version=request.scope.get("http_version"))


def http_peer(request: Any | None) -> dict[str, Any]:
    """``peer_address`` / ``peer_port`` fields for a ``Message``."""
    client = None if request is None else request.client
    return {} if client is None else {"peer_address": client.host, "peer_port": client.port}


def implementation(info: Any) -> tuple[str | None, str | None]:
    """(name, version) of an ``Implementation`` model or its wire dict."""
    if isinstance(info, Mapping):
        return info.get("name"), info.get("version")
    if info is None:
        return None, None
    return getattr(info, "name", None), getattr(info, "version", None)


def auth_token() -> Any | None:
    """The access token the SDK's bearer-auth middleware validated for this request, if any."""
    from mcp.server.auth.middleware.auth_context import get_access_token  # noqa: PLC0415

    return get_access_token()

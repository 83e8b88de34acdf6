"""Which transport carries the current connection, told by the adapters' transport hooks.

The SDKs' message objects do not say whether a connection runs over stdio or
in memory, so the adapters wrap ``stdio_server`` (and, on ``mcp`` 1.x, the
streamable HTTP transport) to set this context variable; the server's tasks
inherit it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from opentelemetry_instrumentation_mcp.records import Transport

_T = TypeVar("_T")

current_transport: ContextVar[Transport | None] = ContextVar("opentelemetry_mcp_transport", default=None)
current_http_session_id: ContextVar[str | None] = ContextVar("opentelemetry_mcp_http_session_id", default=None)


@dataclass(frozen=True, slots=True)
class ServerPeer:
    """Client side: the server a client transport talks to."""

    transport: Transport
    address: str | None = None
    port: int | None = None

    @classmethod
    def from_url(cls, url: object) -> ServerPeer:
        parts = urlsplit(str(url))
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        return cls(Transport(name="tcp", protocol_name="http"), parts.hostname, port)


current_server_peer: ContextVar[ServerPeer | None] = ContextVar("opentelemetry_mcp_server_peer", default=None)


@asynccontextmanager
async def entered_with(streams: AbstractAsyncContextManager[_T], values: dict[ContextVar[Any], Any]) -> AsyncIterator[_T]:
    """Enter ``streams`` with ``values`` set, so that everything run inside sees them."""
    tokens = [(var, var.set(value)) for var, value in values.items()]
    try:
        async with streams as entered:
            yield entered
    finally:
        for var, token in reversed(tokens):
            try:
                var.reset(token)
            except ValueError:  # exited in another context than entered
                pass


def stdio_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> AbstractAsyncContextManager[Any]:
    """``wrapt`` wrapper for ``stdio_server()`` (both SDK lines)."""
    return entered_with(wrapped(*args, **kwargs), {current_transport: Transport(name="pipe")})


def client_stdio_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> AbstractAsyncContextManager[Any]:
    """``wrapt`` wrapper for ``stdio_client(server)`` (both SDK lines)."""
    return entered_with(wrapped(*args, **kwargs), {current_server_peer: ServerPeer(Transport(name="pipe"))})


def client_http_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> AbstractAsyncContextManager[Any]:
    """``wrapt`` wrapper for ``streamable_http_client(url, ...)`` (both SDK lines)."""
    url = kwargs["url"] if "url" in kwargs else args[0]
    return entered_with(wrapped(*args, **kwargs), {current_server_peer: ServerPeer.from_url(url)})

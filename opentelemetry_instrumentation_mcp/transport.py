"""Which transport carries the current connection, told by the adapters' transport hooks.

The SDKs' message objects do not say whether a connection runs over stdio or
in memory, so the adapters wrap ``stdio_server`` (and, on ``mcp`` 1.x, the
streamable HTTP transport) to set this context variable; the server's tasks
inherit it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
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
    http: Any = None
    """The SDK's HTTP client transport, whose ``session_id`` is the server's ``mcp-session-id``."""

    @classmethod
    def from_url(cls, url: object, http: Any = None) -> ServerPeer:
        parts = urlsplit(str(url))
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        return cls(Transport(name="tcp", protocol_name="http"), parts.hostname, port, http)

    @property
    def session_id(self) -> str | None:
        return getattr(self.http, "session_id", None)


current_server_peer: ContextVar[ServerPeer | None] = ContextVar("opentelemetry_mcp_server_peer", default=None)
"""Set where a client transport is opened, taken by the next client session entered in that task."""


@asynccontextmanager
async def entered_with(
    streams: AbstractAsyncContextManager[_T], values: dict[ContextVar[Any], Any]
) -> AsyncIterator[_T]:
    """Enter ``streams`` with ``values`` set, so that everything run inside sees them."""
    tokens = [(var, var.set(value)) for var, value in values.items()]
    try:
        async with streams as entered:
            yield entered
    finally:
        for var, token in reversed(tokens):
            with contextlib.suppress(ValueError):  # exited in another context than entered
                var.reset(token)


def stdio_wrapper(on_start: Callable[[], None]) -> Callable[..., AbstractAsyncContextManager[Any]]:
    """``wrapt`` wrapper for ``stdio_server()`` (both SDK lines); ``on_start`` runs as a server starts on stdio."""

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> AbstractAsyncContextManager[Any]:
        on_start()
        return entered_with(wrapped(*args, **kwargs), {current_transport: Transport(name="pipe")})

    return wrapper


def client_stdio_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> AbstractAsyncContextManager[Any]:
    """``wrapt`` wrapper for ``stdio_client(server)`` (both SDK lines)."""
    return entered_with(wrapped(*args, **kwargs), {current_server_peer: ServerPeer(Transport(name="pipe"))})


def client_http_transport_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> None:
    """Wraps ``StreamableHTTPTransport.__init__(url, ...)`` (both SDK lines).

    The transport is built inside ``streamable_http_client()``, in the task that
    then enters its ``ClientSession``; a class attribute is patched, so this
    holds whatever was imported before ``instrument()``.
    """
    wrapped(*args, **kwargs)
    url = kwargs["url"] if "url" in kwargs else args[0]
    current_server_peer.set(ServerPeer.from_url(url, instance))

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
from typing import Any, TypeVar

from opentelemetry_instrumentation_mcp.records import Transport

_T = TypeVar("_T")

current_transport: ContextVar[Transport | None] = ContextVar("opentelemetry_mcp_transport", default=None)
current_http_session_id: ContextVar[str | None] = ContextVar("opentelemetry_mcp_http_session_id", default=None)


@asynccontextmanager
async def marked(
    streams: AbstractAsyncContextManager[_T], transport: Transport, session_id: str | None = None
) -> AsyncIterator[_T]:
    """Enter ``streams`` with the transport (and HTTP session id) visible to everything run inside."""
    transport_token = current_transport.set(transport)
    session_token = current_http_session_id.set(session_id)
    try:
        async with streams as value:
            yield value
    finally:
        try:
            current_http_session_id.reset(session_token)
            current_transport.reset(transport_token)
        except ValueError:  # exited in another context than entered
            pass


def stdio_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> AbstractAsyncContextManager[Any]:
    """``wrapt`` wrapper for ``stdio_server()`` (both SDK lines)."""
    return marked(wrapped(*args, **kwargs), Transport(name="pipe"))

"""A real streamable HTTP server on 127.0.0.1 (uvicorn in a thread) and a client for it."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp import ClientSession

# Imported before any test instruments: the instrumentation must not depend on import order.
try:
    from mcp.client.streamable_http import streamable_http_client as connect
except ImportError:  # mcp < 1.24
    from mcp.client.streamable_http import streamablehttp_client as connect

from tests.apps.servers import IS_V2


def asgi_app(server: Any, *, stateless: bool) -> Any:
    """The Starlette app serving ``server`` at ``/mcp`` on whichever SDK line is installed (or fastmcp's)."""
    if type(server).__module__.startswith("fastmcp."):  # fastmcp.FastMCP (4.x)
        return server.http_app(path="/mcp", stateless_http=stateless)
    if IS_V2:
        return server.streamable_http_app(stateless_http=stateless)
    if hasattr(server, "streamable_http_app"):  # FastMCP
        server.settings.stateless_http = stateless
        return server.streamable_http_app()
    from mcp.server.fastmcp.server import StreamableHTTPASGIApp
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.routing import Route

    manager = StreamableHTTPSessionManager(app=server, stateless=stateless)
    return Starlette(
        routes=[Route("/mcp", endpoint=StreamableHTTPASGIApp(manager))],
        lifespan=lambda app: manager.run(),
    )


@dataclass
class SessionIds:
    """ASGI middleware that remembers every ``mcp-session-id`` the server hands out."""

    app: Any
    seen: set[str] = field(default_factory=set)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def remember(message: Any) -> None:
            if message["type"] == "http.response.start":
                for key, value in message.get("headers", ()):
                    if key.lower() == b"mcp-session-id":
                        self.seen.add(value.decode())
            await send(message)

        await self.app(scope, receive, remember if scope["type"] == "http" else send)


@dataclass
class RunningServer:
    url: str
    session_ids: SessionIds


@contextmanager
def serving(server: Any, *, stateless: bool = False, wrap: Any = None) -> Iterator[RunningServer]:
    """Serve ``server`` over streamable HTTP on a free port of 127.0.0.1 until the block ends.

    ``wrap`` wraps the ASGI app (for example in another instrumentation's middleware).
    """
    inner = asgi_app(server, stateless=stateless)
    app = SessionIds(wrap(inner) if wrap is not None else inner)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        while not runner.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            threading.Event().wait(0.01)
        port = runner.servers[0].sockets[0].getsockname()[1]
        yield RunningServer(f"http://127.0.0.1:{port}/mcp", app)
    finally:
        runner.should_exit = True
        thread.join(timeout=10)


@asynccontextmanager
async def http_client(url: str, **client_kwargs: Any) -> AsyncIterator[ClientSession]:
    """An initialized ``ClientSession`` over streamable HTTP."""
    async with connect(url) as streams, ClientSession(streams[0], streams[1], **client_kwargs) as client:
        await client.initialize()
        yield client

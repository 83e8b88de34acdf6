"""Running an ASGI app with uvicorn: in the foreground (``serve``) or in a background thread (``demo``, tests)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765


def _config(app: Any, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2, **options)


def bind(host: str = DEFAULT_HOST, port: int = 0) -> socket.socket:
    """A listening socket; port 0 picks a free one."""
    # IPPROTO_TCP spelled out: asyncio only sets TCP_NODELAY on sockets that say so (else ~40 ms per response).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@contextmanager
def in_thread(app: Any, sock: socket.socket | None = None) -> Iterator[str]:
    """Serve ``app`` from a daemon thread until the block ends; yields its base URL."""
    sock = sock or bind()
    server = uvicorn.Server(_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.01)
    if not server.started:
        raise RuntimeError("the server did not start")
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


def foreground(app: Any, host: str, port: int) -> None:
    uvicorn.Server(_config(app, host=host, port=port)).run()

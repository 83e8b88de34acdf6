"""A real HTTP dependency on 127.0.0.1 for tools to call.

``/ok``; ``/500`` (fails); ``/stall`` (answers after 2 s); ``/delay?ms=N`` (answers after N ms).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/stall":
            time.sleep(2)
        if self.path.startswith("/delay?ms="):
            time.sleep(int(self.path.split("=", 1)[1]) / 1000)
        status = 500 if self.path == "/500" else 200
        body = b"upstream broke" if status == 500 else b"upstream ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def upstream() -> Iterator[str]:
    """The base URL of a running dependency, stopped when the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

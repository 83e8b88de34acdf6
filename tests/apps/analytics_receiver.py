"""A scripted stand-in for the analytics API on 127.0.0.1: answers from a list of statuses, records every request."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


@dataclass
class Receiver:
    url: str
    answers: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    """(status, headers, delay in seconds) for the next requests; 200 once they run out."""
    requests: list[Received] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [event for request in self.requests for event in request.body["events"]]


@contextmanager
def receiver(*answers: tuple[int, dict[str, str], float]) -> Iterator[Receiver]:
    state = Receiver(url="", answers=list(answers))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            state.requests.append(Received(self.path, dict(self.headers), json.loads(raw), time.monotonic()))
            status, headers, delay = state.answers.pop(0) if state.answers else (200, {}, 0.0)
            time.sleep(delay)
            payload = b"{}"
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up waiting

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()

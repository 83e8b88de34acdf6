"""SIGTERM: what the batch processor still held is exported before the process ends, which ends as before.

A streamable HTTP server under ``opentelemetry-instrument`` (uvicorn catches SIGTERM, shuts down gracefully,
then re-raises it) and a stdio server (SIGTERM's default action) are stopped with SIGTERM right after a
session; the spans reach a real OTLP receiver, and the exit status is still "killed by SIGTERM".
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession

from opentelemetry_instrumentation_mcp import MCPInstrumentor
from opentelemetry_instrumentation_mcp.sigterm import FLUSH_BUDGET_MS
from tests.apps.http import connect
from tests.otlp_receiver import OTLPReceiver, otlp_receiver_fixture  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "tests" / "apps"
OPENTELEMETRY_INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
SPANS = ["initialize", "notifications/initialized", "tools/list", "tools/call add"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(receiver: OTLPReceiver, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "OTEL_SERVICE_NAME": "sigterm-test",
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "30000",  # nothing leaves before the signal but through the flush
        **extra,
    }  # fmt: skip


async def http_session(url: str) -> None:
    async with connect(url) as streams, ClientSession(streams[0], streams[1]) as client:
        await client.initialize()
        await client.list_tools()
        await client.call_tool("add", {"a": 1, "b": 2})


def serve_http(receiver: OTLPReceiver, **extra: str) -> subprocess.Popen[str]:
    port = free_port()
    server = subprocess.Popen(
        [str(OPENTELEMETRY_INSTRUMENT), sys.executable, str(APPS / "http_server.py"), "highlevel", str(port)],
        env=environment(receiver, **extra), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    anyio.run(http_session, f"http://127.0.0.1:{port}/mcp")
    return server


def test_an_http_server_stopped_with_sigterm_exports_what_it_held(otlp_receiver):
    server = serve_http(otlp_receiver)
    assert otlp_receiver.spans == []
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=20) == -signal.SIGTERM, "it ends as SIGTERM ends it without us"
    names = [span.name for span in otlp_receiver.wait_for(lambda r: len(r.server_spans()) >= len(SPANS) and r.spans)]
    assert sorted(names) == sorted(SPANS)


def test_the_flush_can_be_turned_off(otlp_receiver):
    server = serve_http(otlp_receiver, OTEL_INSTRUMENTATION_MCP_FLUSH_ON_SIGTERM="false")
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=20) == -signal.SIGTERM
    time.sleep(1.0)
    assert otlp_receiver.spans == [], "without the flush, SIGTERM loses what the batch processor held"


def serve_stdio(env: dict[str, str]) -> subprocess.Popen[str]:
    """A stdio server under ``opentelemetry-instrument`` after one session's messages, stdin still open."""
    server = subprocess.Popen(
        [str(OPENTELEMETRY_INSTRUMENT), sys.executable, str(APPS / "stdio_server.py"), "lowlevel"],
        env=env, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stdin is not None and server.stdout is not None
    for message in (
        '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},'
        '"clientInfo":{"name":"raw","version":"1"}}}',
        '{"jsonrpc":"2.0","method":"notifications/initialized"}',
        '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}',
    ):
        server.stdin.write(message + "\n")
        server.stdin.flush()
        if '"id"' in message:
            assert '"result"' in server.stdout.readline()
    return server


def test_a_stdio_server_stopped_with_sigterm_exports_what_it_held(otlp_receiver):
    server = serve_stdio(environment(otlp_receiver))
    server.send_signal(signal.SIGTERM)  # stdin still open: the session has not ended
    assert server.wait(timeout=20) == -signal.SIGTERM
    names = [span.name for span in otlp_receiver.wait_for(lambda r: len(r.server_spans()) >= 3 and r.spans)]
    assert sorted(names) == sorted(["initialize", "notifications/initialized", "tools/call add"])


class Unanswering:
    """An endpoint on 127.0.0.1 that accepts connections and never answers: an exporter's request hangs."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # closed
            while True:
                self.connections.append(self._listener.accept()[0])

    def close(self) -> None:
        self._listener.close()
        for connection in self.connections:
            connection.close()


def test_the_flush_on_sigterm_is_bounded_when_the_export_hangs(otlp_receiver):
    """The SDK's batch processor ignores a flush's timeout (it exports until done) and the OTLP exporter waits
    for its own (here 60 s): the budget still holds, and the process ends by SIGTERM once it is spent."""
    endpoint = Unanswering()
    try:
        env = environment(otlp_receiver, OTEL_EXPORTER_OTLP_TIMEOUT="60")
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint.endpoint
        server = serve_stdio(env)
        sent = time.monotonic()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=40) == -signal.SIGTERM
        took = time.monotonic() - sent
        assert len(endpoint.connections) == 1, "the flush did try to export"
        assert FLUSH_BUDGET_MS / 1000 <= took < FLUSH_BUDGET_MS / 1000 + 5, took
    finally:
        endpoint.close()


def test_sigterm_is_taken_only_where_it_had_its_default_action():
    instrumentor = MCPInstrumentor()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    try:
        instrumentor.instrument()
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        instrumentor.uninstrument()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

        def mine(signum, frame):  # the application's own handler
            pass

        signal.signal(signal.SIGTERM, mine)
        instrumentor.instrument()
        assert signal.getsignal(signal.SIGTERM) is mine
        instrumentor.uninstrument()
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        instrumentor.uninstrument()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

"""The tests' subprocesses: a free port for one, stopping one, and ``mcp-analytics serve`` started until it answers."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port free on 127.0.0.1 (as long as nothing else takes it meanwhile)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Terminate ``process`` and wait for it; killed if it has not exited within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ApiServer:
    """``mcp-analytics serve`` with ``args`` (its store, its keys) in a subprocess on a free port of its own, its
    output in ``log``: started, killed (SIGKILL) and restarted on the same port and store."""

    def __init__(self, *args: str, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.args, self.log, self.env = args, log, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        self.launch()
        self.answering(timeout)

    def launch(self) -> None:
        """Started, not waited for (``answering``): instances launched one after the other start together."""
        command = [sys.executable, "-m", "mcp_analytics", "serve", *self.args, "--port", str(self.port)]
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT)

    def answering(self, timeout: float = 30) -> None:
        """Until the API answers; fails with its output if it exits first, or after ``timeout`` seconds."""
        assert self.process is not None, "launched first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the API exited: {self.log.read_text(errors='replace')}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"the API did not start in {timeout:g} s")

    def ready(self, timeout: float = 30) -> dict[str, Any]:
        """``/readyz``'s answer once it is 200, polled as a balancer polls it (after an outage the API probes the
        store once per ``Retry-After``), or fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (answer := httpx.get(f"{self.url}/readyz", timeout=timeout)).status_code == 503:
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready in {timeout:g} s: {answer.text}")
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            stop(self.process)

"""A real ``clickhouse-server`` (Debian's package) on a temporary directory and free loopback ports, for tests.

The configuration is written here, minimal: one ``default`` user without a password reachable from 127.0.0.1
only, the native protocol (what ``clickhouse-driver`` speaks) and HTTP (only to ask whether the server is up),
everything under the temporary directory (data, logs, tmp), nothing read from /etc.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.processes import free_port, stop

REQUIRE = "MCP_ANALYTICS_REQUIRE_CLICKHOUSE"

_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{root}/log/server.log</log><errorlog>{root}/log/error.log</errorlog>
        <console>0</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp}</tcp_port>
    <http_port>{http}</http_port>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>{timezone}</timezone>
    <mark_cache_size>67108864</mark_cache_size>
    <max_concurrent_queries>50</max_concurrent_queries>
</yandex>
"""
_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>1000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
"""


def binary() -> str | None:
    """The server's binary: ``clickhouse-server``, or the combined ``clickhouse`` binary run as ``server``."""
    return shutil.which("clickhouse-server")


@contextlib.contextmanager
def running(
    root: Path, timeout: float = 60.0, timezone: str = "UTC", ports: tuple[int, int] | None = None
) -> Iterator[tuple[str, int]]:
    """A server on ``root`` (in ``timezone``, its default for dates) until the block ends: yields its
    native-protocol host and port. ``ports`` (native, HTTP): those, not free ones, so that a server started
    again on the same ``root`` is the same server to its clients (its data kept)."""
    found = binary()
    if found is None:
        raise FileNotFoundError("clickhouse-server is not installed (Debian: apt-get install clickhouse-server)")
    for sub in ("log", "data", "tmp", "user_files", "format_schemas"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    tcp, http = ports or (free_port(), free_port())
    (root / "config.xml").write_text(_CONFIG.format(root=root, tcp=tcp, http=http, timezone=timezone))
    (root / "users.xml").write_text(_USERS)
    process = subprocess.Popen(
        [found, "--config-file", str(root / "config.xml")],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=(root / "log" / "stderr.log").open("wb"),
        env={**os.environ, "TZ": timezone},
    )
    try:
        _wait(process, http, root, timeout)
        yield "127.0.0.1", tcp
    finally:
        stop(process)


def _wait(process: subprocess.Popen[bytes], http: int, root: Path, timeout: float) -> None:
    """Until the server answers ``/ping`` (its readiness check), or fail with its logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/ping", timeout=1) as answer:
                if answer.read().strip() == b"Ok.":
                    return
        except OSError:
            time.sleep(0.1)
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in (root / "log").glob("*.log"))
    raise RuntimeError(f"clickhouse-server did not start (exit {process.poll()}):\n{logs}")

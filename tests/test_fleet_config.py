"""The fleet recipe in ``deploy/fleet/``, checked as far as it can be without a Collector.

No Collector installs on this machine (see ``tests/test_collector_config.py``), so the Collector itself is not run:

- ``otelcol.yaml`` is loaded as the Collector would load it (every component named is defined and used, the
  processors in the recommended order) and its settings are checked against the API's own: the route ``otlphttp``
  sends to, the header the API reads, an encoding and compression it accepts, a batch of real MCP spans well
  under the API's body limit, retries and a queue;
- the load balancer runs for real: Debian's nginx with ``nginx.conf`` (only its upstream addresses and listening
  address changed) in front of two real ``mcp-analytics serve`` processes, fed by the stock OTLP/HTTP exporter set
  up as the Collector's ``otlphttp/mcp_analytics`` sends (URL, headers, encoding, compression): the requests are
  spread over both instances, every event is stored once, an instance stopped loses nothing, and a body over the
  API's limit is refused by the balancer with the API's 413. Each instance has a DuckDB file of its own here (the
  balancer's behaviour does not depend on the store); one ClickHouse database shared by instances is tested in
  ``tests/test_analytics_clickhouse.py``.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import pytest
import yaml
from mcp import Implementation
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, SpanKind

from mcp_analytics.models import MAX_BODY_BYTES
from mcp_analytics.server import DEFAULT_PORT
from opentelemetry.exporter.mcp_analytics.events import is_analytics_span
from tests.apps.clients import in_memory
from tests.apps.servers import build
from tests.conftest import instrumented
from tests.processes import free_port
from tests.test_analytics_reliability import KEY, ApiProcess

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = ROOT / "deploy" / "fleet" / "otelcol.yaml"
NGINX = ROOT / "deploy" / "fleet" / "nginx.conf"
ANALYTICS = "otlphttp/mcp_analytics"
REQUIRE = "MCP_ANALYTICS_REQUIRE_NGINX"
ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")

pytestmark = pytest.mark.timeout(90)


def config() -> dict[str, Any]:
    return yaml.safe_load(COLLECTOR.read_text())


def test_the_fleet_collector_config_loads_and_says_what_the_api_reads():
    loaded = config()
    pipelines = loaded["service"]["pipelines"]
    assert set(pipelines) == {"traces"}, "the analytics API takes traces only"
    traces = pipelines["traces"]
    assert traces == {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"], "exporters": [ANALYTICS]}
    for kind in ("receivers", "processors", "exporters"):
        assert set(loaded[kind]) == set(traces[kind]), f"{kind}: defined and used must agree"
    assert set(loaded["extensions"]) == set(loaded["service"]["extensions"]) == {"health_check"}

    exporter = loaded["exporters"][ANALYTICS]
    endpoint = urlsplit(exporter["endpoint"])
    # otlphttp appends /v1/traces to `endpoint`: the API's OTLP route; the balancer listens on the API's port.
    assert endpoint.scheme == "http" and endpoint.path in ("", "/") and "traces_endpoint" not in exporter
    assert endpoint.port == DEFAULT_PORT == listen_port(NGINX.read_text())
    assert exporter["encoding"] == "proto" and exporter["compression"] == "gzip", "what the API decodes"
    # The API's _project: `Authorization: Bearer <key>`, the key from the environment.
    assert exporter["headers"] == {"Authorization": "Bearer ${env:MCP_ANALYTICS_KEY}"}
    retry, queue = exporter["retry_on_failure"], exporter["sending_queue"]
    assert retry["enabled"] and retry["max_elapsed_time"] and queue["enabled"] and queue["num_consumers"] > 1
    assert seconds(exporter["timeout"]) >= 10

    batch = loaded["processors"]["batch"]
    assert 0 < batch["send_batch_size"] <= batch["send_batch_max_size"], "the Collector refuses otherwise"
    limiter = loaded["processors"]["memory_limiter"]
    assert limiter["check_interval"] and limiter["limit_percentage"]
    values = [str(value) for value in scalars(loaded)]
    assert [name for value in values for name in ENV_REFERENCE.findall(value)] == ["MCP_ANALYTICS_KEY"]


def test_a_full_batch_of_real_mcp_spans_is_well_under_the_api_body_limit(spans):
    """``send_batch_max_size`` real MCP spans (no content captured) as the Collector sends them, protobuf: under a
    quarter of the API's limit, which applies before and after decompression."""
    largest = config()["processors"]["batch"]["send_batch_max_size"]
    body = encode_spans(copies(spans, largest)).SerializeToString()
    assert len(body) * 4 < MAX_BODY_BYTES, f"{largest} spans are {len(body):,} bytes"
    # The balancer refuses what the API would: the same limit.
    assert nginx_size(directive(NGINX.read_text(), "client_max_body_size")) == MAX_BODY_BYTES


def seconds(text: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)", text).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1, "m": 60}[unit]


def scalars(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from scalars(value)
    elif isinstance(node, list):
        for item in node:
            yield from scalars(item)
    else:
        yield node


def directive(text: str, name: str) -> str:
    (value,) = re.findall(rf"^\s*{name}\s+([^;]+);", text, re.MULTILINE)
    return value.strip()


def listen_port(text: str) -> int:
    return int(directive(text, "listen").rsplit(":", 1)[-1])


def nginx_size(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", text).groups()  # type: ignore[union-attr]
    return int(number) * 1024 ** " kmg".index(unit.lower() or " ")


# --------------------------------------------------------------------------- real spans, through a real balancer


@pytest.fixture(scope="module")
def spans() -> tuple[ReadableSpan, ...]:
    """The analytics spans an instrumented in-memory server records (tools listed, called, failed): its CLIENT
    spans left out, which the API stores but does not count."""

    async def calls() -> None:
        async with in_memory(build("highlevel"), client_info=Implementation(name="cursor", version="1.0")) as client:
            await client.list_tools()
            await client.call_tool("add", {"a": 1, "b": 2})
            await client.call_tool("fail", {})

    with instrumented() as recorded:
        anyio.run(calls)
        found = tuple(span for span in recorded.exporter.get_finished_spans()
                      if is_analytics_span(span) and span.kind != SpanKind.CLIENT)  # fmt: skip
    assert found
    return found


def copies(spans: tuple[ReadableSpan, ...], count: int, start: int = 0) -> list[ReadableSpan]:
    """``count`` spans cycling through ``spans``, each with a span id of its own (a new event each)."""
    made = []
    for i in range(start, start + count):
        span = spans[i % len(spans)]
        context = span.get_span_context()
        made.append(ReadableSpan(
            name=span.name, context=SpanContext(context.trace_id, 0x1000 + i, False, context.trace_flags),
            parent=span.parent, resource=span.resource, attributes=span.attributes, events=span.events,
            links=span.links, kind=span.kind, status=span.status, start_time=span.start_time,
            end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
        ))  # fmt: skip
    return made


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found:
        return found
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"nginx is not installed and {REQUIRE}=1")
    pytest.skip("nginx is not installed (Debian: apt-get install nginx); .ci/run installs it")


class Balancer:
    """nginx with ``deploy/fleet/nginx.conf`` in front of ``upstreams`` (ports on 127.0.0.1), in ``root``."""

    def __init__(self, root: Path, upstreams: list[int]) -> None:
        text = NGINX.read_text()
        servers = re.findall(r"^(\s*)server (\S+:\d+)( [^;]*)?;", text, re.MULTILINE)
        assert len(servers) == 2, "the recipe names two instances"
        indent, _, options = servers[0]
        lines = "".join(f"{indent}server 127.0.0.1:{port}{options};\n" for port in upstreams)
        text = re.sub(r"^\s*server \S+:\d+[^;]*;\n", "", text, flags=re.MULTILINE)
        text = text.replace(f"{indent}keepalive", f"{lines}{indent}keepalive", 1)
        self.port = free_port()
        text = re.sub(r"listen \d+;", f"listen 127.0.0.1:{self.port};", text)
        # Only where nginx keeps its files: everything under ``root``, nothing in /var.
        paths = "".join(f"    {name}_temp_path {root / name};\n" for name in ("client_body", "proxy", "fastcgi",
                                                                               "uwsgi", "scgi"))  # fmt: skip
        text = text.replace("http {\n", f"http {{\n    access_log off;\n{paths}", 1)
        (root / "logs").mkdir(parents=True, exist_ok=True)
        (root / "nginx.conf").write_text(text)
        self.log = root / "logs" / "error.log"
        command = [nginx_binary(), "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(self.log),
                   "-g", f"daemon off; master_process off; pid {root / 'nginx.pid'};"]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start in 20 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def as_the_collector_sends(port: int, environment: dict[str, str]) -> OTLPSpanExporter:
    """The stock OTLP/HTTP exporter set up as ``otlphttp/mcp_analytics`` sends, to the balancer on ``port``."""
    settings = config()["exporters"][ANALYTICS]
    endpoint = urlsplit(settings["endpoint"])
    url = f"{endpoint.scheme}://127.0.0.1:{port}{endpoint.path.rstrip('/')}/v1/traces"  # as otlphttp appends it
    headers = {
        name: ENV_REFERENCE.sub(lambda m: environment.get(m.group(1), ""), value)
        for name, value in settings["headers"].items()
    }
    return OTLPSpanExporter(endpoint=url, headers=headers, compression=Compression(settings["compression"]),
                            timeout=seconds(settings["timeout"]))  # fmt: skip


def stored(api: ApiProcess) -> int:
    answer = httpx.get(f"{api.url}/v1/panels/summary", params={"last": "1h"},
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=10)  # fmt: skip
    assert answer.status_code == 200, answer.text
    return int(answer.json()["rows"][0]["events"])


def test_the_balancer_spreads_the_collectors_requests_and_survives_an_instance(spans, tmp_path):
    nginx_binary()
    apis = [ApiProcess(tmp_path / f"api-{index}.duckdb") for index in range(2)]
    balancer = None
    try:
        for api in apis:
            api.start()
        balancer = Balancer(tmp_path / "nginx", [api.port for api in apis])
        # Without the key the API refuses (401, final: not retried) and nothing is stored.
        assert as_the_collector_sends(balancer.port, {}).export(copies(spans, 10)) == SpanExportResult.FAILURE
        exporter = as_the_collector_sends(balancer.port, {"MCP_ANALYTICS_KEY": KEY})
        batches, size = 12, 50
        for batch in range(batches):
            assert exporter.export(copies(spans, size, start=batch * size)) == SpanExportResult.SUCCESS
        counts = [stored(api) for api in apis]
        assert sum(counts) == batches * size, counts
        assert all(count >= 2 * size for count in counts), f"round robin per request: {counts}"

        apis[1].stop()  # one instance gone: the balancer sends its share to the other, nothing is lost
        for batch in range(batches, 2 * batches):
            assert exporter.export(copies(spans, size, start=batch * size)) == SpanExportResult.SUCCESS
        assert stored(apis[0]) == counts[0] + batches * size

        # Over the API's limit: refused by the balancer itself with the API's answer, 413 (final for a sender).
        answer = httpx.post(f"http://127.0.0.1:{balancer.port}/v1/traces", content=b"\0" * (MAX_BODY_BYTES + 1),
                            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/x-protobuf"},
                            timeout=30)  # fmt: skip
        assert answer.status_code == 413
    finally:
        if balancer is not None:
            balancer.stop()
        for api in apis:
            api.stop()


class Failing(http.server.BaseHTTPRequestHandler):
    """An instance whose store is unreachable: the API answers 500 (and the balancer tries the next instance)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(500)
        self.send_header("Content-Length", "21")
        self.end_headers()
        self.wfile.write(b"Internal Server Error")

    def log_message(self, *args: object) -> None:
        pass


def test_the_balancer_turns_a_500_of_every_instance_into_a_503_that_senders_retry(spans, tmp_path):
    """OTLP/HTTP senders retry 429, 502, 503 and 504 only: a batch answered 500 would be dropped."""
    nginx_binary()
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    balancer = Balancer(tmp_path / "nginx", [server.server_address[1] for server in servers])
    try:
        body = encode_spans(copies(spans, 5)).SerializeToString()
        answer = httpx.post(f"http://127.0.0.1:{balancer.port}/v1/traces", content=body,
                            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/x-protobuf"},
                            timeout=30)  # fmt: skip
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    finally:
        balancer.stop()
        for server in servers:
            server.shutdown()
            server.server_close()

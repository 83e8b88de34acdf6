"""Throughput, query latency and memory of the analytics pipeline: exporter, API ingest, panels, API memory.

Run from the repository root, in an environment with ``mcp``, ``opentelemetry-sdk``
and the analytics API's dependencies (``fastapi``, ``uvicorn``, ``duckdb``), and for
the ClickHouse store ``clickhouse-driver`` (the extra ``clickhouse``) and Debian's
``clickhouse-server`` (started on a temporary directory and free 127.0.0.1 ports, as
the tests start it: ``tests/clickhouse_server.py``)::

    python benchmarks/analytics.py [--only exporter,ingest,queries,memory] [--stores duckdb,clickhouse]
                                   [--help for sizes]

With DuckDB alone (``--stores duckdb``) the defaults take about sixteen minutes on two
cores (ten of them the memory run), plus about two minutes on the first run, which
builds the 1M-event store of ``queries`` and caches it. ClickHouse (in the default
``--stores``) adds about three minutes to ``ingest`` and fifteen to ``queries``, and five
minutes to the first run, which builds both 1M-event stores. Timings are only comparable
on an otherwise idle machine: each section prints the load average, and the exporter
also reports CPU time.

Every measurement starts from real spans: an instrumented in-memory MCP session
(a high-level server with tools that work, fail upstream and publish a custom
event, a prompt and a resource; three agents: two identified users and one
anonymous, with intents) is recorded once with ``MCPInstrumentor`` and an
``InMemorySpanExporter``, then ``uninstrument()``. Only the server side's spans
(SERVER and the custom event's INTERNAL span) are kept: what a server process exports.

``exporter``
    The recorded spans replicated to ``--spans`` ``ReadableSpan`` objects with
    distinct span ids (same attributes), cut into batches of the size
    ``install`` gives the processor (2,000), pushed through, in one thread (one core):
    ``full``: ``MCPAnalyticsExporter.export`` itself with only ``_post`` replaced
    (no network): ``is_analytics_span`` + ``to_event`` + ``encode_batch`` +
    the outcome counter; ``mapping``: ``is_analytics_span`` + ``to_event`` only;
    ``serialise``: the exporter's ``encode_batch`` (JSON, with orjson when it is
    installed, + gzip) on already mapped batches. Median of ``--rounds``.
    Target: ``full`` >= 50,000 spans/s.
``ingest``
    The real API in a subprocess (``python -m mcp_analytics serve``) on a fresh
    DuckDB file per configuration; ``--ingest-events`` events, pre-built as
    gzip'd JSON bodies exactly as the exporter writes them (the recorded events,
    via ``to_event``, with unique event/trace/span ids, a new session id per
    replayed session and timestamps spread in order over the last hour, so a batch
    covers a short time range as a live exporter's does), POSTed to
    ``/v1/events`` by K sender threads over keep-alive connections. Events/s =
    events stored (the ``summary`` panel's ``events``, ``last=all``, read back
    through the API) / wall time of the sends; the senders share the machine with
    the API. Also the API's CPU time per event (``/proc/<pid>/stat``).
    Configurations: 512 (the SDK's default batch) and 2,000 (what the exporter's
    ``install`` sends) events per batch, K = 1 and 4. Target: >= 20,000 events/s
    with the exporter's batch size, for each K (the others are reported).
    ClickHouse: the same bodies into ``--ingest-instances`` (1 and 2) API processes
    (``serve --store clickhouse://...``) on one fresh database per configuration of
    one ClickHouse server, the K senders dealt out over the instances (a
    configuration with fewer senders than instances is left out); events stored
    are read back through every instance, and each must count them all. The
    ClickHouse server, the API instances and the senders share the machine; the
    API CPU reported is the instances' together. No target (reported).
``queries``
    A store of ``--query-events`` events added with ``DuckDBStore.add`` in batches
    of 20,000 (and the very same events with ``ClickHouseStore.add`` in batches of
    100,000, generated once for both), arriving in time order: ~30 tools (skewed popularity; every
    ``tools/list`` lists them and one never called), ~200 users, 8 clients,
    sessions of initialize / tools/list / tool calls / prompts / resources /
    custom events, ~20% stateless events without a session id (half
    of them with a user), ~5% errors with failure origins and reasons, intents,
    over the last 7 days. The DuckDB file and the ClickHouse server's data directory
    are cached in ``--cache-dir`` and reused while younger than ``--cache-max-age``
    hours and built from the same generation (a store missing or stale is built
    with the events of the other); ClickHouse's background merges are let finish
    (no ``OPTIMIZE``) and its parts counted. Each panel of ``PANELS`` (``session``:
    the newest session with a session id in the ``sessions`` panel) is timed with
    ``store.panel`` for ``last=24h`` and ``last=all`` (both ending where the
    stores' events end, however old the cache), unfiltered and sliced (the commonest client and three failure
    origins), and one evaluation of every alert rule at the newest event: one
    warm-up, then ``--query-runs`` runs, median and max; one store after the other,
    the medians side by side in one table with each panel's row count (a
    difference between the stores is noted). Then a few panels through the HTTP
    API (the same store served by a subprocess). Target: median < 300 ms for each,
    on each store. 10M events (``--query-events 10000000``) take about ten times as
    long to build and, on ClickHouse, to time.
``memory``
    The API subprocess on a fresh file, with ``serve --memory-limit`` set to
    ``--memory-limit`` (64MB, so that DuckDB's cache reaches its cap early in the
    run; the service's default is 1GB), fed continuously for ``--memory-seconds``
    by ``--memory-senders`` threads (batches of ``install``'s size, new ids and current
    timestamps on every batch), its RSS (``VmRSS`` of ``/proc/<pid>/status``)
    sampled every ``--memory-interval`` s. Reported: RSS at start, after the
    warm-up, peak and end, the median RSS of each minute, and the RSS slope after
    the warm-up in MB/min (Theil-Sen, the median of pairwise slopes, so that the
    swings of DuckDB checkpoints do not tilt it; least squares beside it), next to
    the growth of the stored data (DuckDB file + WAL, MB/min, same estimator).
    The warm-up is while the service's caches fill: by default until the store on
    disk is larger than DuckDB's memory limit (its cache can then hold no more),
    or ``--memory-warmup`` seconds. Target (flat): the RSS slope after the warm-up
    is at most 10% of the store's growth.

Targets are reported, not enforced in the exit status (timings are noisy; pass
``--strict`` to exit 2 on a missed target); a failed correctness check (an HTTP
error, an event count that does not add up) exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import http.client
import inspect
import json
import logging
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, Implementation
from mcp.shared.memory import create_client_server_memory_streams
from opentelemetry import metrics
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the packages are importable from a checkout
from mcp_analytics.alerts import Rules
from mcp_analytics.duckdb_store import SCHEMA_VERSION, DuckDBStore
from mcp_analytics.models import EVENT, Event
from mcp_analytics.store import PANELS, Slice, Window
from opentelemetry.exporter.mcp_analytics.events import is_analytics_span, to_event
from opentelemetry.exporter.mcp_analytics.span_exporter import (
    GZIP_LEVEL,
    MCPAnalyticsExporter,
    encode_batch,
    install,
    orjson,
)
from opentelemetry_instrumentation_mcp import (
    MCPInstrumentor,
    ToolFailure,
    UserIdentity,
    publish_custom_event,
)
from tests import clickhouse_server  # a real clickhouse-server on a temporary directory, as the tests start it

ROOT = Path(__file__).resolve().parent.parent
MCP_VERSION = version("mcp")
IS_V2 = int(MCP_VERSION.split(".")[0]) >= 2
MEASUREMENTS = ("exporter", "ingest", "queries", "memory")
STORE_NAMES = {"duckdb": "DuckDB", "clickhouse": "ClickHouse"}
"""The stores ``ingest`` and ``queries`` measure (``--stores``)."""
EXPORT_BATCH = inspect.signature(install).parameters["max_export_batch_size"].default
"""The exporter's batch size (``install``'s ``max_export_batch_size``): the exporter and memory sections send
batches of it, and the ingest target is judged on it."""
PROJECT = "bench"
TARGET_EXPORTER = 50_000  # spans/s
TARGET_INGEST = 20_000  # events/s
TARGET_PANEL_MS = 300.0
TARGET_MEMORY_SHARE = 0.10  # RSS slope / store growth


@dataclass
class Target:
    name: str
    target: str
    measured: str
    met: bool


@dataclass
class Results:
    targets: list[Target] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def target(self, name: str, target: str, measured: str, met: bool) -> None:
        self.targets.append(Target(name, target, measured, met))

    def fail(self, message: str) -> None:
        print(f"CHECK FAILED {message}", flush=True)
        self.failures.append(message)


# --- recording real spans ------------------------------------------------------------------------------------

AGENTS = [
    # (user id and name or None, client name, client version, steps: (kind, name, arguments))
    (("alice", "Alice"), "claude-code", "2.1.0", [
        ("tool", "search_docs", {"query": "sessions", "context": "The user asks how stateless sessions are counted."}),
        ("tool", "get_page", {"slug": "sessions", "context": "Reading the page the search found for the user."}),
        ("tool", "checkout", {"cart": "c-1042", "context": "The user upgrades to the team plan."}),
        ("prompt", "explain_page", {"slug": "sessions"}),
        ("resource", "docs://pages", {}),
    ]),
    (("bob", "Bob"), "cursor-vscode", "1.6.0", [
        ("tool", "service_status", {"service": "billing", "context": "The user's invoice page fails to load."}),
        ("tool", "delete_page", {"slug": "billing"}),
        ("tool", "get_page", {"slug": "failures", "context": "The user asks what an upstream failure means."}),
    ]),
    (None, "mcp-inspector", "0.17.0", [
        ("tool", "search_docs", {"query": "quickstart"}),
        ("tool", "service_status", {"service": "api"}),
    ]),
]  # fmt: skip
_current_user: tuple[str, str] | None = None


def build_server() -> Any:
    """A high-level server: tools (one fails upstream, one publishes a custom event), a prompt, a resource."""
    if IS_V2:
        from mcp.server.mcpserver import MCPServer as HighLevel
    else:
        from mcp.server.fastmcp import FastMCP as HighLevel
    app = HighLevel("docs-bench")

    @app.tool()
    def search_docs(query: str) -> str:
        """Search the documentation."""
        return f"3 pages match {query!r}: sessions, failures, exporters"

    @app.tool()
    def get_page(slug: str) -> str:
        """One documentation page."""
        return f"# {slug}\n" + "A page of documentation. " * 20

    @app.tool()
    def service_status(service: str) -> str:
        """Whether a service is up."""
        if service == "billing":
            raise ToolFailure("the billing API is down", reason="upstream_error")
        return "up"

    @app.tool()
    def checkout(cart: str) -> str:
        """Buys a cart."""
        publish_custom_event(app, name="purchase", resource_name="checkout", parameters={"cart": cart},
                             response={"total": 42, "currency": "EUR"}, message="bought the team plan")  # fmt: skip
        return "ok"

    @app.resource("docs://pages")
    def pages() -> str:
        return "sessions, failures, exporters"

    @app.prompt()
    def explain_page(slug: str) -> str:
        """Explain a page."""
        return f"Explain the page {slug} to a new user."

    return app


async def run_agents(server: Any) -> None:
    global _current_user  # noqa: PLW0603 - the identify hook above reads the agent being played
    lowlevel = getattr(server, "_lowlevel_server", None) or getattr(server, "_mcp_server", None) or server
    for user, client_name, client_version, steps in AGENTS:
        _current_user = user
        async with (
            create_client_server_memory_streams() as (client_streams, server_streams),
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(lambda: lowlevel.run(*server_streams, lowlevel.create_initialization_options()))
            info = Implementation(name=client_name, version=client_version)
            async with ClientSession(*client_streams, client_info=info) as client:
                await client.initialize()
                await client.list_tools()
                for kind, name, arguments in steps:
                    try:
                        if kind == "tool":
                            await client.call_tool(name, arguments)
                        elif kind == "prompt":
                            await client.get_prompt(name, arguments)
                        else:
                            await client.read_resource(name)
                    except Exception:  # noqa: BLE001, S110 - an error answer is part of the script
                        pass
                await anyio.sleep(0.01)  # let the server finish its last message
            tg.cancel_scope.cancel()


def record_spans(capture_content: bool) -> list[ReadableSpan]:
    """The server-side spans of the scripted sessions, recorded by the real instrumentation."""
    logging.getLogger("mcp").setLevel(logging.CRITICAL)  # the failing tools log their tracebacks
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = MCPInstrumentor()
    instrumentor.instrument(
        tracer_provider=provider,
        meter_provider=metrics.NoOpMeterProvider(),
        intent=True,
        identify=lambda request: UserIdentity(*_current_user) if _current_user else None,
        capture_content=capture_content,
    )
    try:
        anyio.run(run_agents, build_server())
    finally:
        instrumentor.uninstrument()
    spans = sorted(exporter.get_finished_spans(), key=lambda span: span.start_time or 0)
    return [span for span in spans if span.kind != SpanKind.CLIENT and is_analytics_span(span)]


def replicate(spans: Sequence[ReadableSpan], count: int, seed: int = 1) -> list[ReadableSpan]:
    """``count`` spans cycling through ``spans``: same attributes, kind, status and times, distinct span ids."""
    rng = random.Random(seed)
    copies = []
    for i in range(count):
        span = spans[i % len(spans)]
        context = span.get_span_context()
        copies.append(
            ReadableSpan(
                name=span.name,
                context=SpanContext(context.trace_id, rng.getrandbits(64) or 1, False, context.trace_flags),
                parent=span.parent,
                resource=span.resource,
                attributes=span._attributes,  # the span's own BoundedAttributes, as on a recorded span (not a proxy)
                events=span.events,
                links=span.links,
                kind=span.kind,
                status=span.status,
                start_time=span.start_time,
                end_time=span.end_time,
                instrumentation_scope=span.instrumentation_scope,
            )
        )
    return copies


def describe_spans(spans: Sequence[ReadableSpan]) -> str:
    types: dict[str, int] = {}
    for event in (to_event(span) for span in spans):
        types[event["type"]] = types.get(event["type"], 0) + 1
    return ", ".join(f"{count} {name}" for name, count in types.items())


# --- 1. exporter ---------------------------------------------------------------------------------------------


class OfflineExporter(MCPAnalyticsExporter):
    """The real exporter with the HTTP POST replaced: everything else of ``export`` runs."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", "bench-key", meter_provider=metrics.NoOpMeterProvider())
        self.bodies = 0
        self.body_bytes = 0

    def _post(self, body: bytes, deadline: float) -> None:
        self.bodies += 1
        self.body_bytes += len(body)


def load() -> str:
    """The machine's load: timings are only comparable on an otherwise idle machine."""
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def timed(work: Callable[[], Any]) -> tuple[float, float]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_exporter(args: argparse.Namespace, recorded: list[ReadableSpan], results: Results) -> None:
    print(f"\n== 1. exporter: {args.spans:,} spans in {EXPORT_BATCH}-span batches, one thread, "
          f"median of {args.rounds} rounds; {load()}", flush=True)  # fmt: skip
    spans = replicate(recorded, args.spans)
    batches = [spans[i : i + EXPORT_BATCH] for i in range(0, len(spans), EXPORT_BATCH)]
    mapped = [[to_event(span) for span in batch if is_analytics_span(span)] for batch in batches]
    if sum(map(len, mapped)) != len(spans):
        results.fail(f"exporter: {sum(map(len, mapped))} of {len(spans)} spans mapped")
    exporter = OfflineExporter()

    def full() -> None:
        for batch in batches:
            exporter.export(batch)

    def mapping() -> None:
        for batch in batches:
            [to_event(span) for span in batch if is_analytics_span(span)]

    def serialisation() -> None:
        for events in mapped:
            encode_batch(events)

    arms = {"full": full, "mapping": mapping, "serialise": serialisation}
    wall: dict[str, list[float]] = {arm: [] for arm in arms}
    cpu: dict[str, list[float]] = {arm: [] for arm in arms}
    for round_ in range(args.rounds):
        for arm, work in arms.items():
            wall_s, cpu_s = timed(work)
            wall[arm].append(wall_s)
            cpu[arm].append(cpu_s)
        print(f"round {round_ + 1}/{args.rounds} (spans/s): "
              + ", ".join(f"{arm} {len(spans) / wall[arm][-1]:,.0f}" for arm in arms), flush=True)  # fmt: skip
    if exporter.bodies != len(batches) * args.rounds:
        results.fail(f"exporter: {exporter.bodies} bodies posted, expected {len(batches) * args.rounds}")
    body_bytes = exporter.body_bytes / max(exporter.bodies, 1)
    json_bytes = sum(len(json.dumps({"events": e}, separators=(",", ":"), default=str)) for e in mapped) / len(mapped)
    print(f"{'arm':<10} {'spans/s':>10} {'us/span':>8} {'cpu us/span':>11} {'spans/cpu-s':>11}  what")
    what = {
        "full": "MCPAnalyticsExporter.export (is_analytics_span + to_event + JSON + gzip + counter), _post stubbed",
        "mapping": "is_analytics_span + to_event",
        "serialise": f"encode_batch: JSON ({'orjson' if orjson else 'stdlib json'}) + gzip level {GZIP_LEVEL}",
    }
    for arm in arms:
        w, c = statistics.median(wall[arm]), statistics.median(cpu[arm])
        print(
            f"{arm:<10} {len(spans) / w:10,.0f} {w / len(spans) * 1e6:8.2f} {c / len(spans) * 1e6:11.2f} "
            f"{len(spans) / c:11,.0f}  {what[arm]}"
        )
    print(f"a {EXPORT_BATCH}-span batch: {json_bytes / 1024:,.0f} KiB of JSON, {body_bytes / 1024:,.1f} KiB gzip'd "
          f"({json_bytes / EXPORT_BATCH:,.0f} B/event)")  # fmt: skip
    rate = len(spans) / statistics.median(wall["full"])
    cpu_rate = len(spans) / statistics.median(cpu["full"])
    results.target("exporter map+serialise (1 core)", f">= {TARGET_EXPORTER:,} spans/s",
                   f"{rate:,.0f} spans/s ({cpu_rate:,.0f} per CPU-s)", rate >= TARGET_EXPORTER)  # fmt: skip


# --- event bodies as the exporter sends them ----------------------------------------------------------------


_TOKENS = {
    "@@EVENT@@": "{e}",
    "@@TRACE@@": "{t}",
    "@@SPAN@@": "{s}",
    "@@SESSION@@": "{q}",
    "7777777777777777777": "{ts}",
}
"""Placeholders in a serialised event, and the ``str.format`` fields that replace them."""


class Bodies:
    """Request bodies of the exporter's format, from the recorded events, with fresh ids, sessions and timestamps.

    Each recorded event is serialised once (``to_event``, the exporter's JSON
    settings) with placeholders for its ids, session id and timestamp; a batch is
    those fragments, in recorded order, cycling, with the placeholders filled.
    Replay ``r`` of the recorded sessions gets session ids of its own.
    """

    def __init__(self, recorded: Sequence[ReadableSpan], seed: int = 7) -> None:
        self.tag = random.Random(seed).getrandbits(64)
        self.sessions = sorted({to_event(span).get("session_id") for span in recorded} - {None})
        self.fragments = []
        self.session_of = []
        for span in recorded:
            event = to_event(span)
            self.session_of.append(self.sessions.index(event["session_id"]) if event.get("session_id") else None)
            event |= {"event_id": "@@EVENT@@", "trace_id": "@@TRACE@@", "span_id": "@@SPAN@@",
                      "timestamp_ns": 7777777777777777777}  # fmt: skip
            if event.get("session_id"):
                event["session_id"] = "@@SESSION@@"
            text = json.dumps(event, separators=(",", ":"), default=str).replace("{", "{{").replace("}", "}}")
            for token, slot in _TOKENS.items():
                text = text.replace(token, slot)
            self.fragments.append(text)

    def events_json(self, first: int, count: int, stamp: Callable[[int], int]) -> str:
        """Events ``first`` .. ``first + count - 1`` of the endless replay, as the exporter's JSON."""
        parts = []
        n = len(self.fragments)
        for seq in range(first, first + count):
            replay, index = divmod(seq, n)
            session = self.session_of[index]
            trace = f"{self.tag:016x}{seq:016x}"
            span = f"{seq * 2 + 1:016x}"
            q = f"{self.tag:016x}{replay:08x}{session or 0:08x}"
            parts.append(self.fragments[index].format(e=trace + span, t=trace, s=span, q=q, ts=stamp(seq)))
        return '{"events":[' + ",".join(parts) + "]}"

    def body(self, first: int, count: int, stamp: Callable[[int], int], level: int = GZIP_LEVEL) -> bytes:
        """gzip'd like the exporter's."""
        return gzip.compress(self.events_json(first, count, stamp).encode(), compresslevel=level)


# --- the API as a subprocess --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Api:
    """``python -m mcp_analytics serve`` on a store and a free port, until ``stop``: a DuckDB file (``--db``), or a
    ``clickhouse://`` URL (``--store``), which any number of instances share (``key``: the project's API key)."""

    def __init__(self, db: Path | str, workdir: Path, memory_limit: str | None = None, key: str | None = None) -> None:
        self.key = key or "bench-" + os.urandom(8).hex()
        self.port = free_port()
        self.log = workdir / f"api-{self.port}.log"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        store = ["--db", str(db)] if isinstance(db, Path) else ["--store", db]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mcp_analytics", "serve", *store, "--port", str(self.port),
                 "--api-key", f"{PROJECT}={self.key}", *(["--memory-limit", memory_limit] if memory_limit else [])],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.pid = self.process.pid
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the API exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if self.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the API did not answer /healthz within 60 s")
            time.sleep(0.05)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def get(self, path: str, connection: http.client.HTTPConnection | None = None) -> tuple[int, Any]:
        conn = connection or self.connection()
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.key}"})
            response = conn.getresponse()
            body = response.read()
            try:
                return response.status, json.loads(body) if body else None
            except ValueError:  # say what came back, and what the API logged (a 10M run once failed here)
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"{path}: HTTP {response.status}, not JSON: {body[:500]!r}; the API's log: {tail}"
                ) from None
        finally:
            if connection is None:
                conn.close()

    def panel(self, name: str, connection: http.client.HTTPConnection | None = None, **params: Any) -> list[dict]:
        status, answer = self.get(f"/v1/panels/{name}?{urllib.parse.urlencode(params)}", connection)
        if status != 200:
            raise RuntimeError(f"panel {name}: HTTP {status}: {answer}")
        return answer["rows"]

    def post(self, connection: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
        connection.request("POST", "/v1/events", body=body, headers={
            "Authorization": f"Bearer {self.key}", "Content-Type": "application/json", "Content-Encoding": "gzip",
        })  # fmt: skip
        response = connection.getresponse()
        return response.status, response.read()

    def rss_mb(self) -> float:
        return proc_status_kb(self.pid, "VmRSS") / 1024

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def store_mb(db: Path) -> float:
    return sum(path.stat().st_size for path in (db, db.with_name(db.name + ".wal")) if path.exists()) / 1024**2


class Senders:
    """K threads POSTing bodies from ``next_body`` over their own keep-alive connection."""

    def __init__(self, api: Api, threads: int, next_body: Callable[[], tuple[int, bytes] | None]) -> None:
        self.api = api
        self.next_body = next_body
        self.accepted = 0
        self.sent = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self) -> None:
        connection = self.api.connection()
        try:
            while (item := self.next_body()) is not None:
                count, body = item
                status, answer = self.api.post(connection, body)
                with self.lock:
                    self.sent += count
                    if status == 200:
                        self.accepted += json.loads(answer)["accepted"]
                    elif len(self.errors) < 5:
                        self.errors.append(f"HTTP {status}: {answer[:300]!r}")
        except Exception as error:  # noqa: BLE001 - reported as a check failure
            with self.lock:
                self.errors.append(f"{type(error).__name__}: {error}")
        finally:
            connection.close()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


# --- 2. ingest -----------------------------------------------------------------------------------------------


def bench_ingest(args: argparse.Namespace, recorded: list[ReadableSpan], workdir: Path, results: Results) -> None:
    configs = [(store, n, batch, k) for store in args.stores for n in (args.ingest_instances if store == "clickhouse"
               else [1]) for batch in args.ingest_batches for k in args.ingest_senders if k >= n]  # fmt: skip
    print(f"\n== 2. API ingest into {' and '.join(STORE_NAMES[store] for store in args.stores)}: "
          f"{args.ingest_events:,} events per configuration, fresh API subprocess(es) and store each; {load()}",
          flush=True)  # fmt: skip
    bodies = Bodies(recorded)
    end_ns = time.time_ns()
    start_ns = end_ns - 3600 * 10**9
    step = 3600 * 10**9 // args.ingest_events

    def stamp(seq: int) -> int:
        return start_ns + seq * step  # in order over the last hour

    prebuilt: dict[int, list[tuple[int, bytes]]] = {}
    for batch in args.ingest_batches:
        wall = time.perf_counter()
        prebuilt[batch] = [
            (min(batch, args.ingest_events - first), bodies.body(first, min(batch, args.ingest_events - first), stamp))
            for first in range(0, args.ingest_events, batch)
        ]
        size = sum(len(body) for _, body in prebuilt[batch]) / len(prebuilt[batch])
        print(f"built {len(prebuilt[batch])} bodies of {batch} events ({size / 1024:,.0f} KiB gzip'd each) "
              f"in {time.perf_counter() - wall:.1f} s", flush=True)  # fmt: skip

    rows = []
    with contextlib.ExitStack() as stack:
        if "clickhouse" in args.stores:
            host, port = stack.enter_context(clickhouse_server.running(workdir / "clickhouse-ingest"))
            print(f"ClickHouse {clickhouse_version(host, port)} on {host}:{port} (a temporary directory), a fresh "
                  f"database per configuration; {', '.join(map(str, args.ingest_instances))} API instance(s) on it, "
                  "the K senders dealt out over them", flush=True)  # fmt: skip
        for store, n, batch, k in configs:
            label = f"{STORE_NAMES[store]} x{n}, batch={batch}, K={k}"
            if store == "duckdb":
                db = workdir / f"ingest-{batch}-{k}.duckdb"
                for path in (db, db.with_name(db.name + ".wal")):
                    path.unlink(missing_ok=True)
                locations: list[Path | str] = [db]
            else:
                locations = [f"clickhouse://{host}:{port}/ingest_{batch}_{k}_{n}"] * n  # one database, n instances
            key = "bench-" + os.urandom(8).hex()
            apis: list[Api] = []
            try:
                for location in locations:
                    apis.append(Api(location, workdir, key=key))
                queue = iter(prebuilt[batch])
                lock = threading.Lock()

                def next_body(
                    queue: Iterator[tuple[int, bytes]] = queue, lock: threading.Lock = lock
                ) -> tuple[int, bytes] | None:
                    with lock:
                        return next(queue, None)

                senders = [Senders(api, len(range(i, k, n)), next_body) for i, api in enumerate(apis)]
                cpu0, client0 = sum(api.cpu_seconds() for api in apis), time.process_time()
                wall = time.perf_counter()
                for group in senders:
                    group.start()
                for group in senders:
                    group.join()
                wall = time.perf_counter() - wall
                cpu, client = sum(api.cpu_seconds() for api in apis) - cpu0, time.process_time() - client0
                stored = [api.panel("summary", last="all")[0]["events"] for api in apis]  # read back by each
                rss = max(api.rss_mb() for api in apis)
            finally:
                for api in apis:
                    api.stop()
            for error in (error for group in senders for error in group.errors):
                results.fail(f"ingest {label}: {error}")
            accepted = sum(group.accepted for group in senders)
            if not (accepted == args.ingest_events and all(count == accepted for count in stored)):
                results.fail(f"ingest {label}: sent {args.ingest_events}, accepted {accepted}, stored (read through "
                             f"each instance) {', '.join(map(str, stored))}")  # fmt: skip
            rate = stored[0] / wall
            rows.append((store, n, batch, k, stored[0], wall, rate, cpu, client, rss))
            print(f"{label}: {stored[0]:,} stored in {wall:.2f} s = {rate:,.0f} events/s "
                  f"(API CPU {cpu / wall:.0%} of one core{', all instances' if n > 1 else ''})", flush=True)  # fmt: skip
            if store == "duckdb" and batch == EXPORT_BATCH:
                results.target(f"ingest, {batch}-event batches, K={k}", f">= {TARGET_INGEST:,} events/s",
                               f"{rate:,.0f} events/s", rate >= TARGET_INGEST)  # fmt: skip
    print(f"{'store':<10} {'APIs':>4} {'batch':>6} {'K':>2} {'stored':>9} {'wall s':>7} {'events/s':>9} "
          f"{'API cpu s':>9} {'API cpu us/event':>16} {'senders cpu s':>13} {'API RSS MB':>10}")  # fmt: skip
    for store, n, batch, k, stored, wall, rate, cpu, client, rss in rows:
        print(f"{STORE_NAMES[store]:<10} {n:>4} {batch:>6} {k:>2} {stored:>9,} {wall:7.2f} {rate:9,.0f} {cpu:9.2f} "
              f"{cpu / stored * 1e6:16.1f} {client:13.2f} {rss:10.0f}")  # fmt: skip
    if any(store == "clickhouse" for store, *_ in rows):
        print("ClickHouse: API CPU is the API processes' only; the ClickHouse server shares the same cores, and so do "
              "the senders")  # fmt: skip


# --- 3. panel queries ----------------------------------------------------------------------------------------

TOOLS = [f"{verb}_{noun}" for verb in ("search", "get", "create", "update", "list", "delete")
         for noun in ("docs", "ticket", "invoice", "user", "page")]  # fmt: skip
RETIRED = TOOLS[-2:]
"""Tools nobody called in the last two days (the ``unused_tools`` panel has rows)."""
LISTED = [*TOOLS, "archive_docs"]
"""What every ``tools/list`` answers: every tool, and one that nobody ever calls."""
CLIENTS = [("claude-code", "2.1.0", 30), ("claude-ai", "0.1.0", 20), ("cursor-vscode", "1.6.0", 18),
           ("codex-cli", "0.9.2", 10), ("windsurf", "1.12.0", 8), ("zed", "0.201.0", 6),
           ("mcp-inspector", "0.17.0", 5), ("goose", "1.4.0", 3)]  # fmt: skip
PROMPTS = {"explain_page": ["slug"], "review_code": ["code", "language"], "summarise": ["text"],
           "triage_ticket": ["id"], "write_release_notes": ["version", "audience"]}  # fmt: skip
CUSTOM = [("purchase", "checkout"), ("signup", "onboarding"), ("feedback", "survey"), ("export", "reports")]
REASONS = [("server", "tool_error", 35), ("upstream", "upstream_error", 20), ("upstream", "upstream_timeout", 10),
           ("client", "invalid_params", 15), ("client", "unknown_tool", 5), ("server", "internal_error", 5),
           ("auth", "invalid_token", 5), ("client", "not_found", 5)]  # fmt: skip
INTENTS = ["The user asks how sessions are counted.", "The user's invoice page fails to load.",
           "Reading the page the search found for the user.", "The user wants to escalate an outage.",
           "The user sets up tracing to Tempo.", "The user asks what changed in the last release."]  # fmt: skip
MESSAGES = {"tool_error": "the tool failed: no such record", "upstream_error": "the billing API is down",
            "upstream_timeout": "the search backend timed out after 10 s", "invalid_params": "Input validation error",
            "unknown_tool": "Unknown tool: frobnicate", "internal_error": "Internal error",
            "invalid_token": "invalid_token", "not_found": "Resource not found"}  # fmt: skip
CODES = {"invalid_params": -32602, "unknown_tool": -32602, "internal_error": -32603, "not_found": -32002}


class Population:
    """The query data set: sessions and stateless bursts over ``days`` ending at ``end``, seeded.

    The structure (which units, how many events each, their start times) is drawn first, so the
    data has exactly the requested number of events and still spans the whole period; then each
    unit's events. Units are generated, and so added, in order of their start.
    """

    BURSTS = 0.405
    """Share of units that are stateless bursts: about 20% of the events."""

    def __init__(self, seed: int, end: datetime, days: int = 7) -> None:
        self.rng = random.Random(seed)
        self.end_us = int(end.timestamp() * 1e6)
        self.start_us = self.end_us - days * 86_400 * 10**6
        self.tool_weights = [1 / (i + 1) ** 1.1 for i in range(len(TOOLS))]
        self.tool_args = {tool: [["query"], ["id"], ["id", "fields"], ["title", "body"]][i % 4]
                          for i, tool in enumerate(TOOLS)}  # fmt: skip
        self.users = [(f"user-{i:03d}", f"User {i}") for i in range(200)]
        self.user_weights = [1 / (i + 1) ** 0.8 for i in range(200)]
        self.client_weights = [w for *_, w in CLIENTS]
        self.reason_weights = [w for *_, w in REASONS]

    def _event(self, ts_us: int, etype: str, *, kind: str = "server", resource: str | None = None,
               session: str | None, user: tuple[str, str] | None, client: tuple[str, str], error_rate: float,
               **extra: Any) -> dict[str, Any]:  # fmt: skip
        rng = self.rng
        trace, span = f"{rng.getrandbits(128):032x}", f"{rng.getrandbits(64):016x}"
        event: dict[str, Any] = {
            "event_id": trace + span, "type": etype, "timestamp_ns": ts_us * 1000, "kind": kind,
            "duration_ms": round(rng.lognormvariate(3.0, 1.0), 3), "session_id": session,
            "stateless": session is None, "resource": resource, "user_id": user and user[0],
            "user_name": user and user[1], "client_name": client[0], "client_version": client[1],
            "server_name": "docs-bench", "server_version": "1.0.0", "protocol_version": "2025-11-25",
            "transport": "tcp", "trace_id": trace, "span_id": span, **extra,
        }  # fmt: skip
        if rng.random() < error_rate:
            origin, reason, _ = rng.choices(REASONS, self.reason_weights)[0]
            code = CODES.get(reason)
            event |= {"is_error": True, "failure": {"origin": origin, "reason": reason},
                      "error": {"type": str(code) if code else reason, "message": MESSAGES[reason], "code": code}}  # fmt: skip
        return event

    def _call(self, ts_us: int, session: str | None, user: Any, client: Any, lists: float) -> dict[str, Any]:
        """One request after the handshake: mostly tool calls, some prompts, resources, custom events, lists."""
        rng = self.rng
        common = {"session": session, "user": user, "client": client}
        roll = rng.random()
        if roll < lists:
            return self._event(ts_us, "mcp:tools/list", error_rate=0.0, tools_listed=LISTED, **common)
        roll = rng.random()
        if roll < 0.86:
            tool = rng.choices(TOOLS, self.tool_weights)[0]
            while tool in RETIRED and ts_us > self.end_us - 2 * 86_400 * 10**6:  # not called in the last 2 days
                tool = rng.choices(TOOLS, self.tool_weights)[0]
            event = self._event(ts_us, "mcp:tools/call", resource=tool, error_rate=0.063,
                                argument_keys=self.tool_args[tool],
                                intent=rng.choice(INTENTS) if rng.random() < 0.6 else None,
                                response_size=int(rng.lognormvariate(6.5, 1.2)), **common)  # fmt: skip
            if tool.startswith(("get", "search")):  # these reach an upstream service
                event["upstream_ms"] = round(event["duration_ms"] * rng.uniform(0.2, 0.9), 3)
            return event
        if roll < 0.91:
            prompt = rng.choice(list(PROMPTS))
            return self._event(ts_us, "mcp:prompts/get", resource=prompt, error_rate=0.02,
                               argument_keys=PROMPTS[prompt][: rng.randint(1, 2)], **common)  # fmt: skip
        if roll < 0.96:
            uri = f"docs://pages/{rng.randint(1, 40)}"
            return self._event(ts_us, "mcp:resources/read", resource=uri, error_rate=0.03, **common)
        name, resource = rng.choice(CUSTOM)
        custom = {"parameters": {"item": rng.randint(1, 999)}, "response": {"ok": True}, "message": f"{name} done"}
        return self._event(ts_us, f"custom:{name}", kind="internal", resource=resource, error_rate=0.02,
                           custom=custom, **common)  # fmt: skip

    def _session(self, t: int, size: int) -> list[dict[str, Any]]:
        """initialize, initialized, tools/list, then requests; the user is known from the first tool call on."""
        rng = self.rng
        client = rng.choices(CLIENTS, self.client_weights)[0][:2]
        user = rng.choices(self.users, self.user_weights)[0] if rng.random() < 0.85 else None
        common = {"session": f"{rng.getrandbits(128):032x}", "client": client, "user": None, "error_rate": 0.0}
        events = [self._event(t, "mcp:initialize", **common),
                  self._event(t + 2_000, "mcp:notifications/initialized", **common),
                  self._event(t + 5_000, "mcp:tools/list", tools_listed=LISTED, **common)][:size]  # fmt: skip
        for _ in range(size - len(events)):
            t += int(rng.expovariate(1 / 20) * 1e6) + 1_000
            events.append(self._call(t + 5_000, common["session"], user, client, lists=0.03))
        return events

    def _burst(self, t: int, size: int) -> list[dict[str, Any]]:
        """Stateless traffic: requests without a session id, half of them from an identified user."""
        rng = self.rng
        client = rng.choices(CLIENTS, self.client_weights)[0][:2]
        user = rng.choices(self.users, self.user_weights)[0] if rng.random() < 0.5 else None
        events = []
        for _ in range(size):
            t += int(rng.expovariate(1 / 60) * 1e6) + 1_000
            events.append(self._call(t, None, user, client, lists=0.1))
        return events

    def chunks(self, total: int, size: int) -> Iterator[list[Event]]:
        """Exactly ``total`` events, in chunks of about ``size``."""
        units: list[tuple[bool, int]] = []
        planned = 0
        while planned < total:
            burst = self.rng.random() < self.BURSTS
            count = max(1, int(self.rng.expovariate(1 / 5))) if burst else 3 + max(1, int(self.rng.expovariate(1 / 10)))
            count = min(count, total - planned)
            units.append((burst, count))
            planned += count
        last_start = self.end_us - 1_800 * 10**6  # a unit lasts minutes; its events stay before the end
        starts = sorted(self.rng.randrange(self.start_us, last_start) for _ in units)
        pending: list[dict[str, Any]] = []
        for (burst, count), start in zip(units, starts, strict=True):
            pending += self._burst(start, count) if burst else self._session(start, count)
            if len(pending) >= size:
                yield [EVENT.validate_python(event) for event in pending]
                pending = []
        if pending:
            yield [EVENT.validate_python(event) for event in pending]


CLICKHOUSE_BATCH = 100_000
"""Events per ``ClickHouseStore.add`` while the query store is built: large batches, as a bulk load sends them
(each insert writes a part per day it covers, which background merges then join)."""
CLICKHOUSE_DATABASE = "bench"


def clickhouse_missing() -> str | None:
    """Why the ClickHouse store cannot be measured on this machine, or None."""
    if clickhouse_server.binary() is None:
        return "clickhouse-server is not installed (Debian: apt-get install clickhouse-server)"
    try:
        import clickhouse_driver  # noqa: F401
    except ImportError:
        return "clickhouse-driver is not installed (the extra clickhouse: pip install -e '.[analytics,clickhouse]')"
    return None


def clickhouse_version(host: str, port: int) -> str:
    from clickhouse_driver import Client

    client = Client(host=host, port=port)
    try:
        return str(client.execute("SELECT version()")[0][0])
    finally:
        client.disconnect()


def disk_mb(path: Path) -> float:
    """A DuckDB store's size (file + WAL), or everything under a directory (a ClickHouse server's)."""
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file()) / 1024**2
    return store_mb(path)


@dataclass
class QueryStore:
    """One store of the query data set: where it is kept between runs and how to open it."""

    name: str
    """``duckdb`` or ``clickhouse`` (``STORE_NAMES``)."""
    path: Path
    """The DuckDB file, or the directory of the ClickHouse server that holds the database."""
    url: str = ""
    """The ``clickhouse://`` URL, once its server runs."""

    @property
    def meta_path(self) -> Path:
        return self.path.with_suffix(".json")

    @property
    def location(self) -> Path | str:
        """What ``serve`` is given: the file, or the URL."""
        return self.url or self.path

    def open(self) -> Any:
        if self.name == "duckdb":
            return DuckDBStore(self.path)
        from mcp_analytics.clickhouse_store import ClickHouseStore

        return ClickHouseStore(self.url)

    def remove(self) -> None:
        if self.path.is_dir():
            shutil.rmtree(self.path)
        for stale in (self.path, self.path.with_name(self.path.name + ".wal"), self.meta_path):
            if stale.is_file():
                stale.unlink()


def reusable(meta_path: Path, args: argparse.Namespace) -> dict[str, Any] | None:
    """A cached store's description, when it holds the events asked for and is younger than ``--cache-max-age``."""
    if args.no_cache or not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    age = datetime.now(UTC) - datetime.fromisoformat(meta["built_at"])
    fresh = age < timedelta(hours=args.cache_max_age)
    return meta if fresh and meta["events"] == args.query_events and meta["seed"] == args.seed else None


def query_stores(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[list[QueryStore], datetime]:
    """The stores of ``--stores`` holding the same ``--query-events`` events: reused from ``--cache-dir`` while they
    hold the same generation (seed and end), else built, all from one generation; and the end of their events. A
    ClickHouse server runs on its directory there until ``stack`` closes."""
    cache = Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    name = f"panels-{args.query_events}-seed{args.seed}"
    stores = []
    for store in args.stores:
        if store == "duckdb":
            stores.append(QueryStore(store, cache / f"{name}-v{SCHEMA_VERSION}.duckdb"))
        else:
            from mcp_analytics.clickhouse_store import SCHEMA_VERSION as CLICKHOUSE_SCHEMA

            stores.append(QueryStore(store, cache / f"{name}-clickhouse-v{CLICKHOUSE_SCHEMA}"))
    metas = {store.name: reusable(store.meta_path, args) for store in stores}
    # The newest cached generation is kept; a store that holds another (or none) is built with the same events.
    built_at = max((meta["built_at"] for meta in metas.values() if meta), default=datetime.now(UTC).isoformat())
    stale = [store for store in stores if (metas[store.name] or {}).get("built_at") != built_at]
    for store in stores:
        if store in stale:
            store.remove()
        else:
            age = datetime.now(UTC) - datetime.fromisoformat(built_at)
            print(f"reusing {store.path} ({args.query_events:,} events, built {age.total_seconds() / 60:.0f} min ago; "
                  f"--no-cache to rebuild)")  # fmt: skip
        if store.name == "clickhouse":
            host, port = stack.enter_context(clickhouse_server.running(store.path))
            store.url = f"clickhouse://{host}:{port}/{CLICKHOUSE_DATABASE}"
            print(f"ClickHouse {clickhouse_version(host, port)} on {host}:{port}, its data in {store.path}", flush=True)
    if stale:
        build_stores(stale, args.query_events, args.seed, datetime.fromisoformat(built_at))
    for store in stores:
        if store.name == "clickhouse":
            settle(store.url)
    return stores, datetime.fromisoformat(built_at)


def build_stores(stores: Sequence[QueryStore], total: int, seed: int, built_at: datetime) -> None:
    """``total`` events of the population ending at ``built_at``, generated once, into each of ``stores`` with its
    own ``add``: ``DuckDBStore.add`` in batches of 20,000 (as the store was always built), ``ClickHouseStore.add`` in
    batches of ``CLICKHOUSE_BATCH``."""
    batch = {"duckdb": 20_000, "clickhouse": CLICKHOUSE_BATCH}
    opened = {store.name: store.open() for store in stores}
    pending: dict[str, list[Event]] = {name: [] for name in opened}
    spent = dict.fromkeys(opened, 0.0)
    stored = dict.fromkeys(opened, 0)

    def flush(name: str) -> None:
        wall = time.perf_counter()
        stored[name] += opened[name].add(PROJECT, pending[name]).accepted
        spent[name] += time.perf_counter() - wall
        pending[name] = []

    began = time.perf_counter()
    generated = 0
    step = max(total // 4, 1)
    try:
        for chunk in Population(seed, built_at).chunks(total, 20_000):
            for name in opened:
                pending[name] += chunk
                if len(pending[name]) >= batch[name]:
                    flush(name)
            before, generated = generated, generated + len(chunk)
            if generated // step > before // step:
                print(f"building {', '.join(STORE_NAMES[name] for name in opened)}: {generated:,}/{total:,} events, "
                      f"{time.perf_counter() - began:.0f} s", flush=True)  # fmt: skip
        for name in opened:
            if pending[name]:
                flush(name)
    finally:
        for store in opened.values():
            store.close()
    generation = time.perf_counter() - began - sum(spent.values())
    print(f"generated {total:,} events (validated as the API validates them) in {generation:.1f} s "
          f"({total / generation:,.0f} events/s)")  # fmt: skip
    for store in stores:
        schema = SCHEMA_VERSION if store.name == "duckdb" else int(store.path.name.rsplit("-v", 1)[1])
        meta = {"built_at": built_at.isoformat(), "events": stored[store.name], "seed": seed, "schema": schema}
        store.meta_path.write_text(json.dumps(meta))
        wall = spent[store.name]
        print(f"built {store.path} ({stored[store.name]:,} events, {disk_mb(store.path):,.0f} MB) with "
              f"{STORE_NAMES[store.name]}Store.add in batches of {batch[store.name]:,}: {wall:.1f} s "
              f"({stored[store.name] / wall:,.0f} events/s)", flush=True)  # fmt: skip


def settle(url: str, timeout: float = 600.0) -> None:
    """Until ClickHouse's background merges of the events are done, as on a store that has been running a while
    (no ``OPTIMIZE``: the parts are those the server's own merges leave)."""
    from clickhouse_driver import Client

    from mcp_analytics.clickhouse_store import Address

    address = Address.parse(url)
    client = Client(host=address.host, port=address.port, database=address.database)
    began = time.monotonic()
    quiet = 0
    try:
        while quiet < 3 and time.monotonic() - began < timeout:  # three idle seconds in a row
            busy = client.execute("SELECT count() FROM system.merges WHERE database = currentDatabase()")[0][0]
            quiet = 0 if busy else quiet + 1
            time.sleep(1)
        parts, days = client.execute(
            "SELECT count(), uniqExact(partition) FROM system.parts"
            " WHERE database = currentDatabase() AND table = 'events' AND active"
        )[0]
    finally:
        client.disconnect()
    print(f"ClickHouse: background merges done after {time.monotonic() - began:.0f} s; events in {parts} parts "
          f"over {days} daily partitions", flush=True)  # fmt: skip


def describe_duckdb(store: DuckDBStore) -> None:
    shares = store._connection.execute(
        "SELECT count(*), avg(CASE WHEN session_id IS NULL THEN 1 ELSE 0 END), "
        "avg(CASE WHEN session_id IS NULL AND user_id IS NOT NULL THEN 1 ELSE 0 END), avg(is_error::INT), "
        "count(DISTINCT resource) FILTER (WHERE type = 'mcp:tools/call'), count(DISTINCT user_id), "
        "count(DISTINCT client_name), count(DISTINCT session_id), min(ts), max(ts) FROM events"
    ).fetchone()
    print(f"store: {shares[0]:,} events, {shares[1]:.1%} without session id ({shares[2]:.1%} of all with a user), "
          f"{shares[3]:.1%} errors, {shares[4]} tools, {shares[5]} users, {shares[6]} clients, "
          f"{shares[7]:,} session ids, {shares[8]:%Y-%m-%d %H:%M} .. {shares[9]:%Y-%m-%d %H:%M} UTC")  # fmt: skip


Timing = tuple[str, str, float, float, int]
"""(panel, ``*`` when sliced; window; median ms; max ms; rows)."""


def time_panels(
    store: Any, args: argparse.Namespace, slices: dict[str, Slice], end: datetime, label: str
) -> list[Timing]:
    """Each panel of ``PANELS`` per window ending at ``end`` and slice, and one evaluation of every alert rule: one
    warm-up, then ``--query-runs`` runs each."""
    timings: list[Timing] = []
    for last in ("24h", "all"):
        window = Window.parse(end=end, last=last)
        recent = store.panel(PROJECT, "sessions", window, limit=1000)  # the newest are one-event stateless ones
        session = next((row for row in recent if not row["stateless"]), recent[0])["session"]  # a real session
        in_window = store.panel(PROJECT, "summary", window)[0]["events"]
        print(f"{label}, window last={last}: {in_window:,} events; session panel on {session!r}", flush=True)
        for name_of_slice, slice in slices.items():
            for name in PANELS:
                params = {"session": session} if name == "session" else {"q": "release"} if name == "intents" else {}
                runs = []
                for _ in range(args.query_runs + 1):
                    wall = time.perf_counter()
                    rows = store.panel(PROJECT, name, window, slice, **params)
                    runs.append((time.perf_counter() - wall) * 1000)
                runs = runs[1:]
                panel = name if name_of_slice == "all" else f"{name}*"
                timings.append((panel, last, statistics.median(runs), max(runs), len(rows)))
    latest = store.panel(PROJECT, "extent", Window.parse(last="all"))[0]["last_event"]
    runs = []
    for _ in range(args.query_runs + 1):
        wall = time.perf_counter()
        found = store.deviations(PROJECT, latest, Rules())
        runs.append((time.perf_counter() - wall) * 1000)
    runs = runs[1:]
    timings.append(("alert rules", "now", statistics.median(runs), max(runs), len(found)))
    return timings


def bench_queries(args: argparse.Namespace, workdir: Path, results: Results) -> None:
    print(f"\n== 3. panel queries on {args.query_events:,} events in "
          f"{' and '.join(STORE_NAMES[store] for store in args.stores)} (the same events in each): "
          f"1 warm-up + {args.query_runs} runs each; {load()}", flush=True)  # fmt: skip
    with contextlib.ExitStack() as stack:
        # Every store answers for the same windows, which end where the events do: a cached store's 24 hours are
        # those of its last day, however old it is (ended now, they would hold less as the cache ages).
        stores, end = query_stores(args, stack)
        timings: dict[str, list[Timing]] = {}
        summaries: dict[str, dict[str, Any]] = {}
        slices: dict[str, Slice] = {}
        for store in stores:
            opened = store.open()
            try:
                if store.name == "duckdb":
                    describe_duckdb(opened)
                summaries[store.name] = opened.panel(PROJECT, "summary", Window.parse(last="all"))[0]
                print(f"{STORE_NAMES[store.name]}: summary of all events {summaries[store.name]}", flush=True)
                if not slices:
                    client = opened.panel(PROJECT, "clients", Window.parse(last="all"))[0]["client"]  # the commonest
                    slices = {
                        "all": Slice(),
                        "sliced": Slice(client=(client,), origin=("server", "upstream", "client")),
                    }
                    print(f"each panel unfiltered and sliced by client={client!r} and origin=server,upstream,client")
                print(f"{STORE_NAMES[store.name]}: timing {load()}", flush=True)
                timings[store.name] = time_panels(opened, args, slices, end, STORE_NAMES[store.name])
            finally:
                opened.close()
        counts = {name: summary["events"] for name, summary in summaries.items()}
        if len(set(counts.values())) > 1 or args.query_events not in counts.values():
            results.fail(f"queries: the stores hold {counts} events, not {args.query_events:,} each")
        elif len({json.dumps(summary, sort_keys=True, default=str) for summary in summaries.values()}) > 1:
            print("NOTE the stores' summaries of the same events differ (see above)")

        names = [store.name for store in stores]
        head = "".join(f" | {STORE_NAMES[name] + ' median':>17} {'max':>7} {'rows':>5}" for name in names)
        print(f"{'panel (* sliced)':<17} {'window':>6}{head}  < {TARGET_PANEL_MS:.0f} ms")
        differ = []
        for rows in zip(*(timings[name] for name in names), strict=True):
            panel, last = rows[0][:2]
            line = "".join(f" | {median:17.1f} {worst:7.1f} {count:>5}" for _, _, median, worst, count in rows)
            verdict = ", ".join(f"{STORE_NAMES[name]} {'ok' if row[2] < TARGET_PANEL_MS else 'SLOW'}"
                                for name, row in zip(names, rows, strict=True))  # fmt: skip
            print(f"{panel:<17} {last:>6}{line}  {verdict}")
            if len({row[4] for row in rows}) > 1:
                differ.append(f"{panel}/{last}")
        if differ:
            print(f"NOTE row counts differ between the stores on {', '.join(differ)}")
        for name in names:
            slow = [t for t in timings[name] if t[2] >= TARGET_PANEL_MS]
            worst = max(timings[name], key=lambda t: t[2])
            results.target(f"{STORE_NAMES[name]} panels ({len(timings[name])} panel x window), median each",
                           f"< {TARGET_PANEL_MS:.0f} ms", f"{len(timings[name]) - len(slow)}/{len(timings[name])} "
                           f"under; worst {worst[0]}/{worst[1]} {worst[2]:.0f} ms", not slow)  # fmt: skip

        print(f"through the HTTP API (same store, API subprocess; keep-alive; 1 warm-up + {args.query_runs} runs):")
        print(f"{'store':<10} {'panel':<13} {'window':>6} {'median ms':>10} {'max ms':>8} {'direct ms':>10}")
        for store in stores:
            api = Api(store.location, workdir)
            try:
                connection = api.connection()
                direct = {(name, last): median for name, last, median, _, _ in timings[store.name]}
                for name in args.http_panels:
                    for last in ("24h", "all"):
                        runs = []
                        for _ in range(args.query_runs + 1):
                            wall = time.perf_counter()
                            api.panel(name, connection, last=last, to=end.isoformat())
                            runs.append((time.perf_counter() - wall) * 1000)
                        runs = runs[1:]
                        print(f"{STORE_NAMES[store.name]:<10} {name:<13} {last:>6} {statistics.median(runs):10.1f} "
                              f"{max(runs):8.1f} {direct.get((name, last), float('nan')):10.1f}")  # fmt: skip
                connection.close()
            finally:
                api.stop()


# --- 4. memory -----------------------------------------------------------------------------------------------


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y)."""
    if len(points) < 2:
        return float("nan")
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")


def robust_slope(points: Sequence[tuple[float, float]]) -> float:
    """Theil-Sen: the median of the pairwise slopes; a few transient spikes do not tilt it."""
    pairs = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1 :] if x2 != x1]
    return statistics.median(pairs) if pairs else float("nan")


def bench_memory(args: argparse.Namespace, recorded: list[ReadableSpan], workdir: Path, results: Results) -> None:
    print(f"\n== 4. API memory under sustained ingest: {args.memory_seconds:.0f} s, {args.memory_senders} senders, "
          f"{EXPORT_BATCH}-event batches, RSS every {args.memory_interval:g} s; {load()}",
          flush=True)  # fmt: skip
    db = workdir / "memory.duckdb"
    for path in (db, db.with_name(db.name + ".wal")):
        path.unlink(missing_ok=True)
    bodies = Bodies(recorded, seed=11)
    counter = iter(range(0, 10**12, EXPORT_BATCH))
    lock = threading.Lock()
    stop = threading.Event()

    def next_body() -> tuple[int, bytes] | None:
        if stop.is_set():
            return None
        with lock:
            first = next(counter)
        now = time.time_ns()
        return EXPORT_BATCH, bodies.body(first, EXPORT_BATCH, lambda seq: now + (seq - first) * 1000, level=1)

    api = Api(db, workdir, args.memory_limit)
    samples: list[tuple[float, float, int, float]] = []  # (seconds, RSS MB, events sent, store MB)
    try:
        senders = Senders(api, args.memory_senders, next_body)
        samples.append((0.0, api.rss_mb(), 0, store_mb(db)))
        began = time.monotonic()
        senders.start()
        while (elapsed := time.monotonic() - began) < args.memory_seconds:
            time.sleep(max(0.0, args.memory_interval * (len(samples)) - elapsed))
            samples.append((time.monotonic() - began, api.rss_mb(), senders.sent, store_mb(db)))
            t, rss, sent, size = samples[-1]
            print(f"  t={t:5.1f} s  RSS {rss:7.1f} MB  sent {sent:>9,}  store {size:7.1f} MB", flush=True)
        stop.set()
        senders.join()
        wall = time.monotonic() - began
        stored = api.panel("summary", last="all")[0]["events"]
        end_rss = api.rss_mb()
    finally:
        stop.set()
        api.stop()
    for error in senders.errors:
        results.fail(f"memory: {error}")
    if senders.accepted != stored:
        results.fail(f"memory: accepted {senders.accepted}, stored {stored}")
    for minute in range(int(samples[-1][0] // 60)):
        rss = [sample[1] for sample in samples if minute * 60 < sample[0] <= (minute + 1) * 60]
        print(
            f"minute {minute + 1}: median RSS {statistics.median(rss):.0f} MB (min {min(rss):.0f}, max {max(rss):.0f})"
        )
    warmup = args.memory_warmup
    if warmup is None:  # until the store outgrows DuckDB's cache
        limit_mb = megabytes(args.memory_limit)
        warmup = next((t for t, _, _, size in samples if size >= limit_mb), samples[-1][0])
    after = [s for s in samples if s[0] >= warmup]
    if len(after) < 2:
        print(f"the run ended {len(after)} sample(s) after the warm-up (t={warmup:.0f} s): too short to judge; "
              "run longer or pass --memory-warmup")  # fmt: skip
    warm, last = (after[0] if after else samples[-1]), samples[-1]
    peak = max(samples, key=lambda s: s[1])
    rss_ls = slope([(t / 60, rss) for t, rss, _, _ in after])
    rss_slope = robust_slope([(t / 60, rss) for t, rss, _, _ in after])
    store_slope = robust_slope([(t / 60, size) for t, _, _, size in after])
    events_slope = robust_slope([(t / 60, sent) for t, _, sent, _ in after])
    json_mb = (
        len(bodies.events_json(0, EXPORT_BATCH, lambda seq: time.time_ns())) / EXPORT_BATCH * events_slope / 1024**2
    )
    print(f"{stored:,} events stored in {wall:.0f} s ({stored / wall:,.0f} events/s); store {store_mb(db):,.0f} MB "
          f"({store_mb(db) * 1024**2 / max(stored, 1):.0f} B/event on disk)")  # fmt: skip
    print(f"RSS: start {samples[0][1]:.0f} MB, after warm-up (t={warm[0]:.0f} s) {warm[1]:.0f} MB, "
          f"peak {peak[1]:.0f} MB (t={peak[0]:.0f} s), end {last[1]:.0f} MB (t={last[0]:.0f} s); "
          f"{end_rss:.0f} MB once the senders stopped and the summary panel ran")  # fmt: skip
    share = rss_slope / store_slope if store_slope > 0 else float("inf")
    per_m = rss_slope / events_slope * 1e6 if events_slope > 0 else float("nan")
    print(f"slopes after warm-up (Theil-Sen): RSS {rss_slope:+.1f} MB/min (least squares {rss_ls:+.1f}), "
          f"store on disk {store_slope:+.1f} MB/min, {events_slope:,.0f} events/min ({json_mb:,.0f} MB/min of JSON "
          f"received); RSS grows {per_m:+.0f} MB per million events = {share:.0%} of the store's growth")  # fmt: skip
    results.target("API RSS slope after warm-up", f"<= {TARGET_MEMORY_SHARE:.0%} of store growth",
                   f"{rss_slope:+.1f} MB/min = {share:.0%} of {store_slope:.1f} MB/min",
                   share <= TARGET_MEMORY_SHARE)  # fmt: skip


# --- main ----------------------------------------------------------------------------------------------------


def megabytes(size: str) -> float:
    """``64MB``, ``1GB`` (DuckDB's spelling of a memory limit) in MB."""
    number, unit = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]i?B)\s*", size, re.IGNORECASE).groups()  # type: ignore[union-attr]
    return float(number) * 1024 ** ("KMGT".index(unit[0].upper()) - 1)


def csv_ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", default=",".join(MEASUREMENTS),
                        help=f"comma-separated subset of {','.join(MEASUREMENTS)} (default all)")  # fmt: skip
    parser.add_argument("--stores", default=",".join(STORE_NAMES),
                        help="ingest and queries: comma-separated stores to measure (default duckdb,clickhouse; "
                             "clickhouse needs Debian's clickhouse-server and the extra clickhouse)")  # fmt: skip
    parser.add_argument(
        "--capture-content",
        action="store_true",
        help="record the session with content capture on (tool arguments and results in the events)",
    )
    parser.add_argument("--spans", type=int, default=100_000, help="exporter: spans per round")
    parser.add_argument("--rounds", type=int, default=3, help="exporter: rounds (median reported)")
    parser.add_argument("--ingest-events", type=int, default=150_000, help="ingest: events per configuration")
    parser.add_argument("--ingest-batches", type=csv_ints, default=[512, 2000], help="ingest: events per request")
    parser.add_argument("--ingest-senders", type=csv_ints, default=[1, 4], help="ingest: concurrent sender threads")
    parser.add_argument("--ingest-instances", type=csv_ints, default=[1, 2],
                        help="ingest: API instances on one ClickHouse database (the senders dealt out over them; "
                             "configurations with fewer senders than instances are left out)")  # fmt: skip
    parser.add_argument("--query-events", type=int, default=1_000_000, help="queries: events in the store")
    parser.add_argument("--query-runs", type=int, default=5, help="queries: timed runs per panel and window")
    parser.add_argument(
        "--http-panels",
        default="summary,tools,sessions,timeseries",
        type=lambda text: text.split(","),
        help="queries: panels also timed through the API",
    )
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "mcp-analytics-bench"),
                        help="queries: where the built store is kept between runs")  # fmt: skip
    parser.add_argument(
        "--cache-max-age",
        type=float,
        default=6.0,
        help="queries: hours a cached store is reused (its 7 days end when it was built)",
    )
    parser.add_argument("--no-cache", action="store_true", help="queries: rebuild the store")
    parser.add_argument("--seed", type=int, default=42, help="queries: seed of the generated data")
    parser.add_argument("--memory-seconds", type=float, default=600.0, help="memory: seconds of sustained ingest")
    parser.add_argument("--memory-warmup", type=float, default=None,
                        help="memory: seconds before the slope (default: until the store outgrows --memory-limit)")  # fmt: skip
    parser.add_argument("--memory-interval", type=float, default=2.0, help="memory: seconds between RSS samples")
    parser.add_argument("--memory-senders", type=int, default=2, help="memory: sender threads")
    parser.add_argument("--memory-limit", default="64MB",
                        help="memory: the API's --memory-limit (small, so that the cap is reached within the run; "
                             "the service's default is 1GB)")  # fmt: skip
    parser.add_argument("--strict", action="store_true", help="exit with status 2 when a target is missed")
    args = parser.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(only) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s) {', '.join(sorted(unknown))}; choose from {', '.join(MEASUREMENTS)}")
    args.stores = [name.strip() for name in args.stores.split(",") if name.strip()]
    unknown = set(args.stores) - set(STORE_NAMES)
    if unknown or not args.stores:
        parser.error(f"unknown store(s) {', '.join(sorted(unknown))}; choose from {', '.join(STORE_NAMES)}")
    missing = clickhouse_missing()
    if "clickhouse" in args.stores and {"ingest", "queries"} & set(only) and missing:
        parser.error(f"{missing}; or measure DuckDB alone: --stores duckdb")

    print(f"mcp {MCP_VERSION}, opentelemetry-sdk {version('opentelemetry-sdk')}, duckdb {version('duckdb')}, "
          f"fastapi {version('fastapi')}, uvicorn {version('uvicorn')}, pydantic {version('pydantic')}, "
          f"Python {platform.python_version()} ({platform.python_implementation()}), {sys.platform}, "
          f"{os.cpu_count()} CPUs{'' if missing else ', clickhouse-driver ' + version('clickhouse-driver')}")  # fmt: skip
    began = time.perf_counter()
    results = Results()
    recorded = record_spans(args.capture_content)
    print(f"recorded {len(recorded)} server-side spans from {len(AGENTS)} instrumented in-memory sessions "
          f"(content capture {'on' if args.capture_content else 'off'}): {describe_spans(recorded)}")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="mcp-analytics-bench-"))
    try:
        if "exporter" in only:
            bench_exporter(args, recorded, results)
        if "ingest" in only:
            bench_ingest(args, recorded, workdir, results)
        if "queries" in only:
            bench_queries(args, workdir, results)
        if "memory" in only:
            bench_memory(args, recorded, workdir, results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n== summary ({time.perf_counter() - began:.0f} s; {load()})")
    width = max((len(t.name) for t in results.targets), default=10)
    print(f"{'measurement':<{width}}  {'target':<28} {'measured':<48} result")
    for t in results.targets:
        print(f"{t.name:<{width}}  {t.target:<28} {t.measured:<48} {'PASS' if t.met else 'FAIL'}")
    print("checks:", "FAILED" if results.failures else "ok")
    if results.failures:
        return 1
    return 2 if args.strict and not all(t.met for t in results.targets) else 0


if __name__ == "__main__":
    sys.exit(main())

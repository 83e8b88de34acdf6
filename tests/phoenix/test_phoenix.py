"""End to end against a real Arize Phoenix: what it shows of an instrumented MCP server and client.

Run by ``nox -s phoenix`` only (it installs ``arize-phoenix``; every other session passes
``--ignore=tests/phoenix``). Phoenix runs as its own process on 127.0.0.1, on free HTTP and gRPC
ports, with its SQLite store in a temporary working directory; it is started once for this module.

Each run is the scripted session of ``tests/test_stdio_otlp.py``: ``tests/apps/stdio_server.py``
in a subprocess under ``opentelemetry-instrument`` (zero-code, its spans exported over OTLP/HTTP to
Phoenix's ``/v1/traces``) and a real ``ClientSession`` in this process, instrumented with
``MCPInstrumentor().instrument(tracer_provider=...)`` whose provider exports to the same endpoint
(and keeps a copy in memory: the client spans as they were emitted). The spans are then read back
through Phoenix's REST API (``GET /v1/projects/{project}/spans``, ``.../sessions``).

Phoenix files spans by the resource attribute ``openinference.project.name`` (not by
``service.name``, which it does not keep): both processes set it, one fresh project per run, so the
client and server spans of a trace land together. Phoenix keeps neither the OTel span kind
(SERVER/CLIENT) nor the resource, so a client span is told from a server span by its span id: the
client's are the ones this process emitted.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp.client.stdio
import pytest
from mcp import ClientSession, StdioServerParameters
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from opentelemetry_instrumentation_mcp import MCPInstrumentor
from tests.apps.servers import IS_V2, KINDS, announced_version
from tests.processes import stop
from tests.test_stdio_otlp import (
    OPENTELEMETRY_INSTRUMENT,
    REQUESTS,
    ROOT,
    SERVER_SCRIPT,
    SERVER_SCRIPT_SPANS,
    SESSION_TIMEOUT,
    run_script,
)

pytestmark = pytest.mark.timeout(300)  # Phoenix's first start in a fresh environment compiles its modules

PROJECT_NAME = "openinference.project.name"  # the resource attribute Phoenix files spans by
SERVER_SERVICE = "phoenix-e2e-server"
CLIENT_SERVICE = "phoenix-e2e-client"
OPENINFERENCE_ENV = "OTEL_INSTRUMENTATION_MCP_OPENINFERENCE"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
START_TIMEOUT = 180  # seconds for Phoenix to answer /healthz (imports, migrations of a new SQLite store)
ARRIVAL_TIMEOUT = 30  # seconds for every exported span to be readable through Phoenix's API
SETTLE = 1.0  # Phoenix inserts queued spans every 0.1 s: a second look this much later sees any late duplicate
SPAN_COUNT = len(SERVER_SCRIPT_SPANS) + len(REQUESTS)  # one server span per message, one client span per request
JSON = "application/json"
SESSION_ID_PATTERN = r"[0-9a-f]{32}"

# The span kind Phoenix reports for each MCP span when the OpenInference option is on.
OPENINFERENCE_KINDS = {
    "initialize": "CHAIN",
    "notifications/initialized": "CHAIN",
    "tools/list": "CHAIN",
    "tools/call add": "TOOL",
    "tools/call fail": "TOOL",
    "resources/read": "RETRIEVER",
    "prompts/get review": "PROMPT",
}


@dataclass(frozen=True)
class Phoenix:
    """A running Phoenix server and its REST API."""

    url: str
    log: Path

    @property
    def traces_endpoint(self) -> str:
        return f"{self.url}/v1/traces"

    def get(self, path: str, **params: Any) -> httpx.Response:
        with httpx.Client(base_url=self.url, timeout=10, trust_env=False) as http:
            return http.get(path, params=params)

    def spans(self, project: str) -> list[dict[str, Any]]:
        """The project's spans as ``GET /v1/projects/{project}/spans`` answers them, oldest first."""
        response = self.get(f"/v1/projects/{project}/spans", limit=1000)
        if response.status_code == 404:  # no span has created the project yet
            return []
        response.raise_for_status()
        body = response.json()
        assert body["next_cursor"] is None, "more than one page"
        return sorted(body["data"], key=lambda span: datetime.fromisoformat(span["start_time"]))

    def wait_for_spans(self, project: str, count: int) -> list[dict[str, Any]]:
        """The project's spans once ``count`` are readable (and a little later, so late extras show too)."""
        deadline = time.monotonic() + ARRIVAL_TIMEOUT
        while len(found := self.spans(project)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(found)} of {count} spans in Phoenix project {project!r} after {ARRIVAL_TIMEOUT} s: "
                    f"{[span['name'] for span in found]}"
                )
            time.sleep(0.2)
        time.sleep(SETTLE)
        return self.spans(project)

    def sessions(self, project: str) -> list[dict[str, Any]]:
        response = self.get(f"/v1/projects/{project}/sessions")
        response.raise_for_status()
        body = response.json()
        assert body["next_cursor"] is None, "more than one page"
        return body["data"]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 (held together while chosen, so they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tail(path: Path, characters: int = 4000) -> str:
    return path.read_text(errors="replace")[-characters:] if path.exists() else "(no output)"


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """Phoenix (the installed ``arize-phoenix``) serving on 127.0.0.1 until the module's tests are done."""
    try:
        installed = version("arize-phoenix")
    except PackageNotFoundError:
        pytest.fail("arize-phoenix is not installed: run this file through `nox -s phoenix`")
    working_dir = tmp_path_factory.mktemp("phoenix")
    http_port, grpc_port = free_ports(2)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(working_dir),  # nothing of Phoenix's lands in the real home directory
        "TMPDIR": str(working_dir),  # nor in the shared temporary directory (its pid files)
        "PHOENIX_WORKING_DIR": str(working_dir),  # its SQLite store: phoenix.db there
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(http_port),
        # The OTLP/gRPC receiver cannot be turned off (only read-only mode does, which refuses spans too), and
        # it listens on every interface whatever PHOENIX_HOST says: a free port of its own, never used here.
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",  # no request of its own to the internet
        "PHOENIX_ENABLE_MCP_SERVER": "false",  # its own MCP endpoint (/mcp) is not what is tested
    }
    log = working_dir / "phoenix.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "phoenix.server.main", "serve"],
            cwd=working_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Phoenix(f"http://127.0.0.1:{http_port}", log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise AssertionError(f"Phoenix exited with {process.returncode}:\n{tail(log)}")
            try:
                if server.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"Phoenix did not answer /healthz within {START_TIMEOUT} s:\n{tail(log)}")
            time.sleep(0.25)
        served = server.get("/arize_phoenix_version").text.strip()
        assert served == installed, f"a Phoenix {served} answers, not the installed {installed}"
        yield server
    finally:
        stop(process)


@dataclass(frozen=True)
class Run:
    """One scripted session: the client spans this process emitted and every span Phoenix then showed."""

    phoenix: Phoenix
    kind: str
    project: str
    protocol_version: str
    emitted: list[ReadableSpan]
    spans: list[dict[str, Any]]
    """As ``GET /v1/projects/{project}/spans`` answered them, oldest first."""
    server_stderr: str

    @property
    def client_ids(self) -> set[str]:
        return {format(span.context.span_id, "016x") for span in self.emitted}

    def client_spans(self) -> dict[str, dict[str, Any]]:
        return {span["name"]: span for span in self.spans if span["context"]["span_id"] in self.client_ids}

    def server_spans(self) -> list[dict[str, Any]]:
        return [span for span in self.spans if span["context"]["span_id"] not in self.client_ids]

    def server_span(self, name: str) -> dict[str, Any]:
        (found,) = [span for span in self.server_spans() if span["name"] == name]
        return found

    def sessions(self) -> list[dict[str, Any]]:
        return self.phoenix.sessions(self.project)


@contextmanager
def client_instrumented(phoenix: Phoenix, project: str, **options: Any) -> Iterator[InMemorySpanExporter]:
    """This process's MCP client instrumented, exporting to Phoenix (and in memory); flushed on exit."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: CLIENT_SERVICE, PROJECT_NAME: project}))
    emitted = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(emitted))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=phoenix.traces_endpoint)))
    instrumentor = MCPInstrumentor()
    instrumentor.instrument(tracer_provider=provider, **options)
    try:
        yield emitted
    finally:
        instrumentor.uninstrument()
        flushed = provider.force_flush(timeout_millis=10_000)
        provider.shutdown()
    assert flushed, "the client's spans were not exported to Phoenix in time"


async def serve_script(phoenix: Phoenix, project: str, kind: str, stderr: Path, extra_env: dict[str, str]) -> str:
    """``stdio_server.py kind`` under ``opentelemetry-instrument``, exporting its traces (only) to Phoenix,
    driven through ``run_script``; returns once the server process has exited (and so flushed)."""
    assert OPENTELEMETRY_INSTRUMENT.exists(), f"{OPENTELEMETRY_INSTRUMENT} missing (opentelemetry-instrumentation)"
    env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",  # Phoenix answers 405 on /v1/metrics
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": phoenix.traces_endpoint,
        "OTEL_SERVICE_NAME": SERVER_SERVICE,
        "OTEL_RESOURCE_ATTRIBUTES": f"{PROJECT_NAME}={project}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        **extra_env,
    }
    parameters = StdioServerParameters(
        command=str(OPENTELEMETRY_INSTRUMENT), args=[sys.executable, str(SERVER_SCRIPT), kind], env=env, cwd=str(ROOT)
    )
    with stderr.open("w") as errlog:
        async with (
            mcp.client.stdio.stdio_client(parameters, errlog=errlog) as (read_stream, write_stream),
            ClientSession(read_stream, write_stream) as client,
        ):
            with anyio.fail_after(SESSION_TIMEOUT):
                return await run_script(client)


def record(phoenix: Phoenix, kind: str, tmp_path: Path, *, openinference: bool) -> Run:
    project = f"mcp-{kind}-{'openinference' if openinference else 'default'}-{uuid.uuid4().hex[:8]}"
    # The option and content capture: through the environment for the zero-code server, kwargs for the client.
    client_options = {"openinference": True, "capture_content": True} if openinference else {}
    server_env = {OPENINFERENCE_ENV: "true", CAPTURE_ENV: "true"} if openinference else {}
    stderr = tmp_path / "server.stderr"
    with client_instrumented(phoenix, project, **client_options) as emitted:
        protocol_version = anyio.run(
            functools.partial(serve_script, phoenix, project, kind, stderr, server_env), backend="asyncio"
        )
    try:
        spans = phoenix.wait_for_spans(project, SPAN_COUNT)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\nserver stderr:\n{tail(stderr)}\nPhoenix:\n{tail(phoenix.log)}") from None
    return Run(phoenix, kind, project, protocol_version, list(emitted.get_finished_spans()), spans, tail(stderr))


@pytest.fixture(scope="module", params=KINDS)
def default_run(request: pytest.FixtureRequest, phoenix: Phoenix, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A session with the instrumentation's defaults: no OpenInference attributes, no captured content."""
    return record(phoenix, request.param, tmp_path_factory.mktemp(f"default-{request.param}"), openinference=False)


@pytest.fixture(scope="module", params=KINDS)
def openinference_run(
    request: pytest.FixtureRequest, phoenix: Phoenix, tmp_path_factory: pytest.TempPathFactory
) -> Run:
    """A session with the OpenInference option and content capture on, on both sides."""
    return record(phoenix, request.param, tmp_path_factory.mktemp(f"oi-{request.param}"), openinference=True)


def as_exported(value: Any) -> Any:
    """An attribute value as it comes back through Phoenix's JSON: sequences are lists."""
    return list(value) if isinstance(value, tuple) else value


# --- The instrumentation's defaults -------------------------------------------------------------------------


def test_one_server_span_per_message_and_every_client_span(default_run):
    run = default_run
    assert [span.kind for span in run.emitted] == [SpanKind.CLIENT] * len(REQUESTS)
    assert [span.name for span in sorted(run.emitted, key=lambda span: span.start_time or 0)] == REQUESTS

    assert len(run.spans) == SPAN_COUNT, [span["name"] for span in run.spans]
    assert len({span["context"]["span_id"] for span in run.spans}) == SPAN_COUNT
    assert {span["context"]["span_id"] for span in run.client_spans().values()} == run.client_ids
    assert [span["name"] for span in run.server_spans()] == SERVER_SCRIPT_SPANS, "one server span per message"


def test_server_spans_are_children_of_the_client_spans(default_run):
    clients = default_run.client_spans()
    servers = default_run.server_spans()
    for server in servers:
        if server["name"].startswith("notifications/"):
            continue
        client = clients[server["name"]]
        assert server["parent_id"] == client["context"]["span_id"], server["name"]
        assert server["context"]["trace_id"] == client["context"]["trace_id"], server["name"]
        assert server["attributes"]["jsonrpc.request.id"] == client["attributes"]["jsonrpc.request.id"]
        assert client["parent_id"] is None, "each request is a trace of its own"
    assert len({span["context"]["trace_id"] for span in clients.values()}) == len(REQUESTS)

    # A notification has no client span: its server span is the root of a trace of its own.
    (notification,) = [span for span in servers if span["name"] == "notifications/initialized"]
    assert notification["parent_id"] is None
    assert notification["context"]["trace_id"] not in {span["context"]["trace_id"] for span in clients.values()}


def test_server_span_attributes_as_phoenix_shows_them(default_run):
    run = default_run
    servers = run.server_spans()
    for span in servers:
        attributes = span["attributes"]
        assert attributes["mcp.method.name"] == span["name"].split(" ")[0]
        assert attributes["network.transport"] == "pipe"
        assert attributes["mcp.server.name"] == f"{run.kind}-demo"
    session_ids = {span["attributes"]["mcp.session.id"] for span in servers}
    assert len(session_ids) == 1, "one stdio session"
    session_id = session_ids.pop()
    assert re.fullmatch(SESSION_ID_PATTERN, session_id)

    add = run.server_span("tools/call add")
    attributes = dict(add["attributes"])
    size = attributes.pop("mcp.response.size")
    assert isinstance(size, int) and not isinstance(size, bool) and size > 0
    assert attributes == {
        "mcp.method.name": "tools/call",
        "mcp.request.argument_keys": ["a", "b"],
        "jsonrpc.request.id": "3" if IS_V2 else "2",
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "add",
        "mcp.session.id": session_id,
        "mcp.protocol.version": run.protocol_version,
        "mcp.client.name": "mcp",
        "mcp.client.version": "0.1.0",
        "mcp.server.name": f"{run.kind}-demo",
        "mcp.server.version": announced_version(run.kind),
        "network.transport": "pipe",
        "tool.name": "add",  # not ours: Phoenix derives it from gen_ai.tool.name
    }
    assert (add["status_code"], add["status_message"]) == ("UNSET", "")

    request_ids = [run.server_span(name)["attributes"]["jsonrpc.request.id"] for name in REQUESTS]
    first = 1 if IS_V2 else 0
    assert request_ids == [str(number) for number in range(first, first + len(REQUESTS))]
    assert "jsonrpc.request.id" not in run.server_span("notifications/initialized")["attributes"]

    fail = run.server_span("tools/call fail")
    assert fail["status_code"] == "ERROR"
    # The error text the client was answered (the high-level server words it itself) on both sides.
    assert fail["status_message"] == run.client_spans()["tools/call fail"]["status_message"] != ""
    assert (fail["attributes"]["error.type"], fail["attributes"]["gen_ai.tool.name"]) == ("tool_error", "fail")
    assert (fail["attributes"]["mcp.failure.origin"], fail["attributes"]["mcp.failure.reason"]) == (
        "server",
        "tool_error",
    )
    assert {span["status_code"] for span in servers if span is not fail} == {"UNSET"}


def test_client_spans_arrive_as_emitted(default_run):
    """Every client span, as Phoenix shows it, is the span this process emitted: name, ids, status, attributes."""
    shown = {span["context"]["span_id"]: span for span in default_run.client_spans().values()}
    for emitted in default_run.emitted:
        span = shown[format(emitted.context.span_id, "016x")]
        assert span["name"] == emitted.name
        assert span["context"]["trace_id"] == format(emitted.context.trace_id, "032x")
        assert span["parent_id"] is None
        assert span["status_code"] == emitted.status.status_code.name
        assert span["status_message"] == (emitted.status.description or "")
        expected = {key: as_exported(value) for key, value in emitted.attributes.items()}
        if expected.get("gen_ai.operation.name") == "execute_tool":
            expected["tool.name"] = expected["gen_ai.tool.name"]  # Phoenix's own addition
        assert span["attributes"] == expected, emitted.name
        assert span["attributes"]["network.transport"] == "pipe"
        assert span["attributes"]["mcp.method.name"] == emitted.name.split(" ")[0]
    statuses = {span["name"]: span["status_code"] for span in shown.values()}
    assert statuses == {name: "ERROR" if name == "tools/call fail" else "UNSET" for name in REQUESTS}


def test_without_the_option_phoenix_reads_only_the_tool_calls(default_run):
    """Phoenix draws a kind from ``gen_ai.operation.name = execute_tool`` by itself; nothing else has one,
    there are no sessions and no inputs or outputs."""
    kinds = {(span["name"], span["span_kind"]) for span in default_run.spans}
    assert kinds == {(name, "TOOL" if name.startswith("tools/call ") else "UNKNOWN") for name in SERVER_SCRIPT_SPANS}
    for span in default_run.spans:
        assert not {"openinference.span.kind", "session.id", "input.value", "output.value"} & set(span["attributes"])
        assert not any(key.startswith("metadata") for key in span["attributes"])
    assert default_run.sessions() == []


# --- The OpenInference option ---------------------------------------------------------------------------------


def test_openinference_span_kinds_as_phoenix_reports_them(openinference_run):
    """Phoenix's ``span_kind`` of every span, client and server, is the one the option set
    (``openinference.span.kind``, which Phoenix takes out of the attributes to report it)."""
    run = openinference_run
    assert len(run.spans) == SPAN_COUNT
    assert [span["name"] for span in run.server_spans()] == SERVER_SCRIPT_SPANS
    assert {name: span["span_kind"] for name, span in run.client_spans().items()} == {
        name: OPENINFERENCE_KINDS[name] for name in REQUESTS
    }
    server_kinds = [span["span_kind"] for span in run.server_spans()]
    assert server_kinds == [OPENINFERENCE_KINDS[name] for name in SERVER_SCRIPT_SPANS]
    for span in run.spans:
        assert "openinference.span.kind" not in span["attributes"]
        assert span["attributes"].get("tool.name") == span["attributes"].get("gen_ai.tool.name")
    assert run.server_span("tools/call add")["attributes"]["tool.name"] == "add"


def test_openinference_one_phoenix_session_per_mcp_session(openinference_run):
    """``session.id`` (the server's ``mcp.session.id``) groups every trace of the stdio session into one
    Phoenix session; the client over stdio has no session id of its own."""
    run = openinference_run
    servers = run.server_spans()
    session_ids = {span["attributes"]["mcp.session.id"] for span in servers}
    assert len(session_ids) == 1
    session_id = session_ids.pop()
    assert re.fullmatch(SESSION_ID_PATTERN, session_id)
    assert [span["attributes"]["session.id"] for span in servers] == [session_id] * len(servers)
    for span in run.client_spans().values():
        assert not {"session.id", "mcp.session.id"} & set(span["attributes"])

    (session,) = run.sessions()
    assert session["session_id"] == session_id
    every_trace = {span["context"]["trace_id"] for span in run.spans}
    assert len(every_trace) == len(SERVER_SCRIPT_SPANS), "a trace per request, one for the notification"
    assert {trace["trace_id"] for trace in session["traces"]} == every_trace
    assert len(session["traces"]) == len(every_trace)

    response = run.phoenix.get(f"/v1/sessions/{session_id}")
    response.raise_for_status()
    assert response.json()["data"]["session_id"] == session_id
    assert {trace["trace_id"] for trace in response.json()["data"]["traces"]} == every_trace


def test_openinference_inputs_and_outputs_from_captured_content(openinference_run):
    run = openinference_run
    add = run.server_span("tools/call add")["attributes"]
    assert (add["input.value"], add["input.mime_type"]) == ('{"a": 2, "b": 3}', JSON)
    assert add["input.value"] == add["gen_ai.tool.call.arguments"]
    assert (add["output.value"], add["output.mime_type"]) == (add["gen_ai.tool.call.result"], JSON)
    result = json.loads(add["output.value"])
    assert result["content"] == [{"type": "text", "text": "5"}]
    assert result["isError"] is False

    fail = run.server_span("tools/call fail")["attributes"]
    assert (fail["input.value"], fail["input.mime_type"]) == ("{}", JSON)
    failed = json.loads(fail["output.value"])
    assert failed["isError"] is True
    assert failed["content"] == [{"type": "text", "text": run.server_span("tools/call fail")["status_message"]}]

    review = run.server_span("prompts/get review")["attributes"]
    assert (review["input.value"], review["input.mime_type"]) == ('{"code": "print(1)"}', JSON)
    assert review["gen_ai.prompt.variable.code"] == "print(1)"
    assert not {"output.value", "output.mime_type"} & set(review)

    for name in ("initialize", "notifications/initialized", "tools/list", "resources/read"):
        assert not {"input.value", "output.value"} & set(run.server_span(name)["attributes"]), name
    # Content is captured on server spans only: the client's carry neither arguments nor results.
    for span in run.client_spans().values():
        assert not {"input.value", "output.value", "gen_ai.tool.call.arguments"} & set(span["attributes"])


def test_openinference_metadata_as_phoenix_flattens_it(openinference_run):
    """``metadata`` is a JSON string; Phoenix parses it and its API answers each key as ``metadata.<key>``."""
    run = openinference_run
    for span in run.spans:
        assert "metadata" not in span["attributes"]
        metadata = {key: value for key, value in span["attributes"].items() if key.startswith("metadata.")}
        expected = {"metadata.mcp.client.name": "mcp"}
        if span["name"] == "tools/call fail":
            expected |= {"metadata.mcp.failure.origin": "server", "metadata.mcp.failure.reason": "tool_error"}
        assert metadata == expected, span["name"]

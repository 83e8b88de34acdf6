"""The Collector recipe in ``deploy/collector/``, checked as far as it can be without a Collector.

No Collector installs on this machine (no Docker daemon, and no official binary on PyPI or npm), so:

- ``otelcol.yaml``'s structure is checked as the Collector would load it: every component a pipeline names is
  defined and every defined one is used, the endpoints, traces to the tracing backend and to the analytics API,
  metrics to Prometheus only, ``memory_limiter`` first and ``batch`` last; the commented Tempo alternative too;
- its analytics leg runs for real: a real ``mcp-analytics serve`` receives, from the stock OTLP/HTTP exporter
  set up exactly as the ``otlphttp/mcp_analytics`` exporter sends (URL, headers, encoding, compression), the
  spans of an instrumented MCP client and server, and stores the tool calls;
- its metrics leg is checked by name: the real OTel SDK and Prometheus exporter expose the instrumentation's
  metrics, and every series and label that ``deploy/prometheus/mcp-rules.yml`` and the Grafana dashboard query
  must be in that exposition (the Collector's ``prometheus`` exporter names OTLP metrics the same way);
- ``prometheus.yml`` (scraping the Collector, loading the rules) goes through the real ``promtool check config``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx
import pytest
import yaml
from mcp import Implementation
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mcp_analytics.server import DEFAULT_PORT
from opentelemetry_instrumentation_mcp import MCPInstrumentor
from opentelemetry_instrumentation_mcp.failures import FailureOrigin
from tests.apps.clients import in_memory
from tests.apps.servers import build
from tests.apps.upstream import upstream
from tests.test_analytics_reliability import KEY, ApiProcess
from tests.test_prometheus_rules import RULES, promtool, rules_in

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR = ROOT / "deploy" / "collector" / "otelcol.yaml"
SCRAPE = ROOT / "deploy" / "collector" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "mcp-dashboard.json"
SERVICE = "weather-mcp"
CLIENT = "cursor"

pytestmark = pytest.mark.timeout(60)

# --------------------------------------------------------------------------- otelcol.yaml, as the Collector reads it

KINDS = ("receivers", "processors", "exporters", "extensions")
KNOWN_TYPES = {
    # The contrib distribution's types this recipe may use (from v0.144 `otlp_grpc`/`otlp_http` are the new names
    # of `otlp`/`otlphttp`, which stay as aliases). A misspelt type is a Collector that does not start.
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "batch", "resource", "transform"},
    "exporters": {"otlp", "otlp_grpc", "otlphttp", "otlp_http", "prometheus", "prometheusremotewrite", "debug"},
    "extensions": {"health_check"},
}
GRPC, HTTP = {"otlp", "otlp_grpc"}, {"otlphttp", "otlp_http"}
TRACING_BACKENDS = {"jaeger", "tempo", "phoenix"}
"""Placeholder hosts of backends that take traces only (Phoenix answers 405 on /v1/metrics)."""
ANALYTICS = "otlphttp/mcp_analytics"
ENV_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def collector_config(text: str | None = None) -> dict[str, Any]:
    return yaml.safe_load(COLLECTOR.read_text() if text is None else text)


def kind_of(component: str) -> str:
    """A component id is ``type[/name]``."""
    return component.split("/", 1)[0]


def host_of(endpoint: str) -> str:
    return urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").hostname or ""


def port_of(endpoint: str) -> int | None:
    return urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").port


def assert_loads(config: dict[str, Any]) -> None:
    """What the Collector refuses at start-up (a component named but not defined, an unknown type, a memory
    limiter without interval or limit, a batch larger than its maximum) and this recipe's rules on top: nothing
    defined and unused, the endpoints, where each signal goes, the order of the processors."""
    service = config["service"]
    pipelines = service["pipelines"]
    used = {kind: set() for kind in KINDS}
    used["extensions"] = set(service.get("extensions", []))
    for name, pipeline in pipelines.items():
        assert kind_of(name) in {"traces", "metrics", "logs"}, name
        for kind in ("receivers", "processors", "exporters"):
            assert len(set(pipeline.get(kind, []))) == len(pipeline.get(kind, [])), f"{name}: {kind} named twice"
            used[kind] |= set(pipeline.get(kind, []))
        assert pipeline["receivers"] and pipeline["exporters"], name
        # The Collector's recommendation: the memory limiter first (refuse before anything else works), batch last.
        processors = pipeline["processors"]
        assert processors[0] == "memory_limiter" and processors[-1] == "batch", f"{name}: {processors}"
    for kind in KINDS:
        defined = set(config.get(kind) or {})
        assert used[kind] <= defined, f"{kind} named but not defined: {used[kind] - defined}"
        assert defined <= used[kind], f"{kind} defined but never used: {defined - used[kind]}"
        for component in defined:
            assert kind_of(component) in KNOWN_TYPES[kind], f"{kind}: unknown type of {component}"  # `logging` too

    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317" and protocols["http"]["endpoint"] == "0.0.0.0:4318"
    limiter = config["processors"]["memory_limiter"]
    assert limiter["check_interval"] and ("limit_mib" in limiter or "limit_percentage" in limiter), limiter
    batch = config["processors"]["batch"]
    assert 0 < batch["send_batch_size"] <= batch["send_batch_max_size"], batch  # the Collector refuses otherwise

    exporters = config["exporters"]
    backends = []
    for name, settings in exporters.items():
        if kind_of(name) in GRPC | HTTP and host_of(settings["endpoint"]) in TRACING_BACKENDS:
            backends.append(name)
            if kind_of(name) in GRPC:  # Jaeger's and Tempo's OTLP/gRPC port
                assert port_of(settings["endpoint"]) == 4317, name
    assert kind_of(ANALYTICS) in HTTP and ANALYTICS in exporters
    assert config["exporters"]["prometheus"]["endpoint"] == "0.0.0.0:8889"

    traces = [pipeline for name, pipeline in pipelines.items() if kind_of(name) == "traces"]
    metrics = [pipeline for name, pipeline in pipelines.items() if kind_of(name) == "metrics"]
    sent = {exporter for pipeline in traces for exporter in pipeline["exporters"]}
    assert ANALYTICS in sent, "traces must reach the analytics API"
    assert sent & set(backends), "traces must reach a tracing backend (Jaeger or Tempo)"
    assert metrics, "no metrics pipeline"
    for pipeline in metrics:
        # Prometheus only (scraped, or pushed by remote write): Jaeger, Tempo, Phoenix and the analytics API take
        # no metrics.
        assert {kind_of(name) for name in pipeline["exporters"]} <= {"prometheus", "prometheusremotewrite"}, pipeline


def test_the_collector_config_loads_as_the_collector_would():
    text = COLLECTOR.read_text()
    config = collector_config(text)
    assert_loads(config)
    assert set(config["service"]["pipelines"]) == {"traces", "metrics"}
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["otlp/jaeger", ANALYTICS]
    assert config["service"]["pipelines"]["metrics"]["exporters"] == ["prometheus"]
    assert config["exporters"]["otlp/jaeger"] == {"endpoint": "jaeger:4317", "tls": {"insecure": True}}
    # Current syntax: every variable is ${env:NAME}; the bare $NAME and ${NAME} forms are not.
    values = list(scalars(config))
    assert [name for value in values for name in ENV_REFERENCE.findall(value)] == ["MCP_ANALYTICS_KEY"]
    assert not [value for value in values if "$" in ENV_REFERENCE.sub("", value)]


def scalars(node: Any) -> Iterator[str]:
    """Every key and value of a parsed config, as text (what the Collector expands variables in)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from scalars(value)
    elif isinstance(node, list):
        for item in node:
            yield from scalars(item)
    else:
        yield str(node)


def test_the_commented_tempo_alternative_loads_too():
    """Uncommented and named in the traces pipeline instead of Jaeger, the Tempo block is a valid config."""
    text = COLLECTOR.read_text()
    start = re.search(r"^( *)# (otlp/tempo:)\n((?:\1#   .*\n)+)", text, re.MULTILINE)
    assert start, "the commented otlp/tempo block is missing"
    indent = start.group(1)
    block = start.group(2) + "\n" + "".join(line[len(indent) + 2 :] + "\n" for line in start.group(3).splitlines())
    tempo = yaml.safe_load(block)["otlp/tempo"]
    assert tempo == {"endpoint": "tempo:4317", "tls": {"insecure": True}}
    config = collector_config(text)
    del config["exporters"]["otlp/jaeger"]
    config["exporters"]["otlp/tempo"] = tempo
    traces = config["service"]["pipelines"]["traces"]
    traces["exporters"] = ["otlp/tempo" if name == "otlp/jaeger" else name for name in traces["exporters"]]
    assert_loads(config)


def test_the_structural_check_catches_each_breakage():
    """``assert_loads`` is not vacuous: each of these breaks it, for its own reason."""

    def pipelines(config: dict[str, Any]) -> dict[str, Any]:
        return config["service"]["pipelines"]

    def logging_exporter(config: dict[str, Any]) -> None:
        config["exporters"]["logging"] = {}
        pipelines(config)["traces"]["exporters"].append("logging")

    breakages = [
        ("named but not defined", lambda c: pipelines(c)["traces"]["exporters"].append("otlp/tempo")),
        ("defined but never used", lambda c: c["exporters"].update({"debug": {}})),
        ("otlp/jaeger", lambda c: pipelines(c)["metrics"]["exporters"].append("otlp/jaeger")),  # takes no metrics
        ("mcp_analytics", lambda c: pipelines(c)["traces"]["exporters"].remove(ANALYTICS)),
        ("batch', 'memory_limiter", lambda c: pipelines(c)["traces"].update(processors=["batch", "memory_limiter"])),
        ("unknown type of logging", logging_exporter),  # gone: `debug` replaced it
        ("4317", lambda c: c["exporters"]["otlp/jaeger"].update(endpoint="jaeger:14250")),  # the old Jaeger gRPC
    ]
    for says, breakage in breakages:
        config = collector_config()
        breakage(config)
        with pytest.raises(AssertionError, match=re.escape(says)):
            assert_loads(config)


# --------------------------------------------------------------------------- real traffic, recorded once


@dataclass
class Traffic:
    spans: tuple[ReadableSpan, ...]
    exposition: str
    """What the OTel Prometheus exporter serves on /metrics."""
    otlp: dict[str, str]
    """Each histogram's OTLP name and unit, as the Collector receives them."""


@pytest.fixture(scope="module")
def traffic() -> Iterator[Traffic]:
    """One instrumented client and server (in memory) with a real HTTP upstream: tools listed, called, failed."""
    resource = Resource.create({"service.name": SERVICE})
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    registry = CollectorRegistry()  # not the global one: nothing left behind for other tests
    otlp = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry), otlp], resource=resource)
    instrumentor, httpx_instrumentor = MCPInstrumentor(), HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    httpx_instrumentor.instrument(tracer_provider=tracer_provider)

    async def calls(base: str) -> None:
        async with in_memory(build("highlevel"), client_info=Implementation(name=CLIENT, version="1.0")) as client:
            await client.list_tools()
            await client.call_tool("add", {"a": 1, "b": 2})
            await client.call_tool("add", {"a": 3, "b": 4})
            await client.call_tool("fail", {})
            await client.call_tool("fetch", {"url": f"{base}/delay?ms=20", "timeout": 5})

    try:
        with upstream() as base:
            anyio.run(calls, base)
        histograms = {
            metric.name: metric.unit
            for resource_metrics in otlp.get_metrics_data().resource_metrics
            for scope in resource_metrics.scope_metrics for metric in scope.metrics
            if metric.data.data_points and isinstance(metric.data.data_points[0], HistogramDataPoint)
        }  # fmt: skip
        yield Traffic(spans.get_finished_spans(), generate_latest(registry).decode(), histograms)
    finally:
        httpx_instrumentor.uninstrument()
        instrumentor.uninstrument()
        meter_provider.shutdown()


# --------------------------------------------------------------------------- the analytics leg, for real


def expand(value: str, environment: dict[str, str]) -> str:
    """The Collector's ``${env:NAME}``: the variable's value, empty when unset."""
    return ENV_REFERENCE.sub(lambda match: environment.get(match.group(1), ""), value)


def as_the_collector_sends(port: int, environment: dict[str, str]) -> OTLPSpanExporter:
    """The stock OTLP/HTTP exporter set up as ``otlphttp/mcp_analytics`` sends: same URL, headers, body, encoding."""
    settings = collector_config()["exporters"][ANALYTICS]
    endpoint = urlsplit(settings["endpoint"])
    assert endpoint.port == DEFAULT_PORT and endpoint.path in ("", "/"), "the API's port; otlphttp adds the path"
    assert settings.get("encoding", "proto") == "proto"  # protobuf, as OTLPSpanExporter sends
    assert "traces_endpoint" not in settings
    # otlphttp appends /v1/traces to `endpoint` (exporter/otlphttpexporter/README.md); only the host changes here.
    url = urlunsplit((endpoint.scheme, f"127.0.0.1:{port}", endpoint.path.rstrip("/") + "/v1/traces", "", ""))
    headers = {name: expand(value, environment) for name, value in settings["headers"].items()}
    compression = settings.get("compression", "gzip")  # otlphttp's default is gzip
    assert compression in ("gzip", "none"), "the API reads gzip or uncompressed bodies (415 otherwise)"
    return OTLPSpanExporter(endpoint=url, headers=headers, compression=Compression(compression), timeout=10)


def test_the_analytics_exporter_delivers_real_mcp_spans_to_a_real_api(traffic, tmp_path):
    api = ApiProcess(tmp_path / "events.duckdb")  # `mcp-analytics serve --api-key rel=<KEY>` on a free port

    def panel(name: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{api.url}/v1/panels/{name}", params={"last": "1h"},
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=10)  # fmt: skip
        assert answer.status_code == 200, answer.text
        return answer.json()["rows"]

    api.start()
    try:
        # MCP_ANALYTICS_KEY unset: the Collector sends "Bearer ", the API refuses it and stores nothing.
        assert as_the_collector_sends(api.port, {}).export(traffic.spans) == SpanExportResult.FAILURE
        assert panel("summary")[0]["events"] == 0

        exporter = as_the_collector_sends(api.port, {"MCP_ANALYTICS_KEY": KEY})
        assert exporter.export(traffic.spans) == SpanExportResult.SUCCESS
        tools = {(row["tool"], row["calls"], row["errors"]) for row in panel("tools")}
        summary = panel("summary")[0]
    finally:
        api.stop()
    assert tools == {("add", 2, 0), ("fail", 1, 1), ("fetch", 1, 0)}
    mcp_server_spans = [s for s in traffic.spans if s.kind == SpanKind.SERVER and "mcp.method.name" in s.attributes]
    # The upstream's HTTP client span travels too (a Collector forwards every span): the API leaves it out.
    assert any(span.instrumentation_scope.name.endswith("httpx") for span in traffic.spans)
    assert summary["events"] == len(mcp_server_spans) and summary["clients"] == 1


# --------------------------------------------------------------------------- the metrics leg: names and labels

SCRAPE_LABELS = {"job"}
"""Set by whoever exposes the series to Prometheus, not by the SDK: the scrape job, or through the Collector
`service.namespace/service.name` (kept by ``honor_labels: true``, checked below)."""
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^{}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(=~|!~|!=|=)\s*\"((?:[^\"\\]|\\.)*)\"")
STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"")
BRACES = re.compile(r"\{[^{}]*\}")
NAME = re.compile(r"(?<![\w:.])([A-Za-z_][\w:]*)")


def made_by_rules(expr: str) -> set[str]:
    """The labels ``label_replace(v, "dst", ...)`` writes: its second argument, found by balanced parentheses."""
    made = set()
    for call in re.finditer(r"\blabel_replace\(", expr):
        depth, arguments, current, in_string = 1, [], "", False
        for char in expr[call.end() :]:
            if in_string:
                in_string = char != '"' or current.endswith("\\")
            elif char == '"':
                in_string = True
            elif char in "([{":
                depth += 1
            elif char in ")]}":
                depth -= 1
                if depth == 0:
                    break
            elif char == "," and depth == 1:
                arguments.append(current)
                current = ""
                continue
            current += char
        made.add(arguments[1].strip().strip('"'))
    return made


@dataclass
class Query:
    where: str
    expr: str


def queries() -> list[Query]:
    """Every PromQL expression of the rules file and the dashboard (panels and variables)."""
    found = [Query(f"rule {rule.get('record') or rule['alert']}", rule["expr"]) for rule in rules_in(RULES)]
    board = json.loads(DASHBOARD.read_text())
    for panel in board["panels"]:
        found += [Query(f"panel {panel['title']!r}", target["expr"]) for target in panel.get("targets", ())]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):  # label_values(<selector>, <label>): the selector is PromQL, the label a label
            selector, label = re.fullmatch(r"label_values\((.+), (\w+)\)", query["query"]).groups()
            found.append(Query(f"variable {variable['name']}", f"sum by ({label}) ({selector})"))
    return found


@dataclass
class Used:
    series: dict[str, set[str]]
    """Every series (no recording rule) and the labels its selectors match on."""
    grouping: set[str]
    values: dict[str, set[str]]
    """The values equality and regex matchers ask of each label."""
    records: set[str]


def used(exprs: list[Query]) -> Used:
    found = Used({}, set(), {}, set())
    for query in exprs:
        for name, matchers in SELECTOR.findall(query.expr):
            for label, operator, value in MATCHER.findall(matchers):
                if ":" not in name:
                    found.series.setdefault(name, set()).add(label)
                found.grouping.add(label)
                if operator in ("=", "=~") and value and "$" not in value:
                    found.values.setdefault(label, set()).update(value.split("|") if operator == "=~" else [value])
        # What is left once strings, label lists and matchers are gone: functions, series and recording rules.
        bare = STRING.sub('""', query.expr)
        for labels in GROUPING.findall(bare):
            found.grouping |= {label.strip() for label in labels.split(",") if label.strip()}
        for name in NAME.findall(BRACES.sub(" ", GROUPING.sub(" ", bare))):
            if ":" in name:
                found.records.add(name)
            elif name.startswith("mcp_"):
                found.series.setdefault(name, set())
    return found


def exposition_series(text: str) -> dict[str, dict[str, set[str]]]:
    """Each sample name of the exposition: its labels and their values (the real Prometheus text parser). An empty
    value is no label to Prometheus (the OTel exporter writes `mcp_failure_origin=""` on the successes' series)."""
    series: dict[str, dict[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = series.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                if value:
                    labels.setdefault(label, set()).add(value)
    return series


def test_the_query_parser_finds_what_the_rules_and_dashboard_use():
    """A guard on the parser below: it sees the series, labels and recording rules known to be used."""
    found = used(queries())
    known = {"mcp_server_operation_duration_seconds_count", "mcp_server_operation_duration_seconds_bucket",
             "mcp_server_operation_duration_seconds_sum", "mcp_server_operation_upstream_duration_seconds_sum",
             "mcp_server_session_duration_seconds_count", "mcp_server_session_duration_seconds_bucket"}  # fmt: skip
    assert known <= set(found.series)
    assert all(re.fullmatch(r"mcp_\w+_(bucket|count|sum)", name) for name in found.series), found.series
    assert found.series["mcp_server_operation_duration_seconds_count"] >= {"job", "gen_ai_tool_name", "mcp_client_name"}
    assert {"job", "gen_ai_tool_name", "mcp_method_name", "mcp_client_name", "mcp_failure_origin",
            "mcp_failure_reason", "le"} <= found.grouping  # fmt: skip
    assert "job_tool_tier:mcp_tool_slow_ratio:rate1h" in found.records
    assert found.values["mcp_method_name"] == {"tools/call", "initialize"}


def test_every_series_and_label_the_rules_and_dashboard_query_is_exposed(traffic):
    # The Collector's `prometheus` exporter names OTLP metrics as the OTel Prometheus exporter does (both follow
    # the spec's "Prometheus and OpenMetrics Compatibility": a histogram is {name}_bucket/_count/_sum with `le`):
    # opentelemetry-collector-contrib pkg/translator/prometheus/README.md ("Prometheus Normalization", used by
    # exporter/prometheusexporter and prometheusremotewriteexporter) appends the unit, `s` -> `seconds`, and turns
    # unsupported characters such as `.` into `_` in metric and label names; exporter/prometheusexporter/README.md
    # keeps those suffixes by default (add_metric_suffixes / translation_strategy UnderscoreEscapingWithSuffixes).
    exposed = exposition_series(traffic.exposition)
    found = used(queries())
    for name, labels in found.series.items():
        assert name in exposed, f"{name} is queried, not exposed; exposed: {sorted(n for n in exposed if 'mcp' in n)}"
        missing = labels - SCRAPE_LABELS - set(exposed[name])
        assert not missing, f"{name} is queried by {sorted(missing)}, labels it does not have: {sorted(exposed[name])}"
    made = {label for rule in rules_in(RULES) for label in made_by_rules(rule["expr"])}
    assert made == {"tier", "le", "day"}, made  # label_replace's targets: labels of the rules' own making
    every_label = {label for name, labels in exposed.items() if name.startswith("mcp_") for label in labels}
    unknown = found.grouping - every_label - SCRAPE_LABELS - made
    assert not unknown, f"labels queried that no MCP series has: {sorted(unknown)}"
    methods = {value for name in found.series for value in exposed[name].get("mcp_method_name", ())}
    assert found.values["mcp_method_name"] <= methods
    assert found.values["mcp_failure_origin"] <= {origin.value for origin in FailureOrigin}
    # And the values the traffic gave: one tool failed on the server's side, one waited on its upstream.
    failed = exposed["mcp_server_operation_duration_seconds_count"]
    assert failed["mcp_failure_origin"] == {"server"} and failed["gen_ai_tool_name"] == {"add", "fail", "fetch"}
    assert exposed["mcp_server_operation_upstream_duration_seconds_sum"]["gen_ai_tool_name"] == {"fetch"}
    assert failed["mcp_client_name"] == {CLIENT}


def test_the_recording_rules_the_dashboard_and_the_alerts_read_are_defined():
    defined = {rule["record"] for rule in rules_in(RULES) if "record" in rule}
    read = used(queries()).records
    assert "job_tool_tier:mcp_tool_slow_ratio:rate1h" in read and read <= defined, read - defined


# The documented translation (pkg/translator/prometheus/README.md, "Standard unit"), for the units we use.
COLLECTOR_UNITS = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}


def test_the_collector_s_names_for_the_otlp_histograms_are_the_exposed_ones(traffic):
    """From the OTLP side, as the Collector receives them: `.` -> `_`, unit appended, histogram suffixes."""
    assert {"mcp.server.operation.duration", "mcp.server.session.duration",
            "mcp.server.operation.upstream.duration"} <= set(traffic.otlp)  # fmt: skip
    exposed = exposition_series(traffic.exposition)
    for name, unit in traffic.otlp.items():
        assert unit in COLLECTOR_UNITS, f"{name}: unit {unit!r}; look up its Prometheus name and add it here"
        base = f"{re.sub(r'[^A-Za-z0-9_]+', '_', name)}_{COLLECTOR_UNITS[unit]}"
        for suffix in ("_bucket", "_count", "_sum"):
            assert base + suffix in exposed, (name, base + suffix)


# --------------------------------------------------------------------------- prometheus.yml: scraping the Collector


def test_prometheus_scrapes_the_collector_keeping_its_job_label_and_loads_the_rules(tmp_path):
    config = yaml.safe_load(SCRAPE.read_text())
    (job,) = config["scrape_configs"]
    assert job["honor_labels"] is True  # `job` stays each server's service.name, as the rules and dashboard use it
    (targets,) = job["static_configs"]
    exporter = collector_config()["exporters"]["prometheus"]["endpoint"]
    assert [port_of(target) for target in targets["targets"]] == [port_of(exporter)]
    (rules,) = config["rule_files"]
    assert (SCRAPE.parent / rules).resolve() == RULES.resolve()
    checked = promtool("check", "config", str(SCRAPE), cwd=tmp_path)  # rule_files is relative to the file
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules_in(RULES))} rules found" in checked.stdout

"""The Grafana dashboard and the Prometheus rules on a real Prometheus (Debian's package) on 127.0.0.1.

It scrapes a server run under ``opentelemetry-instrument`` with the OpenTelemetry Prometheus exporter
(``OTEL_METRICS_EXPORTER=prometheus``), as a user would. Real clients call it over streamable HTTP; one
tool waits on a real HTTP upstream (traced by the httpx instrumentation), one always fails. Then every
dashboard query and variable, and every rule, runs through Prometheus's HTTP API.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from mcp import ClientSession, Implementation

from tests.apps.http import connect
from tests.apps.upstream import upstream
from tests.test_prometheus_rules import RULES, prometheus_binary, rules_in

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "mcp-dashboard.json"
SERVER_SCRIPT = ROOT / "tests" / "apps" / "http_server.py"
OPENTELEMETRY_INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"
SERVICE = "weather"
CLIENTS = ("claude-code", "cursor")
ROUNDS = 6
VARIABLES = {"$service": SERVICE, "$tool": ".*", "$client": ".*", "$__rate_interval": "2m", "$__range": "1h"}
"""What Grafana sends for one service and every tool and client ("All" is the variables' ``.*``)."""

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Prometheus:
    url: str

    def api(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return data["result"]

    def wait_for(self, expr: str, budget: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + budget
        while True:
            found = self.query(expr)
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.5)


def wait_ready(process: subprocess.Popen[str], url: str, budget: float = 30) -> None:
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited with {process.returncode}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {budget} s")


async def traffic(url: str, fetch_url: str, prometheus: Prometheus) -> None:
    """Two clients, ``ROUNDS`` rounds a second apart (so every series moves across scrapes); each session ends.
    After the first round, until Prometheus has scraped the failing tool's series: ``increase()`` counts from a
    series' first sample, so the rounds after it (30 failures) are what the error-ratio alert's 20 calls see,
    however late the first scrape (a slow one once left 18, and the alert resolved while the tests read it)."""
    scraped = 'mcp_server_operation_duration_seconds_count{gen_ai_tool_name="fail"}'
    for index in range(ROUNDS):
        if index == 1:
            assert await anyio.to_thread.run_sync(prometheus.wait_for, scraped), "Prometheus never scraped the server"
        for name in CLIENTS:
            async with (
                connect(url) as streams,
                ClientSession(streams[0], streams[1], client_info=Implementation(name=name, version="1")) as client,
            ):
                await client.initialize()
                await client.list_tools()
                for _ in range(3):
                    await client.call_tool("add", {"a": 1, "b": 2})
                    await client.call_tool("fail", {})
                    await client.call_tool("fetch", {"url": fetch_url, "timeout": 5})
        await anyio.sleep(1.0)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = prometheus_binary("prometheus")
    tmp = tmp_path_factory.mktemp("prometheus")
    metrics_port, mcp_port, prometheus_port = free_port(), free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1", "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
    }  # fmt: skip
    server = subprocess.Popen(
        [str(OPENTELEMETRY_INSTRUMENT), sys.executable, str(SERVER_SCRIPT), "highlevel", str(mcp_port)],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=(tmp / "server.stderr").open("w"), text=True,
    )  # fmt: skip
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": SERVICE, "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [binary, f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("w"), cwd=tmp,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready", (
            tmp / "server.stderr"
        ).read_text()
        wait_ready(process, f"http://127.0.0.1:{prometheus_port}/-/ready")
        found = Prometheus(f"http://127.0.0.1:{prometheus_port}")
        with upstream() as base:
            anyio.run(traffic, f"http://127.0.0.1:{mcp_port}/mcp", f"{base}/delay?ms=50", found)
        # The last round scraped, and the rules evaluated on it.
        assert found.wait_for(f'ALERTS{{alertname="MCPToolErrorRatio", job="{SERVICE}"}}'), "the alert rules never ran"
        assert found.wait_for(f"sum(mcp_server_session_duration_seconds_count) >= {len(CLIENTS) * ROUNDS}"), "sessions"
        yield found
    finally:
        for running in (process, server):
            running.terminate()
            try:
                running.wait(timeout=10)
            except subprocess.TimeoutExpired:
                running.kill()


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every dashboard query."""
    return [(panel["title"], target["expr"]) for panel in dashboard()["panels"] for target in panel.get("targets", ())]


def grafana(expr: str) -> str:
    for name, value in sorted(VARIABLES.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_the_dashboard_is_an_importable_grafana_dashboard():
    board = dashboard()
    assert (board["uid"], board["title"], type(board["schemaVersion"])) == ("mcp-servers", "MCP servers", int)
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert list(variables) == ["datasource", "service", "tool", "client"]
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("service", "tool", "client"):
        assert (
            variables[name]["type"] == "query" and variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
        )
    ids, cells = set(), set()
    for panel in board["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        box = panel["gridPos"]
        assert box["x"] >= 0 and box["x"] + box["w"] <= 24, panel["title"]
        for x in range(box["x"], box["x"] + box["w"]):
            for y in range(box["y"], box["y"] + box["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"] and panel["description"], panel["title"]
    used = {name for _, expr in queries() for name in re.findall(r"\$\w+", expr)}
    assert used <= set(VARIABLES), used - set(VARIABLES)
    titles = [panel["title"] for panel in board["panels"]]
    for wanted in ("Tool calls / s by tool", "Error ratio by origin", "Tool latency p50 / p95 / p99",
                   "Own vs upstream time per call", "Operations / s by client", "Session duration p50 / p95",
                   "Top failing tools"):  # fmt: skip
        assert wanted in titles


def test_every_dashboard_query_returns_data(prometheus):
    checked = 0
    for title, expr in queries():
        result = prometheus.query(grafana(expr))
        values = [float(sample["value"][1]) for sample in result]
        assert values and any(math.isfinite(value) for value in values), f"{title}: {grafana(expr)} -> {result}"
        checked += 1
    assert checked == len(queries()) >= 20


def test_the_panels_show_what_happened(prometheus):
    def by(expr: str, label: str) -> dict[str, float]:
        return {
            sample["metric"].get(label, ""): float(sample["value"][1]) for sample in prometheus.query(grafana(expr))
        }

    title_to_exprs: dict[str, list[str]] = {}
    for title, expr in queries():
        title_to_exprs.setdefault(title, []).append(expr)
    assert set(by(title_to_exprs["Tool calls / s by tool"][0], "gen_ai_tool_name")) == {"add", "fail", "fetch"}
    origins = by(title_to_exprs["Error ratio by origin"][0], "mcp_failure_origin")
    assert set(origins) == {"server"} and 0 < origins["server"] < 1
    assert set(by(title_to_exprs["Operations / s by client"][0], "mcp_client_name")) == set(CLIENTS)
    upstream_share = by(title_to_exprs["Own vs upstream time per call"][1], "gen_ai_tool_name")
    assert set(upstream_share) == {"fetch"} and 0.04 <= upstream_share["fetch"] <= 1, "50 ms upstream per fetch"
    (failing,) = prometheus.query(grafana(title_to_exprs["Top failing tools"][0]))
    assert failing["metric"]["gen_ai_tool_name"] == "fail" and failing["metric"]["mcp_failure_origin"] == "server"
    sessions = prometheus.query(grafana(title_to_exprs["Sessions started"][0]))
    # increase() counts from each series' first scrape (after the first round) and extrapolates a little.
    assert len(CLIENTS) <= float(sessions[0]["value"][1]) <= len(CLIENTS) * ROUNDS


def test_the_variables_list_services_tools_and_clients(prometheus):
    found = {}
    for variable in dashboard()["templating"]["list"][1:]:
        metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"]).groups()
        found[variable["name"]] = set(prometheus.api(f"label/{label}/values", **{"match[]": grafana(metric)}))
    assert found == {"service": {SERVICE}, "tool": {"add", "fail", "fetch"}, "client": set(CLIENTS)}


def test_every_rule_runs_and_every_recording_rule_has_data(prometheus):
    groups = prometheus.api("rules")["groups"]
    shipped = {group["name"]: [rule.get("record") or rule["alert"] for rule in group["rules"]]
               for group in yaml.safe_load(RULES.read_text())["groups"]}  # fmt: skip
    assert {group["name"]: [rule["name"] for rule in group["rules"]] for group in groups} == shipped
    loaded = [rule for group in groups for rule in group["rules"]]
    assert len(loaded) == len(rules_in(RULES))
    for rule in loaded:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        if rule["type"] == "recording":
            assert prometheus.query(rule["name"]), f"{rule['name']} recorded nothing"
    # Each tool is in the fastest tier whose target holds its p95 (how fast the tools were is the machine's).
    p95 = {
        sample["metric"]["gen_ai_tool_name"]: float(sample["value"][1])
        for sample in prometheus.query("job_tool:mcp_tool_duration_seconds:p95_7d")
    }
    tiers = {
        sample["metric"]["gen_ai_tool_name"]: (sample["metric"]["tier"], float(sample["value"][1]))
        for sample in prometheus.query("job_tool_le:mcp_tool_slo_target_seconds")
    }
    assert set(tiers) == set(p95) == {"add", "fail", "fetch"}
    for tool, seconds in p95.items():
        expected = ("light", 0.5) if seconds <= 0.5 else ("medium", 2.0) if seconds <= 2 else ("heavy", 30.0)
        assert tiers[tool] == expected, (tool, seconds)


def test_the_failing_tool_alerts_and_nothing_else(prometheus):
    alerts = prometheus.api("alerts")["alerts"]
    firing = {(alert["labels"]["alertname"], alert["labels"].get("gen_ai_tool_name")) for alert in alerts}
    assert firing == {("MCPToolErrorRatio", "fail")}
    (alert,) = alerts
    assert alert["state"] == "firing" and alert["labels"]["severity"] == "page"
    assert alert["annotations"]["summary"] == "fail: 100% of calls failed (server or upstream) over 15 minutes"

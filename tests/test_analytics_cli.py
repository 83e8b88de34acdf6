"""``mcp-analytics`` as a newcomer runs it: the demo end to end, ``report`` from its store file and from a live API."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from mcp_analytics.duckdb_store import DuckDBStore
from mcp_analytics.store import Slice, Window
from tests.apps.servers import IS_V2
from tests.processes import free_port
from tests.test_analytics_reliability import ApiProcess

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mcp_analytics", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)  # fmt: skip


def overview(report: str) -> dict[str, str]:
    lines = report.split("Overview\n", 1)[1].splitlines()
    return dict(zip(lines[0].split(), lines[2].split(), strict=True))


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, float]:
    db = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    started = time.monotonic()
    run = cli("demo", "--no-keep-serving", "--db", str(db), "--port", str(free_port()))
    return run, db, time.monotonic() - started


def test_the_demo_runs_the_whole_stack_in_under_a_minute(demo):
    run, db, took = demo
    assert run.returncode == 0, run.stderr
    assert took < 60
    out = run.stdout
    # Not kept serving (no terminal): the address is said to be gone, with how to browse the store afterwards.
    assert re.search(r"the demo's API has stopped \(it served the dashboard at http://127\.0\.0\.1:\d+/#key=mcpa_\S+ "
                     r"while it ran\); to browse it: mcp-analytics demo --keep-serving", out)  # fmt: skip
    numbers = overview(out)
    assert (numbers["users"], numbers["clients"]) == ("3", "4")  # alice, bob, carol; four agents
    failures = out.split("Failures by origin, then reason\n", 1)[1].split("\n\n", 1)[0]
    for origin, reason in [("client", "invalid_params"), ("client", "unknown_tool"), ("upstream", "upstream_error"),
                           ("server", "tool_error")]:  # fmt: skip
        assert re.search(rf"^\s+{origin}\s+{reason}\s+1\s", failures, re.MULTILINE), failures
    unused = out.split("Tools not called in this window\n", 1)[1].split("\n\n", 1)[0].splitlines()[2:]
    assert len(unused) == 1, unused  # the one tool no agent calls: listed, never called
    assert re.fullmatch(r"\s+rate_page\s+-\s+0\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s*", unused[0]), unused
    with duckdb.connect(str(db), read_only=True) as store:
        clients = {
            row[0] for row in store.execute("SELECT DISTINCT client_name FROM events WHERE kind = 'server'").fetchall()
        }
        intents = store.execute("SELECT count(*) FROM events WHERE kind = 'server' AND intent IS NOT NULL").fetchone()[
            0
        ]
        stateless_users = store.execute(
            "SELECT DISTINCT user_id FROM events WHERE kind = 'server' AND session_id IS NULL AND user_id IS NOT NULL"
        ).fetchall()
    assert {"claude-ai", "cursor-vscode", "claude-code", "mcp-inspector"} <= clients
    assert intents >= 8
    assert stateless_users == [("carol",)]


def test_the_demo_s_four_agents_are_four_sessions(demo):
    """Alice and Bob on the stateful endpoint, Carol (identified) and an anonymous Inspector on the stateless one."""
    _, db, _ = demo
    store = DuckDBStore(db)
    try:
        rows = store.panel("demo", "sessions", Window.parse(last="1h"))
    finally:
        store.close()
    found = sorted((row["user"] or "-", row["client"] or "-", row["grouping"], row["state"]) for row in rows)
    expected = [
        ("-", "mcp-inspector", "caller + client", "active"),
        ("alice", "claude-ai", "session id", "active"),
        ("bob", "cursor-vscode", "session id", "active"),
        ("carol", "claude-code", "user + client", "active"),
    ]
    if not IS_V2:  # mcp 1.x hands a notification over without its HTTP request: nothing ties it to its caller
        expected = sorted(expected + [("-", "-", "single event", "active")] * 2)
    assert found == expected


def test_report_reads_the_demo_store_file(demo):
    run, db, _ = demo
    report = cli("report", "--db", str(db), "--project", "demo", "--last", "1h")
    assert report.returncode == 0, report.stderr
    assert overview(report.stdout) == overview(run.stdout)
    assert "search_docs" in report.stdout.split("Top tools", 1)[1]
    methods = report.stdout.split("Methods and custom events\n", 1)[1].split("\n\n", 1)[0]
    assert (
        "calls_per_list" not in methods and len(re.findall(r"tools/call per tools/list: [\d.]+$", methods, re.M)) == 1
    )
    assert re.search(r"^  custom:\S+ ", methods, re.M), "the demo's custom events are shown, as they are counted"


def test_report_names_the_projects_of_a_store_without_the_one_asked_for(demo):
    _, db, _ = demo
    report = cli("report", "--db", str(db))  # the default project: the demo's store has only "demo"
    assert report.returncode == 2
    assert "no events of project 'default'" in report.stderr and "its projects: demo" in report.stderr


def test_report_slices_the_demo_by_the_api_s_filters(demo):
    _, db, _ = demo
    report = cli("report", "--db", str(db), "--project", "demo", "--last", "1h", "--client", "cursor-vscode",
                 "--method", "tools/call,tools/list")  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines()[0].endswith("; client cursor-vscode, method tools/call,tools/list")
    store = DuckDBStore(db)
    try:
        every = store.panel("demo", "summary", Window.parse(last="1h"))[0]
        (bob,) = store.panel("demo", "summary", Window.parse(last="1h"),
                             Slice(client=("cursor-vscode",), method=("tools/call", "tools/list")))  # fmt: skip
    finally:
        store.close()
    assert 0 < bob["events"] < every["events"]
    assert overview(report.stdout)["events"] == str(bob["events"])
    assert overview(report.stdout)["clients"] == "1"
    refused = cli("report", "--db", str(db), "--user", ",".join(f"u{i}" for i in range(101)))
    assert refused.returncode == 2 and "at most 100 values" in refused.stderr


def test_report_reads_a_running_api_and_refuses_a_wrong_key(tmp_path):
    api = ApiProcess(tmp_path / "live.duckdb")
    api.start()
    try:
        ok = cli("report", "--url", api.url, "--api-key", "reliability-key", "--last", "1h", "--tool", "a,b",
                 "--origin", "server")  # fmt: skip
        wrong = cli("report", "--url", api.url, "--api-key", "nope")
    finally:
        api.stop()
    assert ok.returncode == 0, ok.stderr
    assert overview(ok.stdout)["events"] == "0"
    assert wrong.returncode == 1 and "401" in wrong.stderr


def test_serve_without_a_key_makes_one_and_says_so(tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mcp_analytics", "serve", "--db", str(tmp_path / "x.duckdb"),
                                "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        first = process.stdout.readline()
    finally:
        process.terminate()
        process.wait(10)
    assert re.match(r"no API key given: project 'default' has the key mcpa_\S+ until this server stops", first)


def test_report_without_a_store_explains_what_to_give(tmp_path):
    run = cli("report", "--db", str(tmp_path / "missing.duckdb"))
    assert run.returncode == 2 and "no store at" in run.stderr


def test_serve_refuses_the_same_key_given_twice(tmp_path):
    run = cli("serve", "--db", str(tmp_path / "x.duckdb"), "--port", str(free_port()),
              "--api-key", "a=shared-key", "--api-key", "b=shared-key")  # fmt: skip
    assert run.returncode == 2
    assert "the same API key is given twice (projects 'a' and 'b')" in run.stderr
    assert "shared-key" not in run.stderr, "a key is never printed"


@pytest.mark.parametrize(("config", "says"), [
    ("{not json", "slo.json:"),
    ('{"tools": {"search_*": "instant"}}', "unknown SLO tier instant"),
    ('["light"]', "not a JSON object"),
])  # fmt: skip
def test_serve_refuses_an_slo_configuration_it_cannot_use(tmp_path, config, says):
    (tmp_path / "slo.json").write_text(config)
    run = cli("serve", "--db", str(tmp_path / "x.duckdb"), "--port", str(free_port()), "--slo-config",
              str(tmp_path / "slo.json"))  # fmt: skip
    assert run.returncode == 2 and says in run.stderr, run.stderr


def test_version_and_help():
    from opentelemetry_instrumentation_mcp import __version__

    shown = cli("--version")
    assert (shown.returncode, shown.stdout.strip()) == (0, f"mcp-analytics {__version__}")
    helped = cli("--help")
    assert helped.returncode == 0 and "``" not in helped.stdout and "Serve the MCP analytics API" in helped.stdout

"""The dashboard in a real browser: headless Chromium loads it from the API and we read the DOM it rendered.

A store is seeded with known events; the page is served by the real app (``in_thread``) and
opened with ``--dump-dom``. Every number the page shows is checked against what the store's
own ``panel()`` answers for the same window, so the page and the API cannot drift apart.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from mcp_analytics.api import create_app
from mcp_analytics.duckdb_store import DuckDBStore
from mcp_analytics.keys import ApiKeys
from mcp_analytics.models import Event, validated_event
from mcp_analytics.server import in_thread
from mcp_analytics.store import Slice, Window

KEY, OTHER_KEY = "demo-key-7f3a", "other-key-91bc"
PROJECT = "demo"
XSS_TOOL = "<img src=x onerror=alert(1)>"
XSS_MESSAGE = "quota <b>exceeded</b> & <script>alert(2)</script>"
OTHER_TOOL = "secret_other_tool"
CHROMIUM_TIMEOUT = 60
SCREENSHOT_ENV = "MCP_ANALYTICS_SCREENSHOT_DIR"
REQUIRE_ENV = "MCP_ANALYTICS_REQUIRE_BROWSER"


# ---------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"Chromium is required ({REQUIRE_ENV}=1) but neither `chromium` nor `chromium-browser` is on PATH")
    pytest.skip(f"Chromium not installed (apt install chromium); set {REQUIRE_ENV}=1 to require it")


def run_chromium(browser: str, url: str, *options: str, budget_ms: int = 10_000) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
            f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *options, url,
        ]  # fmt: skip
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"Chromium did not finish within {CHROMIUM_TIMEOUT} s: {url}\n{error.stderr!r}")


def dump_dom(browser: str, url: str) -> Page:
    """The DOM once the page says it is done (loaded or failed); a larger budget on a slow machine."""
    for budget_ms in (10_000, 30_000):
        result = run_chromium(browser, url, "--dump-dom", budget_ms=budget_ms)
        page = Page.parse(result.stdout)
        if page.body is not None and (page.body.attrs.get("data-loaded") == "true" or "data-error" in page.body.attrs):
            return page
    raise AssertionError(
        f"the page never finished loading:\nstderr: {result.stderr[-2000:]}\nDOM: {result.stdout[:3000]}"
    )


# ---------------------------------------------------------------- a small DOM from the dump


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(child if isinstance(child, str) else child.text for child in self.children)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def find_all(self, tag: str | None = None, **attrs: str | bool) -> list[Node]:
        """Descendants with the tag and attributes (True: present; a string: equal). Names use _ for -."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}

        def matches(node: Node) -> bool:
            return all(name in node.attrs and value in (True, node.attrs[name]) for name, value in wanted.items())

        return [node for node in self.walk() if node is not self and tag in (None, node.tag) and matches(node)]

    def find(self, tag: str | None = None, **attrs: str | bool) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag or '*'} {attrs}> in <{self.tag} {self.attrs}>"
        return found[0]

    def field(self, name: str) -> str:
        return self.find(data_field=name).text.strip()

    def fields(self) -> dict[str, str]:
        return {node.attrs["data-field"]: node.text.strip() for node in self.find_all(data_field=True)}

    def rows(self) -> list[Node]:
        return self.find_all("tr", data_row=True)


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    @classmethod
    def parse(cls, html: str) -> Page:
        page = cls()
        page.feed(html)
        page.close()
        return page

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)

    @property
    def body(self) -> Node | None:
        found = self.root.find_all("body")
        return found[0] if found else None

    def panel(self, name: str) -> Node:
        return self.root.find(data_panel=name)

    def find_filter_chips(self) -> list[Node]:
        return self.root.find("nav", id="filters").find_all("a", data_filter_chip=True)


def number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%"))


# ---------------------------------------------------------------- the data


def _events(now: datetime) -> dict[str, list[Event]]:
    start = now - timedelta(minutes=50)
    counter = iter(range(1, 1000))

    def event(minutes: float, type_: str, **fields: Any) -> Event:
        stamp = start + timedelta(minutes=minutes)
        stamp_ns = int(stamp.timestamp() * 1e9)
        return validated_event(event_id=f"ev-{next(counter):03d}", type=type_, timestamp_ns=stamp_ns, **fields)

    alice = {"session_id": "sess-alpha", "user_id": "u-alice", "user_name": "Alice", "client_name": "claude-desktop"}
    bob = {"session_id": "sess-beta", "user_id": "u-bob", "client_name": "cursor"}
    carol = {"stateless": True, "user_id": "u-carol", "client_name": "http-agent"}
    demo = [
        event(0.0, "mcp:initialize", **{**alice, "user_id": None, "user_name": None}),  # before identify
        event(0.1, "mcp:tools/list", tools_listed=["search_docs", "create_ticket", "export_report"], **alice),
        event(
            0.5,
            "mcp:tools/call",
            resource="search_docs",
            intent="find the refund policy",
            duration_ms=120.0,
            upstream_ms=80.0,
            response_size=2048,
            argument_keys=["query"],
            **alice,
        ),
        event(0.7, "custom:note", custom={"message": "user asked about refunds"}, kind="internal", **alice),
        event(
            1.0,
            "mcp:tools/call",
            resource="create_ticket",
            intent="open a ticket for the refund",
            duration_ms=300.0,
            upstream_ms=290.0,
            is_error=True,
            error={"type": "ToolError", "message": XSS_MESSAGE},
            content={"arguments": {"subject": "refund <b>now</b>"}},
            failure={"origin": "upstream", "reason": "rate_limited"},
            **alice,
        ),
        event(
            1.5, "mcp:prompts/get", resource="summarize", argument_keys=["topic", "length"], duration_ms=4.0, **alice
        ),
        event(10.0, "mcp:initialize", **bob),
        event(10.1, "mcp:tools/list", **bob),
        event(10.5, "mcp:tools/call", resource="search_docs", duration_ms=90.0, response_size=1024, **bob),
        event(11.0, "mcp:tools/call", resource="search_docs", duration_ms=150.0, response_size=4096, **bob),
        event(
            11.5,
            "mcp:tools/call",
            resource="get_weather",
            duration_ms=15.0,
            is_error=True,
            error={"type": "ValidationError", "message": "missing 'city'", "code": -32602},
            failure={"origin": "client", "reason": "invalid_arguments"},
            **bob,
        ),
        event(12.0, "mcp:tools/call", resource=XSS_TOOL, duration_ms=5.0, **bob),
        event(20.0, "mcp:tools/call", resource="search_docs", duration_ms=110.0, response_size=512, **carol),
        event(21.0, "mcp:tools/call", resource="search_docs", duration_ms=130.0, response_size=512, **carol),
        event(22.0, "mcp:tools/call", resource="get_weather", duration_ms=40.0, upstream_ms=30.0, **carol),
        event(
            30.0,
            "mcp:initialize",
            is_error=True,
            error={"type": "Unauthorized", "message": "bad token"},
            failure={"origin": "auth", "reason": "invalid_token"},
        ),
        # three days ago: outside the 24 h window, so legacy_export is an unused tool (and export_report, listed)
        event(
            -3 * 24 * 60,
            "mcp:tools/call",
            resource="legacy_export",
            session_id="sess-old",
            user_id="u-alice",
            client_name="claude-desktop",
        ),
    ]
    other = [event(5.0, "mcp:tools/call", resource=OTHER_TOOL, user_id="u-mallory", client_name="other-client")]
    return {PROJECT: demo, "other": other}


@dataclass
class Served:
    url: str
    store: DuckDBStore

    def panel(self, name: str, last: str = "24h", **params: Any) -> list[dict[str, Any]]:
        return self.store.panel(PROJECT, name, Window.parse(last=last), **params)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    store = DuckDBStore(":memory:")
    for project, events in _events(datetime.now(UTC)).items():
        store.add(project, events)
    app = create_app(store, ApiKeys([(PROJECT, KEY), ("other", OTHER_KEY)]))
    with in_thread(app) as url:
        yield Served(url, store)
    store.close()


@pytest.fixture(scope="module")
def overview(chromium: str, served: Served) -> Page:
    return dump_dom(chromium, f"{served.url}/#key={KEY}&last=24h")


# ---------------------------------------------------------------- the tests


def test_headline_numbers_match_the_store(overview: Page, served: Served) -> None:
    body = overview.body
    assert body is not None and body.attrs.get("data-loaded") == "true", body and body.attrs
    assert "data-error" not in body.attrs

    expected = served.panel("summary")[0]
    assert (expected["events"], expected["failures"], expected["sessions"], expected["users"]) == (16, 3, 4, 3)
    summary = overview.panel("summary")
    for column in ("events", "failures", "tool_calls", "sessions", "users", "clients"):
        cell = summary.find(data_field=column)
        assert number(cell.text) == expected[column], column
        assert cell.attrs["data-value"] == str(expected[column]), column
    assert float(summary.find(data_field="success_rate").attrs["data-value"]) == pytest.approx(expected["success_rate"])
    assert number(summary.field("success_rate")) == pytest.approx(expected["success_rate"] * 100, abs=0.051)


def test_tables_match_the_store(overview: Page, served: Served) -> None:
    tools = [(row.find(data_field="tool").text, number(row.field("calls"))) for row in overview.panel("tools").rows()]
    assert tools == [(row["tool"], row["calls"]) for row in served.panel("tools", limit=15)]
    assert tools[0] == ("search_docs", 5)
    errors = {row.find(data_field="tool").text: row.field("errors") for row in overview.panel("tools").rows()}
    assert errors["get_weather"] == "1" and errors["search_docs"] == "0"

    failures = overview.panel("failures")
    bars = failures.find_all("div", data_origin=True)
    by_origin = {bar.attrs["data-origin"]: number(bar.field("origin_failures")) for bar in bars}
    store_failures = served.panel("failures")
    assert by_origin == {row["origin"]: row["origin_failures"] for row in store_failures}
    assert by_origin == {"upstream": 1, "client": 1, "auth": 1}
    reasons = [(row.attrs["data-origin"], row.field("reason"), number(row.field("failures")))
               for row in failures.rows()]  # fmt: skip
    assert reasons == [(row["origin"], row["reason"], row["failures"]) for row in store_failures]

    clients = [(row.field("client"), number(row.field("events"))) for row in overview.panel("clients").rows()]
    assert clients == [(row["client"], row["events"]) for row in served.panel("clients", limit=10)]
    users = [row.find(data_field="user").text for row in overview.panel("users").rows()]
    assert users == [row["user"] for row in served.panel("users", limit=10)]

    methods = overview.panel("methods")
    assert [row.field("method") for row in methods.rows()] == [row["method"] for row in served.panel("methods")]
    calls_per_list = served.panel("methods")[0]["calls_per_list"]
    assert number(methods.field("calls_per_list")) == pytest.approx(calls_per_list, abs=0.01)

    prompts = overview.panel("prompts").rows()
    assert [(row.field("prompt"), row.field("argument_keys")) for row in prompts] == [("summarize", "length, topic")]
    unused = overview.panel("unused_tools").rows()
    assert [(row.field("tool"), row.field("calls_before")) for row in unused] == [("legacy_export", "1"),
                                                                                  ("export_report", "0")]  # fmt: skip
    time_shown = r"\d{4}-\d\d-\d\d \d\d:\d\d|\d\d:\d\d:\d\d"  # another day's, or today's
    last_called, last_listed = ([row.field(name) for row in unused] for name in ("last_called", "last_listed"))
    assert re.fullmatch(time_shown, last_called[0]) and last_called[1] == "never"
    assert last_listed[0] == "–" and re.fullmatch(time_shown, last_listed[1])  # noqa: RUF001 - the page's placeholder
    shown = [[row.find(data_field=name).attrs["data-value"] or None for name in ("last_called", "last_listed")]
             for row in unused]  # fmt: skip
    stored = served.panel("unused_tools", limit=15)
    assert [[value and datetime.fromisoformat(value) for value in row] for row in shown] == [
        [row["last_called"], row["last_listed"]] for row in stored
    ]

    cost = [(row.field("tool"), row.field("user"), number(row.field("calls"))) for row in overview.panel("cost").rows()]
    assert cost == [(row["tool"], row["user"], row["calls"]) for row in served.panel("cost", limit=15)]

    latency = overview.panel("latency")
    overall = served.panel("latency")[0]
    assert overall["tool"] is None
    assert float(latency.find(data_overall="true").find(data_field="p95_ms").attrs["data-value"]) == overall["p95_ms"]
    assert [row.find(data_field="tool").text for row in latency.rows()] == [
        row["tool"] for row in served.panel("latency", limit=15)[1:]
    ]

    sessions = overview.panel("sessions").rows()
    assert sorted(row.find(data_field="session").attrs["data-value"] for row in sessions) == sorted(
        row["session"] for row in served.panel("sessions", limit=50)
    )
    assert {"sess-alpha", "sess-beta"} <= {row.field("session") for row in sessions}
    states = {row["session"]: row["state"] for row in served.panel("sessions", limit=50)}
    assert {row.find(data_field="session").attrs["data-value"]: row.field("state") for row in sessions} == states
    assert set(states.values()) == {"active", "ended"}  # the seed has sessions of the last minutes and of hours ago
    link = next(row.find("a", data_field="session") for row in sessions if row.field("session") == "sess-alpha")
    assert link.attrs["href"] == "#last=24h&session=sess-alpha"  # the key stays out of links

    chart = overview.panel("timeseries")
    assert chart.find_all("svg") and chart.find_all("rect"), "the events chart has no bars"
    assert {item.attrs["data-series"] for item in chart.find_all(data_series=True)} == {
        row["series"] for row in served.panel("timeseries")
    }


def test_data_is_text_and_scoped_to_the_project(overview: Page) -> None:
    text = overview.body.text
    assert OTHER_TOOL not in text and "u-mallory" not in text
    assert XSS_TOOL in text  # shown as text ...
    assert not overview.root.find_all("img")  # ... never as markup
    assert len(overview.root.find_all("script")) == 1  # only the page's own app.js
    assert XSS_MESSAGE in overview.panel("failures").text


def test_screenshot(chromium: str, served: Served, tmp_path: Path) -> None:
    path = tmp_path / "dashboard.png"
    result = run_chromium(
        chromium, f"{served.url}/#key={KEY}&last=24h",
        f"--screenshot={path}", "--window-size=1400,2600", "--hide-scrollbars", "--force-device-scale-factor=1",
    )  # fmt: skip
    assert path.exists(), result.stderr[-2000:]
    assert path.stat().st_size > 20_000, path.stat().st_size
    if os.environ.get(SCREENSHOT_ENV):
        target = Path(os.environ[SCREENSHOT_ENV])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / "dashboard.png")


def test_session_timeline(chromium: str, served: Served) -> None:
    page = dump_dom(chromium, f"{served.url}/#key={KEY}&last=24h&session=sess-alpha")
    assert page.body.attrs.get("data-loaded") == "true", page.body.attrs
    timeline = page.panel("session")
    rows = timeline.rows()
    expected = served.store.panel(PROJECT, "session", Window.parse(last="24h"), session="sess-alpha")
    assert [row.attrs["data-type"] for row in rows] == [row["type"] for row in expected] == [
        "mcp:initialize", "mcp:tools/list", "mcp:tools/call", "custom:note", "mcp:tools/call", "mcp:prompts/get",
    ]  # fmt: skip
    cells = [row.fields() for row in rows]
    assert [cell.get("intent") for cell in cells] == [
        None, None, "find the refund policy", None, "open a ticket for the refund", None,
    ]  # fmt: skip
    assert cells[3]["message"] == "user asked about refunds"
    assert [cell.get("resource") for cell in cells] == [None, None, "search_docs", None, "create_ticket", "summarize"]

    errors = [row for row in rows if "error" in row.attrs.get("class", "").split()]
    assert len(errors) == 1 and errors[0].fields()["resource"] == "create_ticket"
    assert errors[0].field("error_message") == XSS_MESSAGE
    assert (errors[0].field("failure_origin"), errors[0].field("failure_reason")) == ("upstream", "rate_limited")
    assert not page.root.find_all("img") and "b" not in {node.tag for node in timeline.walk()}
    assert timeline.find(data_field="user").text == "u-alice"
    assert page.root.find("main", id="overview").attrs.get("hidden") is not None


def test_rows_link_to_their_slice(overview: Page) -> None:
    """A tool, client, user, method or origin shown in a row links to the same view filtered by it."""
    links = {
        (a.attrs["data-filter"], a.text.strip()): a.attrs["href"] for a in overview.root.find_all("a", data_filter=True)
    }
    assert links[("tool", "search_docs")] == "#last=24h&tool=search_docs"
    assert links[("client", "cursor")] == "#last=24h&client=cursor"
    assert links[("user", "u-alice")] == "#last=24h&user=u-alice"
    assert links[("origin", "upstream")] == "#last=24h&origin=upstream"
    assert links[("method", "mcp:tools/call")] == "#last=24h&method=mcp%3Atools%2Fcall"
    prefix, _, value = links[("tool", XSS_TOOL)].partition("&tool=")
    assert (prefix, unquote(value)) == ("#last=24h", XSS_TOOL), "a hostile name is a value, not markup"
    assert not overview.find_filter_chips()


def test_filters_in_the_url_slice_every_panel(chromium: str, served: Served) -> None:
    page = dump_dom(chromium, f"{served.url}/#key={KEY}&last=24h&client=cursor,http-agent&tool=search_docs")
    assert page.body.attrs.get("data-loaded") == "true", page.body.attrs
    slice = Slice(client=("cursor", "http-agent"), tool=("search_docs",))
    (expected,) = served.panel("summary", slice=slice)
    assert expected["events"] == 4
    summary = page.panel("summary")
    for column in ("events", "failures", "tool_calls", "sessions", "users", "clients"):
        assert summary.find(data_field=column).attrs["data-value"] == str(expected[column]), column
    tools = [(row.field("tool"), number(row.field("calls"))) for row in page.panel("tools").rows()]
    assert tools == [(row["tool"], row["calls"]) for row in served.panel("tools", slice=slice, limit=15)]
    assert tools == [("search_docs", 4)]
    clients = sorted(row.field("client") for row in page.panel("clients").rows())
    assert clients == ["cursor", "http-agent"]
    sessions = [row.field("session") for row in page.panel("sessions").rows()]
    assert sorted(sessions) == sorted(row["session"] for row in served.panel("sessions", slice=slice, limit=50))
    chips = {
        (chip.attrs["data-filter-chip"], chip.attrs["data-value"]): chip.attrs["href"]
        for chip in page.find_filter_chips()
    }
    assert chips == {
        ("tool", "search_docs"): "#last=24h&client=cursor%2Chttp-agent",
        ("client", "cursor"): "#last=24h&tool=search_docs&client=http-agent",
        ("client", "http-agent"): "#last=24h&tool=search_docs&client=cursor",
    }
    assert page.root.find("a", id="filters-clear").attrs["href"] == "#last=24h"
    ranges = {a.attrs["data-range"]: a.attrs["href"] for a in page.root.find_all("a", data_range=True)}
    assert ranges["7d"] == "#last=7d&tool=search_docs&client=cursor%2Chttp-agent", "a range keeps the filters"


def test_trends_draw_every_latency_line_and_failures_by_origin(overview: Page, served: Served) -> None:
    rows = served.panel("trends")
    trends = overview.panel("trends")
    latency = trends.find("div", data_trend="latency")
    drawn = {node.attrs["data-series"] for node in latency.find("svg").walk() if "data-series" in node.attrs}
    assert drawn == {"p50_ms", "p95_ms", "p99_ms", "own_p95_ms", "upstream_p95_ms"}
    lines = [node for node in latency.find("svg").walk() if node.tag in ("polyline", "circle")]
    assert len({node.attrs["data-series"] for node in lines}) == 5
    errors = trends.find("div", data_trend="errors")
    stacked: dict[str, int] = {}
    for rect in errors.find_all("rect", data_series=True):
        stacked[rect.attrs["data-series"]] = stacked.get(rect.attrs["data-series"], 0) + int(
            rect.find("title").text.rsplit(": ", 1)[1]
        )
    expected = {
        origin: sum(row[f"{origin}_errors"] for row in rows) for origin in ("client", "auth", "upstream", "server")
    }
    assert stacked == {origin: count for origin, count in expected.items() if count}
    assert stacked == {"upstream": 1, "client": 1}, "the auth refusal is an initialize: not a request"


@pytest.mark.parametrize("by", ["tool", "client"])
def test_volume_by_tool_or_by_client(chromium: str, served: Served, by: str) -> None:
    page = dump_dom(chromium, f"{served.url}/#key={KEY}&last=24h&by={by}")
    assert page.body.attrs.get("data-loaded") == "true", page.body.attrs
    legend = {node.attrs["data-series"] for node in page.panel("timeseries").find_all("span", data_series=True)}
    assert legend == {row["series"] for row in served.panel("timeseries", by=by)}
    assert legend == ({"search_docs", "create_ticket", "get_weather", XSS_TOOL} if by == "tool"
                      else {"claude-desktop", "cursor", "http-agent", "(unknown)"})  # fmt: skip
    pressed = [
        button.attrs["data-by"]
        for button in page.root.find_all("button", data_by=True)
        if button.attrs.get("aria-pressed") == "true"
    ]
    assert pressed == [by]


def test_without_a_range_the_dashboard_picks_one_that_holds_the_history(chromium: str, served: Served) -> None:
    """The oldest event is three days old: 7 days, not a day that would leave it out."""
    page = dump_dom(chromium, f"{served.url}/#key={KEY}")
    assert page.body.attrs.get("data-loaded") == "true", page.body.attrs
    (active,) = [
        a.attrs["data-range"] for a in page.root.find_all("a", data_range=True) if a.attrs.get("aria-current") == "true"
    ]
    assert active == "7d"
    assert page.panel("summary").find(data_field="events").attrs["data-value"] == str(
        served.panel("summary", last="7d")[0]["events"]
    )


@pytest.mark.parametrize(("panel", "column", "limit"), [
    ("errors", "code", 15), ("arguments", "argument_keys", 20), ("servers", "server", 10),
    ("new_clients", "client", 10), ("unused_prompts", "prompt", 15), ("intents", "intent", 50), ("slo", "tier", 30),
])  # fmt: skip
def test_the_newer_panels_match_the_store(overview: Page, served: Served, panel: str, column: str, limit: int) -> None:
    shown = [row.find(data_field=column).attrs["data-value"] for row in overview.panel(panel).rows()]
    expected = ["" if row[column] is None else str(row[column]) for row in served.panel(panel, limit=limit)]
    assert shown == expected
    assert shown or panel == "unused_prompts", f"the fixture gives the {panel} panel rows"


def test_an_intent_search_is_a_link(chromium: str, served: Served) -> None:
    page = dump_dom(chromium, f"{served.url}/#key={KEY}&last=24h&q=REFUND")
    shown = [row.find(data_field="intent").attrs["data-value"] for row in page.panel("intents").rows()]
    assert shown == [row["intent"] for row in served.panel("intents", q="REFUND")]
    assert shown == ["open a ticket for the refund", "find the refund policy"]
    nothing = dump_dom(chromium, f"{served.url}/#key={KEY}&last=24h&q=no%20such%20words")
    assert not nothing.panel("intents").rows()
    assert "no such words" in nothing.panel("intents").text


def test_the_timeline_shows_captured_content_folded(chromium: str, served: Served) -> None:
    page = dump_dom(chromium, f"{served.url}/#key={KEY}&last=24h&session=sess-alpha")
    (content,) = page.panel("session").find_all("pre", data_field="content")
    assert json.loads(content.attrs["data-value"]) == {"arguments": {"subject": "refund <b>now</b>"}}
    assert "refund <b>now</b>" in content.text and not page.panel("session").find_all("b"), "text, not markup"
    (custom,) = page.panel("session").find_all("pre", data_field="custom")
    assert json.loads(custom.attrs["data-value"]) == {"message": "user asked about refunds"}


def test_firing_alerts_are_shown_above_the_panels(chromium: str) -> None:
    from mcp_analytics.alerts import Engine

    now = datetime.now(UTC)
    store = DuckDBStore(":memory:")
    store.add(PROJECT, [validated_event(event_id=f"b{i}", type="mcp:tools/call", resource="billing",
                                        timestamp_ns=int((now - timedelta(minutes=2, seconds=i)).timestamp() * 1e9),
                                        is_error=i < 3, failure={"origin": "server", "reason": "tool_error"} if i < 3 else None)
                        for i in range(20)])  # fmt: skip
    engine = Engine(store)
    engine.evaluate()
    try:
        with in_thread(create_app(store, ApiKeys([(PROJECT, KEY)]), alerts=engine, alert_interval=3600)) as url:
            page = dump_dom(chromium, f"{url}/#key={KEY}&last=1h")
    finally:
        store.close()
    assert page.body.attrs.get("data-loaded") == "true", page.body.attrs
    (alert,) = page.root.find("section", id="alerts").find_all("div", data_rule=True)
    assert (alert.attrs["data-rule"], alert.attrs["data-subject"]) == ("error_ratio", "billing")
    assert alert.field("text") == "billing: 15.0% of calls failed (server or upstream) over 15 minutes"


def test_wrong_key_shows_the_error_and_no_data(chromium: str, served: Served) -> None:
    page = dump_dom(chromium, f"{served.url}/#key=not-a-key&last=24h")
    error = page.body.attrs.get("data-error", "")
    assert "401" in error, page.body.attrs
    assert page.body.attrs.get("data-loaded") != "true"
    banner = page.root.find(id="banner")
    assert "hidden" not in banner.attrs and "401" in banner.text
    assert not page.root.find_all("tr", data_row=True)
    assert not page.panel("summary").find_all(data_field=True)
    assert "search_docs" not in page.body.text
    assert "hidden" not in page.root.find(id="keyform").attrs

"""The ClickHouse store: the same answers as the DuckDB store for the same events, on a real ClickHouse server
(Debian's ``clickhouse-server``, 18.16) and on the current engine in-process (``chdb``), retries stored once
even through two store instances, alert state in the database, deletion, schema versions, ``serve --store``.

Percentiles are exact on both engines (linear interpolation between the two nearest values, DuckDB's
``quantile_cont``); a rounded figure may differ by one unit of its last digit (a value such as 30.1425 lies on
either side of the tie depending on the engine's float arithmetic), so floats are compared to that unit.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, SpanKind

pytest.importorskip("clickhouse_driver", reason="the clickhouse extra is not installed")

from clickhouse_driver import Client
from clickhouse_driver import errors as driver_errors

from benchmarks.analytics import Population
from mcp_analytics import clickhouse_store
from mcp_analytics.alerts import Rules
from mcp_analytics.api import RETRY_AFTER
from mcp_analytics.clickhouse_store import SCHEMA_VERSION, Address, ClickHouseStore
from mcp_analytics.duckdb_store import DuckDBStore, SchemaTooNew
from mcp_analytics.models import Event
from mcp_analytics.store import PANELS, Slice, Slos, StoreUnavailable, Window
from opentelemetry.exporter.mcp_analytics import MCPAnalyticsExporter
from tests import clickhouse_server, test_alerts, test_analytics_store
from tests.processes import ApiServer, free_port
from tests.test_analytics_store import WHOLE_DAY, at, event, moment

END = datetime(2026, 11, 20, 12, tzinfo=UTC)
WINDOWS = {"6h": Window(END - timedelta(hours=6), END), "all": Window.parse(end=END, last="all")}
SLICES = {
    "whole": Slice(),
    "two clients, two tools": Slice(client=("cursor-vscode", "claude-ai"), tool=("search_docs", "get_ticket")),
    "errors by origin": Slice(origin=("client", "upstream")),
}


def installed() -> None:
    """Skips where clickhouse-server is not installed, unless CI requires it."""
    if clickhouse_server.binary() is None:
        if os.environ.get(clickhouse_server.REQUIRE) == "1":
            pytest.fail(f"clickhouse-server is not installed and {clickhouse_server.REQUIRE}=1")
        pytest.skip("clickhouse-server is not installed (Debian: apt-get install clickhouse-server)")


@pytest.fixture(scope="session")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real clickhouse-server for the whole run: skipped where it is not installed, unless CI requires it."""
    installed()
    with clickhouse_server.running(tmp_path_factory.mktemp("clickhouse")) as address:
        yield address


@pytest.fixture
def make(clickhouse: tuple[str, int]) -> Iterator[Callable[..., ClickHouseStore]]:
    """Stores on a fresh database of the server; ``make(database=...)`` opens another instance on the same one."""
    host, port = clickhouse
    stores: list[ClickHouseStore] = []
    fresh = f"t_{uuid.uuid4().hex[:12]}"

    def make(database: str = fresh, **options: Any) -> ClickHouseStore:
        stores.append(ClickHouseStore(f"clickhouse://{host}:{port}/{database}", **options))
        return stores[-1]

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make: Callable[..., ClickHouseStore]) -> ClickHouseStore:
    return make()


@pytest.fixture(params=["clickhouse 18.16", "chdb"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClickHouseStore]:
    """The store on the real server, and on the current engine in-process (``chdb``, where installed)."""
    if request.param == "chdb":
        session_module = pytest.importorskip(
            "chdb.session", reason="chdb (the current engine in-process) is not installed"
        )
        from tests.chdb_client import ChdbStore

        session = session_module.Session(str(tmp_path / "chdb"))
        store: ClickHouseStore = ChdbStore(session, "parity")
        yield store
        store.close()
        session.close()
    else:
        yield request.getfixturevalue("store")


def population() -> list[Event]:
    """Two days of the benchmark's traffic: sessions, stateless bursts of users, of callers and of anonymous
    clients, tools, prompts, resources, custom events, errors of every origin, listings."""
    events = [one for chunk in Population(7, END, days=2).chunks(3000, 1000) for one in chunk]
    for one in events:  # half the anonymous stateless requests come from a known caller (stateless HTTP)
        if one.get("session_id") is None and one.get("user_id") is None and one["event_id"][0] < "8":
            one["caller_id"] = f"caller-{one.get('client_name')}"
    return events


LAST_DIGIT = {"avg_response_bytes": 0.1, "est_cost": 1e-6}
"""One unit of a rounded figure's last digit: milliseconds have 3 decimals, shares and rates 4."""


def same(key: str, a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        unit = 1e-3 if key.endswith("_ms") else LAST_DIGIT.get(key, 1e-4)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=unit * 1.001)
    return a == b and (type(a) is type(b) or isinstance(a, int | float))


def assert_same_rows(name: str, expected: list[dict[str, Any]], found: list[dict[str, Any]]) -> None:
    assert len(found) == len(expected), f"{name}: {len(found)} rows, DuckDB {len(expected)}"
    for index, (want, got) in enumerate(zip(expected, found, strict=True)):
        assert list(got) == list(want), f"{name}: columns"
        differ = {k: (want[k], got[k]) for k in want if not same(k, want[k], got[k])}
        assert not differ, f"{name} row {index}: {differ}"


def second_copies(store: ClickHouseStore, events: list[Event]) -> None:
    """``events`` stored again as an instance racing another with the same batch does (neither finds the other's
    copy): inserted, then their hours marked."""
    with store._client() as client:
        client.execute(f"INSERT INTO events (project, {', '.join(name for name, _ in clickhouse_store._COLUMNS)}) VALUES",
                       clickhouse_store._columns("p", events), columnar=True)  # fmt: skip
    store._mark("p", [event["timestamp_ns"] // 1000 for event in events])


def hours_of(events: list[Event]) -> list[int]:
    return sorted({event["timestamp_ns"] // 3_600_000_000_000 * 3600 for event in events})


def test_every_panel_answers_as_duckdb_does_for_the_same_events(engine):
    """As stored (every hour read ``FINAL``); rolled (every hour found free of second copies: read as it is); with
    second copies of a few events of three hours (those hours ``FINAL`` again, the others as they are)."""
    events = population()
    duck = DuckDBStore()
    try:
        duck.add("p", events)
        assert engine.add("p", events).accepted == len(events)
        assert engine._doubled("p", (None, None)) == hours_of(events)
        assert_every_panel_answers_as(duck, engine, events)
        engine.roll()  # (the rolled-up panels' reads may have rolled them already)
        assert engine._doubled("p", (None, None)) == []
        assert_every_panel_answers_as(duck, engine, events)
        copied = [event for event in events if event["event_id"].endswith("7")][:40]
        second_copies(engine, copied)
        assert engine._doubled("p", (None, None)) == hours_of(copied) and len(hours_of(copied)) >= 3
        with engine._client() as client:
            assert client.execute("SELECT count() FROM events")[0][0] == len(events) + len(copied)
        assert_every_panel_answers_as(duck, engine, events)
        time.sleep(1 - time.time() % 1 + 0.01)  # after the second of the copies' marks
        engine.roll()
        assert engine._doubled("p", (None, None)) == hours_of(copied), "the roll found the copies: still read FINAL"
        assert_every_panel_answers_as(duck, engine, events)
    finally:
        duck.close()


def assert_every_panel_answers_as(duck: DuckDBStore, engine: ClickHouseStore, events: list[Event]) -> None:
    compared = 0
    for (window_name, window), (slice_name, slice) in itertools.product(WINDOWS.items(), SLICES.items()):
        for name in PANELS:
            if name == "session":
                continue
            expected = duck.panel("p", name, window, slice)
            assert_same_rows(f"{name} {window_name} {slice_name}", expected, engine.panel("p", name, window, slice))
            compared += bool(expected)
    sessions = duck.panel("p", "sessions", WINDOWS["all"], limit=10_000)
    assert {row["grouping"] for row in sessions} == {
        "session id",
        "user + client",
        "caller + client",
        "single event",
    }
    for grouping, rows in itertools.groupby(sorted(sessions, key=lambda r: r["grouping"]), lambda r: r["grouping"]):
        for row in list(rows)[:15]:  # timelines of each kind of session (a key of each form)
            for window in WINDOWS.values():
                timeline = duck.panel("p", "session", window, session=row["session"])
                assert engine.panel("p", "session", window, session=row["session"]) == timeline, (grouping, row)
    assert compared == 112, "112 of the 126 answers have rows (the others are empty on both engines)"
    assert engine.panel("p", "extent", WINDOWS["all"])[0]["events"] == len(events)
    assert engine.projects() == ["p"]


@pytest.mark.parametrize(
    "test",
    [
        "test_anonymous_stateless_events_are_sessions_of_their_own_and_session_ids_group_the_rest",
        "test_anonymous_stateless_events_of_one_caller_and_client_are_one_session",
        "test_a_batch_stored_twice_is_counted_once",
        "test_the_same_event_id_in_two_projects_is_two_events",
        "test_panels_answer_with_exact_numbers",
        "test_trends_per_bucket_and_volume_by_tool_and_client",
        "test_percentiles_are_within_one_percent_of_the_exact_ones_and_exact_for_a_value_alone",
        "test_extent_is_the_whole_history_whatever_the_window",
        "test_a_session_timeline_is_in_order_with_intents_errors_and_custom_events",
        "test_the_window_bounds_every_panel",
        "test_unused_tools_are_those_listed_or_called_before_the_window_and_not_called_in_it",
        "test_every_panel_answers_on_an_empty_store",
        "test_time_buckets_fit_the_window_and_all_starts_at_the_first_event",
        "test_all_starts_at_the_first_event_the_panel_reads",
        "test_the_newest_intents_are_the_window_s_newest_whatever_the_limit",
        "test_a_failure_s_example_is_its_newest_message_ties_by_event_id",
        "test_delete_by_age_and_by_user",
        "test_the_panels_of_codes_shapes_servers_new_clients_unused_prompts_and_intents",
    ],
)
def test_the_duckdb_store_s_exact_expectations_hold(store, test):
    """The DuckDB store's own tests (their exact numbers, sessions, timelines, deletion), run on ClickHouse."""
    getattr(test_analytics_store, test)(store)


@pytest.mark.parametrize("seed", [0, 3])
def test_stateless_sessions_whatever_the_arrival_order(store, seed):
    test_analytics_store.test_stateless_events_group_by_user_client_and_30_minutes_whatever_the_order(store, seed)


def test_the_sessions_panel_reads_the_window_s_last_hour_first_and_more_when_a_run_began_before_it(engine, monkeypatch):
    """Four sessions that begin in the window's last half hour, one (``long``) with an event every 20 minutes since
    the window's start, and a stateless user's run every two hours. For ``limit`` 4 the newest (the four) are read
    from the window's last hour alone; for 5, ``long`` is among that hour's newest, begun before it, so the last 4
    hours are read, where the newest 5 all began after their first half hour; for 10 (``long`` among them), the whole
    window. Each answer is DuckDB's for the same events."""
    events = [event(f"long{i}", session_id="long", timestamp_ns=at(0, 5) + i * 20 * 60 * 10**9) for i in range(35)]
    events += [event(f"s{i}-{j}", session_id=f"s{i}", timestamp_ns=at(11, 15 + 5 * i + j)) for i in range(4)
               for j in range(2)]  # fmt: skip
    events += [event(f"u{hour}", user_id="u", client_name="Zed", timestamp_ns=at(hour, 0)) for hour in range(0, 11, 2)]
    window = Window(moment(0), moment(11, 40))
    duck = DuckDBStore()
    for store in (duck, engine):
        store.add("p", events)
    tried: list[timedelta] = []
    read = engine._panel
    monkeypatch.setattr(engine, "_panel", lambda project, name, window, *args, **kwargs: tried.append(
        window.end - window.start) or read(project, name, window, *args, **kwargs))  # fmt: skip
    hour = timedelta(hours=1)
    for limit, spans in ((4, [hour]), (5, [hour, 4 * hour]), (10, [hour, 4 * hour, window.end - window.start])):
        tried.clear()
        answer = engine.panel("p", "sessions", window, limit=limit)
        assert answer == duck.panel("p", "sessions", window, limit=limit) and len(answer) == limit, limit
        assert tried == spans, limit
        assert ("long" in {row["session"] for row in answer}) == (limit == 10)
    duck.close()


def test_a_stateful_session_ends_after_the_inactivity_timeout(make):
    duck = DuckDBStore(session_timeout=timedelta(minutes=10))
    click = make(session_timeout=timedelta(minutes=10))
    events = [event(f"k{i}", session_id="s", timestamp_ns=test_analytics_store.at(9, minute)) for i, minute in
              enumerate([0, 5, 30, 31, 50])]  # fmt: skip
    try:
        for store in (duck, click):
            store.add("p", events)
        rows = duck.panel("p", "sessions", WHOLE_DAY)
        assert [row["events"] for row in rows] == [1, 2, 2]
        assert click.panel("p", "sessions", WHOLE_DAY) == rows
        for row in rows:
            assert click.panel("p", "session", WHOLE_DAY, session=row["session"]) == duck.panel(
                "p", "session", WHOLE_DAY, session=row["session"]
            )
    finally:
        duck.close()


@pytest.mark.parametrize(
    "test",
    [
        "test_each_rule_finds_its_deviation_and_nothing_else",
        "test_thresholds_change_what_fires",
        "test_a_volume_spike_counts_the_hours_to_their_edges",
        "test_auth_refusals_of_no_reason_are_one_subject",
        "test_an_episode_is_sent_once_when_it_fires_and_once_when_it_resolves",
        "test_a_failing_webhook_is_retried_until_it_takes_the_alert",
        "test_a_restart_sends_nothing_again_and_a_new_webhook_gets_no_past",
    ],
)
def test_the_alerts_behave_as_on_duckdb(make, test):
    """The alert tests of the DuckDB store, on ClickHouse: every rule, episodes, deliveries and their retries."""
    store = make(slos=Slos.parse({"tools": {"report": "light", "search": "heavy", "fetch": "heavy",
                                            "billing": "heavy", "delete_repo": "heavy"}}))  # fmt: skip
    store.add("p", test_alerts.week_with_a_spike_of_each_kind())
    getattr(test_alerts, test)(store)


@pytest.mark.parametrize(
    "test",
    [
        "test_each_rule_finds_its_deviation_and_nothing_else",
        "test_a_volume_spike_counts_the_hours_to_their_edges",
        "test_auth_refusals_of_no_reason_are_one_subject",
    ],
)
@pytest.mark.parametrize("rolled", [True, False], ids=["rolled", "raw"])
def test_the_rules_find_on_either_engine_what_duckdb_finds(engine, test, rolled):
    """The rules' statements on the current engine too (``chdb``), read from the rollups and from the raw events."""
    engine.slos = Slos.parse({"tools": {"report": "light", "search": "heavy", "fetch": "heavy", "billing": "heavy",
                                        "delete_repo": "heavy"}})  # fmt: skip
    engine.add("p", test_alerts.week_with_a_spike_of_each_kind())
    time.sleep(1 - time.time() % 1 + 0.01)  # a roll in the second of the hours' marks leaves them dirty
    assert engine.roll("p") > 0
    engine.rollups = rolled
    getattr(test_alerts, test)(engine)


def test_the_alert_rules_find_from_the_rollups_what_they_find_from_the_events(make):
    """``latency_spike``'s usual p95 (the 24 hours before the last 15 minutes), ``destructive_new_client``'s first
    sightings and destructive tools, and ``auth_spike``'s refusals (from their copies, ``rollup_failed``) read the clean
    hours from the rollups: every rule finds what it finds from the raw events, exactly. Shown to be read from the
    rollups: with the listing of two days ago and the day's earlier refusals deleted behind the store's back, the raw
    rows find no tool of that listing destructive and a lower usual."""
    store = make(slos=Slos.parse({"tools": {"report": "light", "search": "heavy", "fetch": "heavy",
                                            "billing": "heavy", "delete_repo": "heavy"}}))  # fmt: skip
    refused = {"resource": "admin", "is_error": True, "failure": {"origin": "auth", "reason": "expired_token"}}
    earlier = [test_alerts.at(test_alerts.NOW - timedelta(hours=8, seconds=10 * i), **refused) for i in range(200)]
    listed = test_alerts.at(
        test_alerts.NOW - timedelta(minutes=30),
        type="mcp:tools/list",
        tools_listed=["wipe"],
        destructive_tools=["wipe"],
    )
    newbie = [test_alerts.at(test_alerts.NOW - timedelta(minutes=20), resource=tool, client_name="newbie")
              for tool in ("wipe", "search")]  # fmt: skip
    store.add("p", test_alerts.week_with_a_spike_of_each_kind() + earlier + newbie)
    time.sleep(1 - time.time() % 1 + 0.01)  # a roll in the second of the hours' marks leaves them dirty
    assert store.roll("p") > 0
    store.add("p", [listed])  # its hour dirty: read from the events
    rolled = store.deviations("p", test_alerts.NOW, Rules())
    usual = Window(test_alerts.NOW - timedelta(hours=24, minutes=15), test_alerts.NOW - timedelta(minutes=15))
    read = store._read("p", "slo", usual, Slice())
    assert read.rolled and len(read.values["clean_hours"]) == 7, "the usual's hours with events, from the rollups"
    found = {(alert.rule, alert.subject) for alert in rolled}
    assert found == test_alerts.EXPECTED | {("destructive_new_client", "wipe by newbie")}, "search is not destructive"
    auth = [(alert.observed, alert.threshold) for alert in rolled if alert.rule == "auth_spike"]
    assert auth == [(12.0, 3 * 220 / 96)], "12 refusals in 15 minutes; 220 over the day before, 3x their 15 minutes'"
    store.rollups = False
    assert store.deviations("p", test_alerts.NOW, Rules()) == rolled
    with store._client() as client:
        client.execute(
            "ALTER TABLE events DELETE WHERE (type = 'mcp:tools/list' OR resource = 'admin') AND at < toDateTime(%(t)s)",
            {"t": int((test_alerts.NOW - timedelta(hours=7)).timestamp())},
        )
        ClickHouseStore._wait_for_mutations(client)
    raw = store.deviations("p", test_alerts.NOW, Rules())
    assert found - {(alert.rule, alert.subject) for alert in raw} == {
        ("destructive_new_client", "delete_repo by newbie")
    }
    assert [(alert.observed, alert.threshold) for alert in raw if alert.rule == "auth_spike"] == [(12.0, 3.0)]
    store.rollups = True
    assert store.deviations("p", test_alerts.NOW, Rules()) == rolled


def test_one_evaluation_of_the_rules_reads_the_hours_state_once_and_anew_after_a_roll(make, monkeypatch):
    """The rules read a dozen windows, each from its clean hours: one evaluation reads the state of the project's hours
    once (``_holding``), and once more after one of its reads rolled up many dirty hours, which its later reads then
    find clean: one roll, not one per read. Each finds what the raw events hold."""
    store = make(slos=Slos.parse({"tools": {"report": "light", "search": "heavy"}}))
    store.add("p", test_alerts.week_with_a_spike_of_each_kind())
    time.sleep(1 - time.time() % 1 + 0.01)  # a roll in the second of the hours' marks leaves them dirty
    states, rolls, rolling = [], [], []  # the reads of the hours' state but a roll's own
    run, roll = ClickHouseStore._run, ClickHouseStore.roll
    state = clickhouse_store._STATE.split("FROM (")[0]

    def counted(self: ClickHouseStore, sql: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        states.extend([sql] * (sql.startswith(state) and not rolling))
        return run(self, sql, values)

    def rolled(self: ClickHouseStore, *args: Any) -> int:
        rolls.append(args)
        rolling.append(True)
        try:
            return roll(self, *args)
        finally:
            rolling.pop()

    monkeypatch.setattr(ClickHouseStore, "_run", counted)
    monkeypatch.setattr(ClickHouseStore, "roll", rolled)
    first = store.deviations("p", test_alerts.NOW, Rules())
    assert rolls == [("p",)], "the first read with many dirty hours rolled them; the later reads found them clean"
    assert len(states) == 1, "held once; the roll reads them anew itself"
    states.clear()
    assert store.deviations("p", test_alerts.NOW, Rules()) == first
    assert len(states) == 1 and len(rolls) == 1
    assert {(alert.rule, alert.subject) for alert in first} == test_alerts.EXPECTED
    store.rollups = False
    assert store.deviations("p", test_alerts.NOW, Rules()) == first


def test_a_panel_reads_the_state_of_its_hours_once(make, monkeypatch):
    """Its window's, its scope's and, for ``slo``, the 7 days' that set the tiers: one read of the hours' state,
    whatever the panel or slice; the answers are those of the raw events."""
    store = make(slos=Slos.parse({"tools": {"report": "light", "search": "heavy"}}))
    store.add("p", test_alerts.week_with_a_spike_of_each_kind())
    time.sleep(1 - time.time() % 1 + 0.01)  # a roll in the second of the hours' marks leaves them dirty
    assert store.roll("p") > 0
    states = []
    run, state = ClickHouseStore._run, clickhouse_store._STATE.split("FROM (")[0]
    monkeypatch.setattr(ClickHouseStore, "_run", lambda self, sql, values: states.extend([sql] * sql.startswith(state))
                        or run(self, sql, values))  # fmt: skip
    day = Window(test_alerts.NOW - timedelta(hours=24), test_alerts.NOW)
    for name, slice in [("slo", Slice()), ("latency", Slice()), ("users", Slice(origin=("auth",))), ("tools", Slice())]:
        states.clear()
        rolled = store.panel("p", name, day, slice)
        assert len(states) == 1, name
        store.rollups = False
        assert store.panel("p", name, day, slice) == rolled, name
        store.rollups = True


def test_slo_tiers_and_attainment_over_a_day_and_over_the_7_days_that_set_the_tiers(make, monkeypatch):
    """The DuckDB store's expectations; over the 7 days up to the window's end, the window's own read gives the
    tiers (no read of those 7 days beside it)."""
    weeks = []
    read = ClickHouseStore._week_p95
    monkeypatch.setattr(ClickHouseStore, "_week_p95", lambda self, *args: weeks.append(args[1]) or read(self, *args))
    test_analytics_store.assert_slo_tiers_attainment_and_error_budget(make(slos=test_analytics_store.SLO_TIERS))
    assert weeks == [Window(WHOLE_DAY.end - timedelta(days=7), WHOLE_DAY.end)], "the day's tiers, read once"


def test_the_slo_burn_rule_reads_the_week_s_p95_once_for_both_its_windows(make, monkeypatch):
    """Its hour and its 5 minutes end at the evaluation's instant: their tiers come from the same 7 days' p95s, read
    once; it finds what it found reading them twice."""
    store = make(slos=Slos.parse({"tools": {"report": "light", "search": "heavy"}}))
    store.add("p", test_alerts.week_with_a_spike_of_each_kind())
    weeks = []
    read = ClickHouseStore._week_p95
    monkeypatch.setattr(ClickHouseStore, "_week_p95", lambda self, *args: weeks.append(args[1]) or read(self, *args))
    found = [alert for alert in store.deviations("p", test_alerts.NOW, Rules()) if alert.rule == "slo_burn"]
    assert [(alert.subject, alert.observed) for alert in found] == [("report", round((33 / 43) / 0.05, 2))]
    assert weeks == [Window(test_alerts.NOW - timedelta(days=7), test_alerts.NOW)]
    store.panel("p", "slo", Window(test_alerts.NOW - timedelta(hours=1), test_alerts.NOW))
    assert len(weeks) == 2, "a panel reads its own"


def test_the_rules_reads_run_two_at_a_time_each_with_the_caller_s_hold_on_the_hours():
    """``_together``: the reads on the store's reader threads, ``READERS`` at once (each waits for the other at a
    barrier, which a read alone would wait at until it broke), each seeing the hold of the thread that called it, the
    answers in the reads' order; a reader's own ``_together`` runs its reads itself (no reader waits for another)."""
    store = ClickHouseStore("clickhouse://127.0.0.1:9000/never", connect=False)
    held = object()
    store._local.held = held
    barrier = threading.Barrier(clickhouse_store.READERS, timeout=30)

    def read(number: int) -> tuple[int, bool, str, list[str]]:
        barrier.wait()
        inner = store._together(lambda: threading.current_thread().name, lambda: threading.current_thread().name)
        return number, store._local.held is held, threading.current_thread().name, inner

    answers = store._together(*(lambda number=number: read(number) for number in range(4)))
    assert [number for number, *_ in answers] == [0, 1, 2, 3]
    assert all(seen for _, seen, _, _ in answers)
    assert {name for _, _, name, _ in answers} == {f"mcp-analytics-reader_{i}" for i in range(2)}
    assert all(inner == [name, name] for _, _, name, inner in answers)
    assert store._local.held is held, "the caller's hold stays its own"
    store.close()


def test_alert_state_is_in_the_database_not_in_the_process(make):
    first = make()
    first.add("p", test_alerts.week_with_a_spike_of_each_kind())
    first.record_alerts("p", first.deviations("p", test_alerts.NOW, Rules()), test_alerts.NOW)
    second = make(database=first.address.database)  # another API instance on the same database
    assert {(r["rule"], r["subject"]) for r in second.alerts("p", "firing")} == test_alerts.EXPECTED - {
        ("slo_burn", "report")  # the default SLO tiers here: report's p95 is within "medium"
    }
    second.record_alerts("p", [], test_alerts.NOW + timedelta(days=2))  # resolved by the other instance
    assert first.alerts("p", "firing") == []
    (transition,) = {t.state for _, t, _ in first.undelivered(["http://127.0.0.1:9/hook"])} - {"firing"}
    assert transition == "resolved"


def test_the_episodes_one_evaluation_starts_have_distinct_ids(make, monkeypatch):
    from mcp_analytics import clickhouse_store

    monkeypatch.setattr(clickhouse_store.random, "randrange", lambda _: 1023)  # the worst draw
    store = make()
    store.add("p", test_alerts.week_with_a_spike_of_each_kind())
    found = store.deviations("p", test_alerts.NOW, Rules())
    store.record_alerts("p", found, test_alerts.NOW)
    assert len(store.alerts("p", "firing")) == len(found) >= 5


def test_a_retried_batch_is_stored_once_even_through_two_instances(make):
    batch = [event(f"e{i}", timestamp_ns=test_analytics_store.at(9, i), user_id="alice") for i in range(50)]
    one = make()
    two = make(database=one.address.database)  # both opened on an empty table: neither filter knows the other's
    assert one.add("p", batch).accepted == 50
    time.sleep(1 - time.time() % 1 + 0.01)  # a roll in the second of the hour's last mark leaves it unchecked
    assert one.roll() == 1 and one._doubled("p", (None, None)) == [], "one copy of each: the hour is read as it is"
    assert two.add("p", batch).accepted == 50, "instance two could not know: it stored the batch again..."
    with one._client() as client:
        assert client.execute("SELECT count() FROM events")[0][0] == 100
    hour = [batch[0]["timestamp_ns"] // 3_600_000_000_000 * 3600]

    def read_once() -> None:
        assert one._doubled("p", (None, None)) == hour, "...the hour is read FINAL..."
        summary = two.panel("p", "summary", WHOLE_DAY)[0]
        assert (summary["events"], summary["users"], summary["sessions"]) == (50, 1, 1), "...and counts it once"
        assert one.panel("p", "users", WHOLE_DAY)[0]["events"] == 50
        assert one.panel("p", "latency", WHOLE_DAY)[0]["calls"] == 50

    read_once()  # its insert marked the hour
    time.sleep(1 - time.time() % 1 + 0.01)
    assert one.roll() == 1, "a roll after the mark's second checks the hour..."
    read_once()  # ...and finds the second copies
    assert one.add("p", batch[:10] + batch[-5:]).duplicates == 15, "found in the table: not stored a third time"
    third = make(database=one.address.database)  # a restarted instance looks its candidates up in the table
    result = third.add("p", batch[20:30])
    assert (result.accepted, result.duplicates) == (0, 10)
    assert third.delete("p", user_id="alice") == 50, "deletion counts (and deletes) every copy as one event"
    assert third.panel("p", "summary", WHOLE_DAY)[0]["events"] == 0


def test_the_schema_is_versioned_created_once_and_a_newer_database_is_refused(make):
    store = make()
    assert store.schema_version == SCHEMA_VERSION
    again = make(database=store.address.database)
    assert again.schema_version == SCHEMA_VERSION
    with store._client() as client:
        assert client.execute("SELECT count() FROM schema_version")[0][0] == SCHEMA_VERSION
        engine = client.execute(
            "SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = 'events'"
        )
        assert engine == [("ReplacingMergeTree",)]
        client.execute("INSERT INTO schema_version SELECT %(v)s, now()", {"v": SCHEMA_VERSION + 1})
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}"):
        make(database=store.address.database)


def test_the_address_takes_user_and_password_from_the_url_or_the_environment(monkeypatch):
    monkeypatch.delenv("MCP_ANALYTICS_CLICKHOUSE_USER", raising=False)
    monkeypatch.delenv("MCP_ANALYTICS_CLICKHOUSE_PASSWORD", raising=False)
    plain = Address.parse("clickhouse://127.0.0.1/analytics")
    assert (plain.host, plain.port, plain.database, plain.user, plain.password) == (
        "127.0.0.1", 9000, "analytics", "default", "")  # fmt: skip
    monkeypatch.setenv("MCP_ANALYTICS_CLICKHOUSE_USER", "writer")
    monkeypatch.setenv("MCP_ANALYTICS_CLICKHOUSE_PASSWORD", "s3cret")
    from_env = Address.parse("clickhouse://127.0.0.1:9440/analytics")
    assert (from_env.port, from_env.user, from_env.password) == (9440, "writer", "s3cret")
    given = Address.parse("clickhouse://me:p%40ss@127.0.0.1:9000/analytics")
    assert (given.user, given.password) == ("me", "p@ss")
    assert str(given) == "clickhouse://127.0.0.1:9000/analytics", "never prints the password"
    for wrong in ("clickhouse://127.0.0.1:9000/", "http://127.0.0.1/db", "clickhouse://127.0.0.1/db;drop"):
        with pytest.raises(ValueError, match="clickhouse://"):
            Address.parse(wrong)


def test_serve_takes_a_store_url(tmp_path, monkeypatch, capsys):
    from mcp_analytics import cli

    assert cli._duckdb_path("duckdb:///data/events.duckdb") == "data/events.duckdb"
    assert cli._duckdb_path("duckdb:////var/lib/events.duckdb") == "/var/lib/events.duckdb"
    assert cli._duckdb_path("plain/file.duckdb") == "plain/file.duckdb"
    assert cli.main(["serve", "--store", "postgres://127.0.0.1/db", "--api-key", "p=k"]) == 2
    assert "duckdb:///path/file.duckdb or clickhouse://host:port/database" in capsys.readouterr().err


def test_a_user_s_deletion_keeps_the_events_of_no_user(engine):
    """ClickHouse 18.16 deletes the rows a mutation's condition is NULL for: ``user_id = 'bob'`` would delete every
    event without a user too."""
    start = test_analytics_store.at(9, 0)
    engine.add("p", [event(f"u{i}", timestamp_ns=start + i * 10**9, user_id=("bob", "alice", None)[i % 3])
                     for i in range(30)])  # fmt: skip
    assert engine.delete("p", user_id="bob") == 10
    assert engine.panel("p", "summary", WHOLE_DAY)[0]["events"] == 20


def test_retention_drops_whole_days_and_deletes_the_rest_of_the_cutoff_day(store):
    day = 86_400 * 10**9
    store.add("p", [event(f"d{i}", timestamp_ns=test_analytics_store.at(9, 0) - i * day) for i in range(4)])
    store.add("q", [event("late", timestamp_ns=test_analytics_store.at(23, 0) - 3 * day)])
    with store._client() as client:
        days = client.execute("SELECT count(DISTINCT partition) FROM system.parts WHERE database = currentDatabase()"
                              " AND table = 'events' AND active")[0][0]  # fmt: skip
        assert days == 4
        assert store.delete(None, before=test_analytics_store.moment(12) - timedelta(days=2)) == 2 + 1
        parts = client.execute("SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase()"
                               " AND table = 'events' AND active ORDER BY partition")  # fmt: skip
    assert parts == [("20261118",), ("20261119",), ("20261120",)], "the day before the cutoff's is dropped whole"
    everything = Window.parse(end=test_analytics_store.moment(23), last="all")
    assert store.panel("p", "extent", everything)[0]["events"] == 2
    assert store.panel("q", "extent", everything)[0]["events"] == 0


def test_two_api_instances_on_one_database_store_each_event_once(clickhouse, tmp_path):
    """The same batches sent to two ``serve --store clickhouse://`` processes at once, three times each: every
    panel of either instance counts each event once; the user comes from the environment, not the URL; one
    instance evaluates alerts, the other (``--no-alert-evaluation``) only lists them."""
    host, port = clickhouse
    database = f"fleet_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MCP_ANALYTICS_CLICKHOUSE_USER": "default", "MCP_ANALYTICS_CLICKHOUSE_PASSWORD": ""}
    instances = [
        ApiServer("--store", f"clickhouse://{host}:{port}/{database}", "--api-key", "fleet=fleet-key",
                  *alerts, log=tmp_path / f"api-{index}.log", env=env)
        for index, alerts in enumerate([("--alert-interval", "3600"), ("--no-alert-evaluation",)])
    ]  # fmt: skip
    try:
        for instance in instances:  # started together, as a fleet is
            instance.launch()
        for instance in instances:
            instance.answering(timeout=60)
        assert f"(store clickhouse://{host}:{port}/{database}, " in instances[0].log.read_text()
        now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
        batches = [
            [dict(event(f"b{b}-{i}", session_id=f"s{b}", user_id=f"u{i % 3}",
                        timestamp_ns=int((now + timedelta(seconds=b * 60 + i)).timestamp() * 1e9)))
             for i in range(40)]
            for b in range(5)
        ]  # fmt: skip
        headers = {"Authorization": "Bearer fleet-key"}

        def send(url: str) -> None:
            for _ in range(3):
                for batch in batches:
                    answer = httpx.post(f"{url}/v1/events", json={"events": batch}, headers=headers, timeout=30)
                    assert answer.status_code == 200, answer.text

        senders = [threading.Thread(target=send, args=(instance.url,)) for instance in instances]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        for instance in instances:
            (summary,) = httpx.get(f"{instance.url}/v1/panels/summary", params={"last": "24h"},
                                   headers=headers, timeout=30).json()["rows"]  # fmt: skip
            assert (summary["events"], summary["sessions"], summary["users"]) == (200, 5, 3)
            users = httpx.get(f"{instance.url}/v1/panels/users", params={"last": "24h"},
                              headers=headers, timeout=30).json()["rows"]  # fmt: skip
            assert sorted((row["user"], row["events"]) for row in users) == [("u0", 70), ("u1", 65), ("u2", 65)]
        evaluated = [httpx.get(f"{instance.url}/v1/alerts", headers=headers, timeout=30).json()["evaluated_here"]
                     for instance in instances]  # fmt: skip
        assert evaluated == [True, False]
    finally:
        for instance in instances:
            instance.stop()


def server_spans(first: int, count: int) -> list[ReadableSpan]:
    """``count`` MCP tool calls of the last minutes as the instrumentation records them (SERVER spans)."""
    start = time.time_ns() - 600 * 10**9
    return [
        ReadableSpan(name="tools/call search", context=SpanContext(0xABC, 0x1000 + i, False), kind=SpanKind.SERVER,
                     attributes={"mcp.method.name": "tools/call", "gen_ai.tool.name": "search"},
                     start_time=start + i * 10**9, end_time=start + i * 10**9 + 5 * 10**6)
        for i in range(first, first + count)
    ]  # fmt: skip


def test_while_clickhouse_is_down_the_api_answers_503_with_retry_after_and_the_retries_are_stored_once(tmp_path):
    """A real ClickHouse stopped under a running ``serve --store clickhouse://``: ingest (our events and OTLP),
    reads and readiness (``/readyz``, 200 before and after) answer 503 with ``Retry-After`` (which OTLP/HTTP
    senders retry; a 500 they drop), logged once, while liveness (``/healthz``) stays 200; our
    exporter, sending meanwhile, retries until ClickHouse is back on the same data and port; every batch sent
    again is then stored once."""
    installed()
    root, ports = tmp_path / "clickhouse", (free_port(), free_port())
    headers = {"Authorization": "Bearer down-key"}
    api = ApiServer("--store", f"clickhouse://127.0.0.1:{ports[0]}/outage", "--api-key", "p=down-key",
                    "--no-alert-evaluation", log=tmp_path / "api.log")  # fmt: skip
    now = datetime.now(UTC) - timedelta(minutes=10)
    batch = [dict(event(f"down-{i}", session_id="s", timestamp_ns=int((now + timedelta(seconds=i)).timestamp() * 1e9)))
             for i in range(30)]  # fmt: skip
    traces = encode_spans(server_spans(0, 20)).SerializeToString()
    protobuf = {**headers, "Content-Type": "application/x-protobuf"}
    exported = server_spans(100, 25)
    try:
        with clickhouse_server.running(root, ports=ports):
            api.start(timeout=60)
            assert api.ready() == {"status": "ready"}
            first = httpx.post(f"{api.url}/v1/events", json={"events": batch[:10]}, headers=headers, timeout=30)
            assert first.status_code == 200 and first.json()["accepted"] == 10
        # ClickHouse is stopped; the API is not: alive (/healthz), not ready (/readyz)
        assert httpx.get(f"{api.url}/healthz", timeout=10).status_code == 200
        answers = [
            httpx.get(f"{api.url}/readyz", timeout=30),
            httpx.post(f"{api.url}/v1/events", json={"events": batch}, headers=headers, timeout=30),
            httpx.post(f"{api.url}/v1/traces", content=traces, headers=protobuf, timeout=30),
            httpx.get(f"{api.url}/v1/panels/summary", params={"last": "24h"}, headers=headers, timeout=30),
            httpx.get(f"{api.url}/v1/alerts", headers=headers, timeout=30),
        ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == str(RETRY_AFTER)
            assert answer.json() == {"detail": {"message": f"the store is unreachable; try again in {RETRY_AFTER} s"}}
        exporter = MCPAnalyticsExporter(api.url, "down-key", timeout=90)
        results: list[SpanExportResult] = []
        sender = threading.Thread(target=lambda: results.append(exporter.export(exported)))
        began = time.monotonic()
        sender.start()
        time.sleep(1)  # its first POST is answered 503
        with clickhouse_server.running(root, ports=ports):
            assert api.ready() == {"status": "ready"}
            sender.join(90)
            assert results == [SpanExportResult.SUCCESS] and time.monotonic() - began > RETRY_AFTER
            again = httpx.post(f"{api.url}/v1/events", json={"events": batch}, headers=headers, timeout=30)
            assert again.status_code == 200 and (again.json()["accepted"], again.json()["duplicates"]) == (20, 10)
            assert httpx.post(f"{api.url}/v1/traces", content=traces, headers=protobuf, timeout=30).status_code == 200
            for _ in range(2):  # everything once more: all duplicates
                twice = httpx.post(f"{api.url}/v1/events", json={"events": batch}, headers=headers, timeout=30)
                assert twice.json()["duplicates"] == 30
                assert httpx.post(f"{api.url}/v1/traces", content=traces, headers=protobuf, timeout=30).is_success
                assert exporter.export(exported) == SpanExportResult.SUCCESS
            (summary,) = httpx.get(f"{api.url}/v1/panels/summary", params={"last": "24h"}, headers=headers,
                                   timeout=30).json()["rows"]  # fmt: skip
            assert summary["events"] == 30 + 20 + 25
    finally:
        api.stop()
    log = api.log.read_text()
    assert log.count("the store is unreachable") == 1 and log.count("the store is reachable again") == 1, log
    assert "Traceback" not in log, log


def test_a_server_that_cannot_be_reached_is_store_unavailable_and_a_refused_statement_is_not(store):
    """``StoreUnavailable`` (the API's 503) for connection-level failures only: nothing listening on the port;
    a statement the server refuses is the driver's own error (a 500: retrying would not help)."""
    with pytest.raises(StoreUnavailable, match=r"NetworkError") as raised:
        ClickHouseStore(f"clickhouse://127.0.0.1:{free_port()}/nowhere")
    assert isinstance(raised.value.__cause__, driver_errors.NetworkError)
    with pytest.raises(driver_errors.ServerException) as refused:
        store._run("SELECT no_such_column FROM events", {})
    assert not isinstance(refused.value, StoreUnavailable)


def test_serve_starts_while_clickhouse_is_down_and_creates_the_schema_once_it_is_up(tmp_path):
    """``serve --store clickhouse://`` started before its ClickHouse: it serves, says so in one line, answers 503
    with ``Retry-After`` on ingest, panels and readiness (``/readyz``; liveness still 200); once ClickHouse is up,
    it is ready and the batch sent again is stored once, in the database and tables the API then created."""
    installed()
    root, ports = tmp_path / "clickhouse", (free_port(), free_port())
    headers = {"Authorization": "Bearer late-key"}
    api = ApiServer("--store", f"clickhouse://127.0.0.1:{ports[0]}/late", "--api-key", "p=late-key",
                    log=tmp_path / "api.log")  # fmt: skip
    now = datetime.now(UTC) - timedelta(minutes=10)
    batch = [dict(event(f"late-{i}", session_id="s", timestamp_ns=int((now + timedelta(seconds=i)).timestamp() * 1e9)))
             for i in range(30)]  # fmt: skip
    try:
        api.start(timeout=60)
        assert httpx.get(f"{api.url}/healthz", timeout=10).status_code == 200
        for answer in (
            httpx.get(f"{api.url}/readyz", timeout=30),
            httpx.post(f"{api.url}/v1/events", json={"events": batch}, headers=headers, timeout=30),
            httpx.get(f"{api.url}/v1/panels/summary", params={"last": "24h"}, headers=headers, timeout=30),
        ):
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == str(RETRY_AFTER)
        with clickhouse_server.running(root, ports=ports) as (host, port):
            assert api.ready() == {"status": "ready"}
            stored = httpx.post(f"{api.url}/v1/events", json={"events": batch}, headers=headers, timeout=30)
            assert stored.status_code == 200 and (stored.json()["accepted"], stored.json()["duplicates"]) == (30, 0)
            again = httpx.post(f"{api.url}/v1/events", json={"events": batch}, headers=headers, timeout=30)
            assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 30)
            (summary,) = httpx.get(f"{api.url}/v1/panels/summary", params={"last": "24h"}, headers=headers,
                                   timeout=30).json()["rows"]  # fmt: skip
            assert (summary["events"], summary["sessions"]) == (30, 1)
            client = Client(host=host, port=port, database="late")
            try:
                assert client.execute("SELECT max(version) FROM schema_version") == [(SCHEMA_VERSION,)]
                assert client.execute("SELECT count() FROM events") == [(30,)]
            finally:
                client.disconnect()
    finally:
        api.stop()
    log = api.log.read_text()
    (line,) = [line for line in log.splitlines() if "unreachable" in line]
    said = f"the store is unreachable at start-up (clickhouse://127.0.0.1:{ports[0]}/late: NetworkError: "
    assert line.startswith(said) and line.endswith("when its schema is created or migrated"), line
    assert log.count("the store is reachable again") == 1 and "Traceback" not in log, log


def test_a_clickhouse_that_never_answers_is_probed_by_one_request_at_a_time(tmp_path):
    """A server that takes connections and never answers (hung, or a black-holed route): each try waits for
    ``CHECK_TIMEOUT``. During the outage one request at a time, at most one per ``Retry-After``, probes the store;
    every other request is answered 503 without trying it, so the waiting cannot take every worker thread."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)
    taken: list[socket.socket] = []

    def take() -> None:  # every connection accepted, counted and never answered
        while True:
            try:
                taken.append(hole.accept()[0])
            except OSError:  # closed: the test is over
                return

    threading.Thread(target=take, daemon=True).start()
    headers = {"Authorization": "Bearer hole-key"}
    api = ApiServer("--store", f"clickhouse://127.0.0.1:{hole.getsockname()[1]}/hole", "--api-key", "p=hole-key",
                    "--no-alert-evaluation", log=tmp_path / "api.log")  # fmt: skip

    def summary(_: int) -> int:
        return httpx.get(f"{api.url}/v1/panels/summary", headers=headers, timeout=30).status_code

    try:
        api.start(timeout=60)  # its start-up check gave up after CHECK_TIMEOUT: an outage from the start
        at_start = len(taken)
        time.sleep(RETRY_AFTER)  # a probe is due
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(summary, range(30)))
        assert httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200
    finally:
        hole.close()
        for connection in taken:
            connection.close()
        api.stop()
    assert at_start == 1
    assert answers == [503] * 30
    assert len(taken) - at_start == 1, "one probe reached the server; the other 29 requests did not try it"


def test_the_report_reads_a_clickhouse_store_as_it_reads_a_duckdb_file(store, tmp_path, capsys):
    from mcp_analytics import cli

    test_analytics_store.seeded(store)
    duck = DuckDBStore(tmp_path / "same.duckdb")
    test_analytics_store.seeded(duck)
    duck.close()
    url = f"clickhouse://{store.address.host}:{store.address.port}/{store.address.database}"
    reports = []
    for where in (url, f"duckdb:///{tmp_path / 'same.duckdb'}"):
        assert cli.main(["report", "--store", where, "--project", "p", "--last", "all"]) == 0
        title, _, tables = capsys.readouterr().out.partition("\n")
        assert title == f"MCP analytics: project p in {where.removeprefix('duckdb:///')}, last all"
        reports.append(tables.partition("\n")[2])  # under the title's underline
    assert "search" in reports[0]
    assert reports[0] == reports[1], "every table of the report, row for row"
    assert cli.main(["report", "--store", url, "--project", "nope"]) == 2
    assert "no events of project 'nope'" in capsys.readouterr().err


def test_a_session_of_thirty_thousand_events_is_cut_in_bounded_memory(store):
    """Runs are cut from neighbours' differences: a lambda reading a group's whole array would copy it once per
    event (30,000² timestamps here, far over the test server's 1 GB per query)."""
    start = test_analytics_store.at(0, 0)
    store.add("p", [event(f"long{i}", session_id="long", user_id="alice", timestamp_ns=start + i * 2 * 10**9)
                    for i in range(30_000)])  # fmt: skip
    window = Window(test_analytics_store.DAY, test_analytics_store.DAY + timedelta(days=2))
    (summary,) = store.panel("p", "summary", window)
    assert (summary["events"], summary["sessions"]) == (30_000, 1)
    (session,) = store.panel("p", "sessions", window)
    assert (session["session"], session["events"], session["duration_s"]) == ("long", 30_000, 59_998.0)
    assert store.panel("p", "users", window)[0]["sessions"] == 1


def test_hours_read_final_and_the_others_together_hold_every_event_once(store):
    """30,000 events over four hours in one part (its granules of 8,192 rows span the hours' edges), read with some
    of the hours ``FINAL``: every event once. The hours outside were read under ``NOT (range)``, and 18.16 skipped the
    granules across a range's edge, losing their rows outside it (over 10M events, 1% of the sessions)."""
    start = test_analytics_store.at(0, 0)
    store.add("p", [event(f"g{i}", timestamp_ns=start + i * 480_000_000) for i in range(30_000)])  # 7,500 an hour
    hours = [start // 10**9 + 3600 * hour for hour in range(4)]
    for doubled in ([hours[1]], [hours[0], hours[2]], hours[1:3]):
        source, values = clickhouse_store._events(Slice(), "p", (None, None), doubled)
        counted = store._run("SELECT count() AS n, uniqExact(event_id) AS ids FROM " + source, values)  # noqa: S608
        assert counted == [{"n": 30_000, "ids": 30_000}], doubled


def test_the_sessions_panel_holds_the_instants_of_its_window_not_its_events(make, monkeypatch):
    """The ``sessions`` panel cuts the runs from the instants of the window's events alone, then reads only the
    chosen runs' events. It gathered every event's columns per group before, which ran out of 1 GB over 24 hours of
    10M events; on these 400k events it needed 200 to 300 MB, now 80 to 100 MB (18.16): it answers within 150 MB."""
    end = datetime(2026, 11, 21, tzinfo=UTC)
    unlimited = make()
    for chunk in Population(seed=5, end=end, days=1).chunks(400_000, 10_000):
        unlimited.add("p", chunk)
    time.sleep(1.1)  # the roll begins after the last mark: it finds every hour free of second copies
    assert unlimited.roll() == 24 and unlimited._doubled("p", (None, None)) == []
    window = Window(end - timedelta(days=1), end + timedelta(hours=1))
    expected = unlimited.panel("p", "sessions", window)
    monkeypatch.setattr(clickhouse_store, "_SETTINGS", clickhouse_store._SETTINGS | {"max_memory_usage": 150 << 20})
    limited = make(database=unlimited.address.database)
    assert limited.panel("p", "sessions", window) == expected and len(expected) == 100


def test_days_are_utc_days_whatever_the_server_s_timezone(clickhouse, tmp_path):
    """Partitions are UTC days on a server west of UTC too: retention drops none that holds a kept event."""
    with clickhouse_server.running(tmp_path / "new-york", timezone="America/New_York") as (host, port):
        store = ClickHouseStore(f"clickhouse://{host}:{port}/west")
        try:
            kept = test_analytics_store.at(3, 0)  # 22:00 the day before in New York
            store.add("p", [event("old", timestamp_ns=kept - 86_400 * 10**9), event("kept", timestamp_ns=kept)])
            assert store.delete(None, before=test_analytics_store.moment(1)) == 1
            everything = Window.parse(end=test_analytics_store.moment(23), last="all")
            assert store.panel("p", "extent", everything)[0]["events"] == 1
            assert store.panel("p", "intents", everything) == []
            (row,) = store.panel("p", "timeseries", everything, bucket="1 hour")
            assert row["bucket"] == test_analytics_store.moment(3)
        finally:
            store.close()


def test_an_instance_killed_mid_stream_loses_and_duplicates_nothing_acknowledged(clickhouse, tmp_path):
    """Two ``serve`` processes on one ClickHouse database, fed batches concurrently by four senders that alternate
    between them; one instance is killed (SIGKILL) while requests to it are in flight: one for certain, held with
    half its body sent until the kill, and whatever the other senders have in flight at that instant. A sender takes a batch as
    stored only when an instance answers 200, and sends a batch that failed or went unanswered to the other
    instance, as the fleet's balancer does (``proxy_next_upstream``), until it is acknowledged. Then every batch is
    in ClickHouse once: each event id once in the table read ``FINAL`` (copies that the killed instance inserted
    before dying, and that the survivor inserted again, collapsed), the survivor's summary panel counts every event
    once, and batches the killed instance had acknowledged, sent again to the survivor, change nothing."""
    host, port = clickhouse
    database = f"killed_{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": "Bearer kill-key"}
    instances = [ApiServer("--store", f"clickhouse://{host}:{port}/{database}", "--api-key", "k=kill-key",
                           "--no-alert-evaluation", log=tmp_path / f"api-{index}.log") for index in range(2)]  # fmt: skip
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    batches = [
        [dict(event(f"k{b}-{i}", session_id=f"s{b % 7}", user_id=f"u{i % 5}",
                    timestamp_ns=int((now + timedelta(seconds=b * 100 + i * 0.25)).timestamp() * 1e9)))
         for i in range(200)]
        for b in range(60)
    ]  # fmt: skip
    victim, survivor = instances
    pending = list(range(len(batches)))
    lock = threading.Lock()
    acknowledged: dict[int, list[int]] = {0: [], 1: []}  # by the instance that answered 200
    in_flight = [0, 0]  # requests sent to each instance and not answered yet
    unanswered = []  # (batch, how, whether sent before the kill) of the requests to the victim that failed
    killed_at = [math.inf]
    errors: list[BaseException] = []
    holding, killed = threading.Event(), threading.Event()
    held = [False]  # whether a request to the victim has been chosen to hold

    def halves(body: bytes) -> Iterator[bytes]:
        """The body in two parts, the second after the kill: this request is in flight when the victim dies."""
        yield body[: len(body) // 2]
        holding.set()
        killed.wait(60)
        yield body[len(body) // 2 :]

    def send() -> None:
        with httpx.Client(timeout=60) as client:
            while True:
                with lock:
                    if not pending:
                        return
                    batch = pending.pop(0)
                target = batch % 2
                for attempt in range(20):
                    with lock:
                        in_flight[target] += 1
                        hold = target == 0 and not held[0] and len(acknowledged[0]) >= 8
                        held[0] = held[0] or hold
                    body = json.dumps({"events": batches[batch]}).encode()
                    sent = time.monotonic()
                    try:
                        answer = client.post(f"{instances[target].url}/v1/events",
                                             content=halves(body) if hold else body,
                                             headers=headers | {"Content-Type": "application/json"})  # fmt: skip
                    except httpx.TransportError as error:
                        answer = None
                        failure = type(error).__name__
                    finally:
                        with lock:
                            in_flight[target] -= 1
                    if answer is not None and answer.status_code == 200:
                        with lock:
                            acknowledged[target].append(batch)
                        break
                    if answer is not None:
                        failure = str(answer.status_code)
                    assert target == 0, f"the survivor failed: {failure}"
                    with lock:
                        unanswered.append((batch, failure, sent < killed_at[0]))
                    target = 1 - target  # the next instance, as the balancer retries; back after a failure there
                    time.sleep(0.05 * attempt)
                else:
                    raise AssertionError(f"batch {batch} was never acknowledged")

    def guarded() -> None:
        try:
            send()
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            errors.append(error)

    try:
        for instance in instances:
            instance.launch()
        for instance in instances:
            instance.answering(timeout=60)
        senders = [threading.Thread(target=guarded) for _ in range(4)]
        for sender in senders:
            sender.start()
        assert holding.wait(60), "no request to the victim after its first 8 acknowledgements"
        deadline = time.monotonic() + 2  # a moment when another sender has one in flight to it too, if one comes
        while in_flight[0] < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        killed_at[0] = time.monotonic()
        victim.kill()
        killed.set()
        for sender in senders:
            sender.join(120)
        assert not errors, errors
        killed_after = sorted(acknowledged[0])
        assert sorted(killed_after + acknowledged[1]) == list(range(len(batches))), "every batch acknowledged once"
        assert any(before for _, _, before in unanswered), f"no request in flight went unanswered: {unanswered}"

        # The worst case of a lost answer: everything the victim acknowledged, sent again to the survivor.
        for batch in killed_after:
            again = httpx.post(f"{survivor.url}/v1/events", json={"events": batches[batch]}, headers=headers,
                               timeout=60)  # fmt: skip
            assert again.status_code == 200 and again.json()["accepted"] + again.json()["duplicates"] == 200

        total = len(batches) * 200
        client = Client(host=host, port=port, database=database)
        try:
            final = client.execute("SELECT count(), uniqExact(event_id) FROM events FINAL WHERE project = 'k'")
            assert final == [(total, total)], "each event once"
            wanted = {one["event_id"] for batch in batches for one in batch}
            stored = {row[0] for row in client.execute("SELECT DISTINCT event_id FROM events WHERE project = 'k'")}
            assert stored == wanted
        finally:
            client.disconnect()
        (summary,) = httpx.get(f"{survivor.url}/v1/panels/summary", params={"last": "24h"}, headers=headers,
                               timeout=60).json()["rows"]  # fmt: skip
        assert (summary["events"], summary["sessions"], summary["users"]) == (total, 7, 5)
        users = httpx.get(f"{survivor.url}/v1/panels/users", params={"last": "24h"}, headers=headers,
                          timeout=60).json()["rows"]  # fmt: skip
        assert sorted((row["user"], row["events"]) for row in users) == [(f"u{i}", total // 5) for i in range(5)]
    finally:
        for instance in instances:
            instance.stop()
    assert "Traceback" not in survivor.log.read_text()

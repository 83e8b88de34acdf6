"""The rollups the panels read (``rollup_counts``, ``rollup_runs``) answer exactly what the raw events do: every
rolled-up panel, over windows with partial hours at either edge, after out-of-order batches, retries, deletions and
merges, equals the same panel read from the raw rows (``DuckDBStore(rollups=False)``), whether the rollups caught up
with the events at ingest or at the read, and after a process that ended with events not rolled up."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest

from mcp_analytics import duckdb_store
from mcp_analytics.alerts import Rules
from mcp_analytics.duckdb_store import DuckDBStore
from mcp_analytics.models import Event, validated_event
from mcp_analytics.store import EPOCH, Slice, Window

ROLLED = tuple(duckdb_store._ROLLED_PANELS)
START = datetime(2026, 11, 20, tzinfo=UTC)
DAYS = 3
CLIENTS = ("Claude Desktop", "Cursor", None)
USERS = ("alice", "bob", "carol", None)
ORIGINS = (None, None, None, "client", "server", "upstream", "auth")
TYPES = ("mcp:tools/call", "mcp:tools/call", "mcp:tools/list", "mcp:prompts/get", "mcp:prompts/list", "mcp:initialize",
         "custom:done")  # fmt: skip
LISTED = ("search", "fetch", "report", "archive", "purge")  # the last two never called (``unused_*``)


def population(seed: int, count: int = 1500, prefix: str = "e") -> list[tuple[str, Event]]:
    """(project, event) pairs over ``DAYS`` days: stateful sessions, stateless users and callers with a client, events
    of no group and client spans, clustered so that runs cut and join across hours and batches."""
    rng = random.Random(seed)
    failing = random.Random(seed + 1)  # the failures' reasons, codes and messages, apart: the rest stays as it was
    found = []
    for index in range(count):
        project = rng.choice(("p", "p", "q"))
        ts = START + timedelta(seconds=rng.randrange(DAYS * 86_400))
        if rng.random() < 0.5:  # near an earlier event: long runs, runs that straddle hours
            if found:
                ts = datetime.fromtimestamp(found[rng.randrange(len(found))][1]["timestamp_ns"] / 1e9, UTC)
            ts += timedelta(minutes=rng.uniform(-40, 40))
        if rng.random() < 0.05:  # on the hour: the first instant of a whole hour, the end of a window's edge
            ts = ts.replace(minute=0, second=0, microsecond=0)
        grouping = rng.random()
        user = rng.choice(USERS)
        fields = {
            "type": rng.choice(TYPES),
            "timestamp_ns": int(ts.timestamp() * 1e6) * 1000,
            "kind": "client" if rng.random() < 0.05 else "server",
            "session_id": f"s{rng.randrange(12)}" if grouping < 0.5 else None,
            "user_id": user if grouping < 0.85 else None,
            "user_name": user and user.title(),
            "caller_id": f"c{rng.randrange(4)}" if rng.random() < 0.5 else None,
            "client_name": rng.choice(CLIENTS),
            "server_name": rng.choice(("docs", "shop", None)),
            "server_version": rng.choice(("1.0", "1.1", None)),
            "resource": rng.choice(("search", "fetch", "report")),
        }
        if fields["type"] in ("mcp:tools/call", "mcp:prompts/get") and rng.random() < 0.8:  # keys in any order
            fields["argument_keys"] = rng.sample(("q", "limit", "page"), rng.randrange(4))
        if rng.random() < 0.9:  # in microseconds, as recorded: sums of them round alike in any order
            fields["duration_ms"] = rng.randrange(10_000_000) / 1000
            if rng.random() < 0.4:  # at times longer than the whole: a negative own time
                fields["upstream_ms"] = rng.randrange(12_000_000) / 1000
        if rng.random() < 0.7:
            fields["response_size"] = rng.randrange(50_000)
        if fields["type"].endswith("/list"):  # listings in every order, some repeated, some empty
            listed = rng.sample(LISTED, rng.randrange(len(LISTED) + 1)) if rng.random() < 0.7 else list(LISTED[:3])
            fields["tools_listed" if fields["type"] == "mcp:tools/list" else "prompts_listed"] = listed
            if fields["type"] == "mcp:tools/list":
                fields["destructive_tools"] = [tool for tool in listed if tool in ("fetch", "purge")]
        origin = rng.choice(ORIGINS)
        if origin:  # codes, reasons and messages repeated across hours, some missing: the newest message is the example
            code = failing.choice((-32602, -32603, -32002, 0, None))
            fields |= {"is_error": True, "failure": {"origin": origin, "reason": failing.choice(("boom", "slow", None))},
                       "error": {"type": "ToolError" if code is None else str(code), "code": code,
                                 "message": failing.choice(("bad input", "timed out", "no such page", None))}}  # fmt: skip
        found.append((project, validated_event(event_id=f"{prefix}{index}", **fields)))
    return found


def fill(
    store: DuckDBStore, seed: int, prefix: str = "e", between: Callable[[], None] | None = None
) -> list[tuple[str, Event]]:
    """The population in shuffled batches of varied size, with retries of earlier batches among them; ``between``
    called after every third."""
    rng = random.Random(seed)
    events = population(seed, prefix=prefix)
    rng.shuffle(events)
    sent: list[tuple[str, list[Event]]] = []
    position = chunks = 0
    while position < len(events):
        size = rng.choice((1, 7, 40, 150))
        chunk = events[position : position + size]
        position += size
        for project in ("p", "q"):
            batch = [event for owner, event in chunk if owner == project]
            if batch:
                store.add(project, batch)
                sent.append((project, batch))
        if sent and rng.random() < 0.2:  # a retry: stored once
            project, batch = rng.choice(sent)
            assert store.add(project, batch).accepted == 0
        chunks += 1
        if between and chunks % 3 == 0:
            between()
    return events


def windows(seed: int) -> list[Window]:
    """Windows of an hour or more (those the rollups serve) with partial hours at both edges, aligned to hours, of
    exactly an hour, around the whole history, and one too short for the rollups."""
    rng = random.Random(seed)
    found = [
        Window(EPOCH, START + timedelta(days=DAYS + 1)),
        Window(START, START + timedelta(days=DAYS)),
        Window(START + timedelta(hours=5), START + timedelta(hours=6)),
        Window(START + timedelta(hours=5, minutes=30), START + timedelta(hours=6, minutes=30)),
        Window(START + timedelta(hours=5, minutes=59), START + timedelta(hours=7, minutes=1)),
        Window(START + timedelta(hours=9, minutes=10), START + timedelta(hours=9, minutes=50)),
    ]
    for _ in range(12):
        begin = START + timedelta(seconds=rng.randrange(DAYS * 86_400))
        found.append(Window(begin, begin + timedelta(seconds=rng.randrange(3_600, DAYS * 86_400))))
    return found


def assert_rollups_answer_as_raw_rows(store: DuckDBStore, seed: int) -> None:
    rolled = 0
    for window in windows(seed):
        for project in ("p", "q", "nobody"):
            for name in ROLLED:
                store.rollups = True
                answer = store.panel(project, name, window, limit=1000)
                rolled += store._rolled(name, window, Slice())
                store.rollups = False
                assert answer == store.panel(project, name, window, limit=1000), (project, name, window)
    store.rollups = True
    assert rolled >= 15 * 3 * len(ROLLED)  # the rollups answered most of them: the comparison is not vacuous
    assert_alerts_found_as_from_raw_rows(store, seed)


EAGER = Rules(latency_factor=0.8, latency_min_calls=1, new_client_hours=40)
"""Rules that fire often on the population (its durations are random: a tool's p95 over 15 minutes is often
above 0.8 times the day's; every client is new for 40 hours after its first event)."""


def assert_alerts_found_as_from_raw_rows(store: DuckDBStore, seed: int) -> None:
    """The alert rules (``latency_spike``, ``destructive_new_client`` and ``slo_burn`` read the rollups) find at
    moments on and off the hour what they find in the raw rows."""
    rng = random.Random(seed)
    moments = [START + timedelta(hours=30), START + timedelta(hours=30, minutes=15), START + timedelta(hours=20)]
    moments += [START + timedelta(seconds=rng.randrange(DAYS * 86_400)) for _ in range(6)]
    fired = set()
    for now in moments:
        for project in ("p", "q"):
            found = store.deviations(project, now, EAGER)
            store.rollups = False
            assert found == store.deviations(project, now, EAGER), (project, now)
            store.rollups = True
            fired |= {alert.rule for alert in found}
    assert {"latency_spike", "destructive_new_client"} <= fired  # the comparison is not vacuous


def assert_read_as_raw_rows(store: Any, names: tuple[str, ...], windows: list[Window], project: str = "p") -> None:
    """Each panel of ``names`` over each of ``windows`` answers as the raw rows do (``store.rollups``: either store)."""
    for window in windows:
        for name in names:
            answer = store.panel(project, name, window, limit=1000)
            store.rollups = False
            assert answer == store.panel(project, name, window, limit=1000), (name, window)
            store.rollups = True


def behind(store: DuckDBStore) -> int:
    """The hours recorded with events that the rollups have not caught up with."""
    return store._connection.execute("SELECT count(*) FROM rollup_behind").fetchone()[0]


@pytest.mark.parametrize(
    ("seed", "roll_after"),
    [(1, duckdb_store._ROLL_AFTER), (2, 1), (3, 200)],
    ids=["caught-up-at-the-read", "at-every-commit", "every-200-events"],
)
def test_rolled_up_panels_equal_the_raw_rows_after_out_of_order_batches_and_retries(monkeypatch, seed, roll_after):
    monkeypatch.setattr(duckdb_store, "_ROLL_AFTER", roll_after)
    store = DuckDBStore()
    fill(store, seed)
    assert (store._unrolled_events > 0, behind(store) > 0) == (roll_after > 1, roll_after > 1)
    assert_rollups_answer_as_raw_rows(store, seed)
    assert (store._unrolled_events, behind(store)) == (0, 0)
    store.close()


def test_panels_read_while_events_are_behind_the_rollups_equal_the_raw_rows(monkeypatch):
    monkeypatch.setattr(duckdb_store, "_ROLL_AFTER", 300)  # caught up now at ingest, now by a read
    store = DuckDBStore()
    reads = []

    def compare() -> None:
        reads.append(behind(store))
        assert_read_as_raw_rows(store, ROLLED, [Window(EPOCH, START + timedelta(days=DAYS)), windows(6)[-1]])

    fill(store, 6, between=compare)
    assert len(reads) >= 10 and sum(1 for hours in reads if hours) >= 5
    store.close()


def test_rollups_equal_the_raw_rows_after_merges_and_deletions(monkeypatch):
    monkeypatch.setattr(duckdb_store, "_RECOUNT_AFTER", 50)  # hours merged many times along the way
    monkeypatch.setattr(duckdb_store, "_ROLL_AFTER", 100)
    store = DuckDBStore()
    fill(store, 4)
    assert_rollups_answer_as_raw_rows(store, 4)
    assert_days_are_their_hours(store)
    monkeypatch.setattr(duckdb_store, "_ROLL_AFTER", 10**9)
    fill(store, 40, prefix="more")  # behind the rollups when some of them are deleted
    assert behind(store) > 0
    assert store.delete("p", before=START + timedelta(hours=30, minutes=17)) > 0  # retention cuts runs in two
    fill(store, 41, prefix="again")
    assert behind(store) > 0
    assert store.delete(None, user_id="bob") > 0  # a user's events: runs split where theirs were
    assert_rollups_answer_as_raw_rows(store, 4)
    assert_days_are_their_hours(store)
    store.close()


def assert_days_are_their_hours(store: DuckDBStore) -> None:
    """``rollup_timings_days`` holds each day's histograms as its hours' rows add up to, in fewer rows (the panels read
    a window's whole days from it)."""
    differ = """
        WITH hours AS (
            SELECT project, type, resource, server_name, measure, key, date_trunc('day', hour) AS day, sum(n),
                min(lo_ms), max(hi_ms)
            FROM rollup_timings GROUP BY ALL
        ),
        days AS (
            SELECT project, type, resource, server_name, measure, key, day, sum(n), min(lo_ms), max(hi_ms)
            FROM rollup_timings_days GROUP BY ALL
        )
        (FROM hours EXCEPT ALL FROM days) UNION ALL (FROM days EXCEPT ALL FROM hours)"""
    db = store._connection
    assert db.execute(differ).fetchall() == []
    count = "SELECT (SELECT count(*) FROM rollup_timings_days), (SELECT count(*) FROM rollup_timings)"
    day_rows, hour_rows = db.execute(count).fetchone()
    assert 0 < day_rows < hour_rows, (day_rows, hour_rows)


def test_a_merge_of_hours_merges_their_days_timings(monkeypatch):
    """Each catch-up adds its events' timings to their days as to their hours; a merge leaves one row per key."""
    monkeypatch.setattr(duckdb_store, "_ROLL_AFTER", 1)
    monkeypatch.setattr(duckdb_store, "_RECOUNT_AFTER", 10**9)
    store = DuckDBStore()
    calls = [validated_event(event_id=f"t{hour}", type="mcp:tools/call", resource="search", duration_ms=5.0,
                             timestamp_ns=int((START + timedelta(hours=hour)).timestamp()) * 10**9)
             for hour in range(6)]  # fmt: skip
    days = "SELECT measure, n FROM rollup_timings_days ORDER BY measure, n"
    for call in calls[:5]:
        store.add("p", [call])
    assert store._connection.execute(days).fetchall() == [(measure, 1) for measure in "dou" for _ in range(5)]
    monkeypatch.setattr(duckdb_store, "_RECOUNT_AFTER", 1)
    store.add("p", [calls[5]])  # its catch-up merges the hours it added to
    assert store._connection.execute(days).fetchall() == [("d", 6), ("o", 6), ("u", 6)]
    assert_days_are_their_hours(store)
    latency = store.panel("p", "latency", Window(START, START + timedelta(days=1)))
    assert [(row["tool"], row["calls"], row["p95_ms"]) for row in latency] == [(None, 6, 5.0), ("search", 6, 5.0)]
    store.close()


def test_events_a_process_stored_and_did_not_roll_up_are_rolled_up_when_the_store_is_opened(tmp_path, monkeypatch):
    monkeypatch.setattr(duckdb_store, "_ROLL_AFTER", 700)  # some rolled up at ingest, the last ones not
    path = tmp_path / "rollups.duckdb"
    store = DuckDBStore(path)
    fill(store, 8)
    assert 0 < store._unrolled_events < 700 and behind(store) > 0
    store._connection.close()  # the process ends: the events stored, the rollups behind them
    store = DuckDBStore(path)
    assert (store._unrolled_events, behind(store)) == (0, 0)
    assert_rollups_answer_as_raw_rows(store, 8)
    store.close()


def test_reopened_with_another_session_timeout_the_runs_are_cut_anew(tmp_path):
    path = tmp_path / "rollups.duckdb"
    store = DuckDBStore(path)
    fill(store, 5)
    store.close()
    store = DuckDBStore(path, session_timeout=timedelta(minutes=10))
    assert_rollups_answer_as_raw_rows(store, 5)
    store.close()


def test_the_slo_baseline_reads_the_7_days_up_to_the_window_s_end_to_the_microsecond():
    """The tiers' baselines (the p95 over the 7 days up to the window's end) read the week's whole hours from the
    rollups and its partial first hour raw: slow calls just before the week began are not in it."""
    end = START + timedelta(days=8, minutes=40)
    week = end - timedelta(days=7)
    calls = [(week - timedelta(minutes=minutes), 9_000.0) for minutes in range(30, 35)]  # in the hour it begins
    calls += [(week + timedelta(minutes=10), 5.0), (end - timedelta(minutes=5), 5.0)]
    calls += [(week + timedelta(hours=hour), 5.0) for hour in range(2, 40)]
    store = DuckDBStore()
    store.add("p", [validated_event(event_id=f"c{index}", type="mcp:tools/call", resource="search", duration_ms=ms,
                                    timestamp_ns=int(at.timestamp() * 1e9))
                    for index, (at, ms) in enumerate(calls)])  # fmt: skip
    for window in (Window(end - timedelta(hours=1), end), Window(end - timedelta(minutes=20), end)):
        (rolled,) = store.panel("p", "slo", window)
        assert store._rolled("slo", window, Slice()) and rolled["tier"] == "light", rolled  # p95 5 ms: the fastest
        store.rollups = False
        assert [rolled] == store.panel("p", "slo", window)
        store.rollups = True
    store.close()


def test_a_session_id_is_its_session_key_unless_it_has_several_runs_up_to_the_window_end():
    store = DuckDBStore()
    at = [START + timedelta(hours=10, minutes=minute) for minute in (-150, 50, 70, 100)]
    store.add("p", [validated_event(event_id=f"{name}{index}", type="mcp:tools/call", session_id=name,
                                    timestamp_ns=int(at[index].timestamp() * 1e9))
                    for name, indices in (("fresh", (1, 2, 3)), ("old", (0, 1, 2))) for index in indices])  # fmt: skip
    window = Window(START + timedelta(hours=11), START + timedelta(hours=13))  # "fresh" began 10 minutes before
    rolled = store.panel("p", "sessions", window)
    assert {row["session"]: row["events"] for row in rolled} == {"fresh": 2, "old@old2": 1}
    store.rollups = False
    assert rolled == store.panel("p", "sessions", window)
    store.close()


def test_a_catch_up_that_fails_loses_nothing_is_logged_once_and_keeps_no_events_in_memory(monkeypatch, caplog):
    """A catch-up that fails (here the engine running out of memory, injected) never fails the ingest that set it
    off: the events are stored and answered, panels read the raw events, nothing piles up in memory however often
    it fails, one error is logged; once catching up works again it recounts the hours behind from the stored
    events and the rollups answer as the raw rows do."""
    monkeypatch.setattr(duckdb_store, "_ROLL_AFTER", 100)  # many catch-ups at ingest, each failing
    store = DuckDBStore()
    failures = []

    def failing(*_: object) -> None:
        failures.append(1)
        raise duckdb.OutOfMemoryException("injected: out of memory")

    monkeypatch.setattr(store, "_roll", failing)
    monkeypatch.setattr(store, "_roll_behind", failing)
    events = fill(store, 9)  # every batch answered (its retries as duplicates), none raised
    assert len(failures) >= 5 and store._unrolled == [] and behind(store) > 0
    assert store.panel("p", "summary", Window(EPOCH, START + timedelta(days=DAYS + 1)))[0]["events"] == sum(
        1 for project, event in events if project == "p" and event["kind"] != "client"
    )
    assert_rollups_answer_as_raw_rows(store, 9)  # read from the raw events while it fails
    errors = [r for r in caplog.records if r.name == "mcp_analytics.duckdb_store" and r.levelname == "ERROR"]
    assert len(errors) == 1 and "rollups" in errors[0].getMessage()
    monkeypatch.undo()  # the engine recovers: the next read catches up from the stored events
    assert behind(store) > 0 and store._failed
    assert_rollups_answer_as_raw_rows(store, 9)
    assert (behind(store), store._failed, store._unrolled_events) == (0, False, 0)
    store.close()

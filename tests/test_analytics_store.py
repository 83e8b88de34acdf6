"""The embedded store: idempotent ingest, session grouping, every panel's numbers, schema versions, isolation."""

from __future__ import annotations

import math
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest

from mcp_analytics.duckdb_store import MIGRATIONS, SCHEMA_VERSION, DuckDBStore, SchemaTooNew
from mcp_analytics.models import Event, validated_event
from mcp_analytics.store import PANELS, PERCENTILE_ERROR, Prices, Slice, Slos, UnknownPanel, Window

DAY = datetime(2026, 11, 20, tzinfo=UTC)
WHOLE_DAY = Window(DAY, DAY + timedelta(days=1))


def at(hour: int, minute: int, second: int = 0) -> int:
    return int(moment(hour, minute, second).timestamp() * 1e9)


def moment(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute, seconds=second)


def event(event_id: str, **fields) -> Event:
    fields.setdefault("type", "mcp:tools/call")
    fields.setdefault("timestamp_ns", at(9, 0))
    return validated_event(event_id=event_id, **fields)


@pytest.fixture
def store():
    store = DuckDBStore()
    yield store
    store.close()


STATELESS = [  # (user, client, hour, minute) -> the session letter the issue expects
    ("alice", "Claude Desktop", 10, 0, "A"),
    ("bob", "Cursor", 10, 2, "B"),
    ("alice", "Claude Desktop", 10, 15, "A"),
    ("alice", "Cursor", 10, 20, "C"),
    ("alice", "Claude Desktop", 10, 55, "D"),
]


def stateless_events() -> list[Event]:
    return [
        event(f"s{i}", resource="search", timestamp_ns=at(h, m), user_id=u, client_name=c, stateless=True)
        for i, (u, c, h, m, _) in enumerate(STATELESS)
    ]


def session_of(store: DuckDBStore) -> dict[str, str]:
    """event id -> session key, read back through the ``session`` panel of every listed session."""
    found = {}
    for row in store.panel("p", "sessions", WHOLE_DAY):
        for item in store.panel("p", "session", WHOLE_DAY, session=row["session"]):
            found[(item["user"], item["client"], item["ts"])] = row["session"]
    return {f"s{i}": found[(u, c, DAY + timedelta(hours=h, minutes=m))] for i, (u, c, h, m, _) in enumerate(STATELESS)}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_stateless_events_group_by_user_client_and_30_minutes_whatever_the_order(store, seed):
    events = stateless_events()
    random.Random(seed).shuffle(events)
    store.add("p", events[:2])  # and across batches
    store.add("p", events[2:])
    sessions = session_of(store)
    letters = {}
    for i, (*_, letter) in enumerate(STATELESS):
        letters.setdefault(letter, sessions[f"s{i}"])
        assert sessions[f"s{i}"] == letters[letter], f"event {i} should be in session {letter}"
    assert len(set(letters.values())) == 4  # A, B, C, D
    rows = {row["session"]: row for row in store.panel("p", "sessions", WHOLE_DAY)}
    assert rows[letters["A"]]["events"] == 2 and rows[letters["A"]]["duration_s"] == 900.0
    assert rows[letters["A"]]["stateless"] is True


def test_session_keys_do_not_depend_on_arrival_order():
    keys = []
    for seed in range(3):
        store = DuckDBStore()
        events = stateless_events()
        random.Random(seed).shuffle(events)
        for one in events:
            store.add("p", [one])
        keys.append(session_of(store))
        store.close()
    assert keys[0] == keys[1] == keys[2]


def test_anonymous_stateless_events_are_sessions_of_their_own_and_session_ids_group_the_rest(store):
    store.add("p", [
        event("a1", stateless=True, timestamp_ns=at(9, 0)),
        event("a2", stateless=True, timestamp_ns=at(9, 0, 1)),
        event("k1", session_id="sess-1", timestamp_ns=at(9, 1)),
        event("k2", session_id="sess-1", user_id="alice", timestamp_ns=at(9, 20)),
    ])  # fmt: skip
    rows = store.panel("p", "sessions", WHOLE_DAY)
    assert sorted(row["events"] for row in rows) == [1, 1, 2]
    (stateful,) = [row for row in rows if row["session"] == "sess-1"]
    assert stateful["stateless"] is False and stateful["user"] == "alice"
    assert store.panel("p", "summary", WHOLE_DAY)[0]["sessions"] == 3


def test_a_stateful_session_ends_after_the_inactivity_timeout(tmp_path):
    """Two events three hours apart in one session id are two sessions. A session id cut in two is keyed
    ``<id>@<first event>`` for each part, and each part's timeline holds its own events alone."""
    now = datetime.now(UTC).replace(microsecond=0)
    ns = lambda moment: int(moment.timestamp() * 1e9)  # noqa: E731
    events = [
        event("m1", session_id="sess-9", timestamp_ns=ns(now - timedelta(hours=3, minutes=5))),
        event("m2", session_id="sess-9", timestamp_ns=ns(now - timedelta(hours=3))),
        event("m3", session_id="sess-9", timestamp_ns=ns(now - timedelta(minutes=5))),
        event("m4", session_id="sess-9", timestamp_ns=ns(now - timedelta(minutes=1))),
    ]
    window = Window(now - timedelta(days=1), now + timedelta(minutes=1))
    default, patient = DuckDBStore(), DuckDBStore(session_timeout=timedelta(hours=4))
    for store in (default, patient):
        store.add("p", events)
    rows = sorted(default.panel("p", "sessions", window), key=lambda row: row["started"])
    assert [(row["session"], row["events"], row["state"]) for row in rows] == [
        ("sess-9@m1", 2, "ended"),
        ("sess-9@m3", 2, "active"),
    ]
    assert [r["event_id"] for r in default.panel("p", "session", window, session="sess-9@m3")] == ["m3", "m4"]
    assert default.panel("p", "summary", window)[0]["sessions"] == 2
    # Over the last hour only, the later run stands alone in the window but not in the session id's history.
    (recent,) = default.panel("p", "sessions", Window(now - timedelta(hours=1), now + timedelta(minutes=1)))
    assert (recent["session"], recent["events"]) == ("sess-9@m3", 2)
    # The timeout is the API's to set.
    (whole,) = patient.panel("p", "sessions", window)
    assert (whole["session"], whole["events"], whole["state"]) == ("sess-9", 4, "active")


def test_anonymous_stateless_events_of_one_caller_and_client_are_one_session(store):
    store.add("p", [
        event("i1", stateless=True, caller_id="c-1", client_name="mcp-inspector", timestamp_ns=at(9, 0)),
        event("i2", stateless=True, caller_id="c-1", client_name="mcp-inspector", timestamp_ns=at(9, 10)),
        event("i3", stateless=True, caller_id="c-1", client_name="other", timestamp_ns=at(9, 11)),
        event("j1", stateless=True, caller_id="c-2", client_name="mcp-inspector", timestamp_ns=at(9, 12)),
        event("i4", stateless=True, caller_id="c-1", client_name="mcp-inspector", timestamp_ns=at(10, 0)),
    ])  # fmt: skip
    rows = sorted(store.panel("p", "sessions", WHOLE_DAY), key=lambda row: row["started"])
    assert [(row["session"], row["grouping"], row["events"]) for row in rows] == [
        ("c-i1", "caller + client", 2),
        ("c-i3", "caller + client", 1),
        ("c-j1", "caller + client", 1),
        ("c-i4", "caller + client", 1),
    ]
    assert [r["event_id"] for r in store.panel("p", "session", WHOLE_DAY, session="c-i1")] == ["i1", "i2"]
    assert store.panel("p", "summary", WHOLE_DAY)[0]["sessions"] == 4


def test_a_batch_stored_twice_is_counted_once(store):
    batch = [event(f"e{i}", timestamp_ns=at(9, i)) for i in range(5)]
    first = store.add("p", batch)
    again = store.add("p", [*batch, batch[0]])
    assert (first.accepted, first.duplicates) == (5, 0)
    assert (again.accepted, again.duplicates) == (0, 6)
    assert store.panel("p", "summary", WHOLE_DAY)[0]["events"] == 5


@pytest.mark.parametrize("reopen", [False, True], ids=["same process", "after a restart"])
def test_retries_beyond_the_recent_ids_filter_are_found_in_the_table(tmp_path, reopen):
    path = tmp_path / "store.duckdb"
    store = DuckDBStore(path, recent_ids=10)  # forgets all but the newest 10 stored ids
    batches = [[event(f"e{b}-{i}", timestamp_ns=at(9, b, i)) for i in range(25)] for b in range(4)]
    assert [store.add("p", batch).accepted for batch in batches] == [25] * 4
    if reopen:
        store.close()
        store = DuckDBStore(path, recent_ids=10)
    try:
        # every retry: the oldest batch, the newest one, and one mixing old, new and repeated events
        mixed = batches[0][:5] + batches[3][-3:] + [event(f"n{i}", timestamp_ns=at(9, 2, i)) for i in range(4)]
        results = [store.add("p", batch) for batch in (batches[0], batches[3], mixed + mixed[:2])]
        assert [(r.accepted, r.duplicates) for r in results] == [(0, 25), (0, 25), (4, 10)]
        assert store.panel("p", "summary", WHOLE_DAY)[0]["events"] == 104
    finally:
        store.close()


def test_the_same_event_id_in_two_projects_is_two_events(store):
    store.add("a", [event("same", resource="alpha")])
    assert store.add("b", [event("same", resource="beta")]).accepted == 1
    assert [row["tool"] for row in store.panel("a", "tools", WHOLE_DAY)] == ["alpha"]
    assert [row["tool"] for row in store.panel("b", "tools", WHOLE_DAY)] == ["beta"]


def seeded(store: DuckDBStore) -> None:
    store.add("p", [
        event("t1", resource="search", duration_ms=10, user_id="alice", client_name="claude-ai", session_id="s1",
              response_size=100, timestamp_ns=at(9, 0)),
        event("t2", resource="search", duration_ms=30, user_id="alice", client_name="claude-ai", session_id="s1",
              response_size=300, timestamp_ns=at(9, 1), intent="find the quickstart"),
        event("t3", resource="fetch", duration_ms=200, upstream_ms=150, user_id="bob", client_name="cursor",
              session_id="s2", response_size=5000, timestamp_ns=at(9, 2), is_error=True,
              error={"type": "tool_error", "message": "upstream said 503"},
              failure={"origin": "upstream", "reason": "upstream_error"}),
        event("t4", resource="fetch", duration_ms=100, upstream_ms=90, user_id="bob", client_name="cursor",
              session_id="s2", response_size=1000, timestamp_ns=at(9, 3)),
        event("t5", resource="nope", duration_ms=1, client_name="cursor", session_id="s2", timestamp_ns=at(9, 4),
              is_error=True, error={"type": "-32602", "code": -32602},
              failure={"origin": "client", "reason": "unknown_tool"}),
        event("l1", type="mcp:tools/list", session_id="s1", client_name="claude-ai", timestamp_ns=at(8, 59),
              tools_listed=["search", "fetch", "export"]),
        event("p1", type="mcp:prompts/get", resource="plan", argument_keys=["city"], session_id="s1",
              timestamp_ns=at(9, 5)),
        event("p2", type="mcp:prompts/get", resource="plan", argument_keys=["days", "city"], session_id="s2",
              timestamp_ns=at(9, 6)),
        event("c1", type="custom:ticket_opened", kind="internal", session_id="s1", timestamp_ns=at(9, 7),
              custom={"message": "T-1 opened"}),
        event("x1", type="mcp:tools/call", kind="client", resource="search", timestamp_ns=at(9, 0)),
        event("old", resource="legacy_tool", timestamp_ns=at(9, 0) - 2 * 86_400 * 10**9),
    ])  # fmt: skip


def test_panels_answer_with_exact_numbers(store):
    seeded(store)
    (summary,) = store.panel("p", "summary", WHOLE_DAY)
    assert summary == {"events": 9, "failures": 2, "success_rate": round(7 / 9, 4), "tool_calls": 5,
                       "sessions": 2, "users": 2, "clients": 2}  # fmt: skip
    tools = {row["tool"]: row for row in store.panel("p", "tools", WHOLE_DAY)}
    assert {name: (row["calls"], row["errors"], row["error_rate"]) for name, row in tools.items()} == {
        "search": (2, 0, 0.0),
        "fetch": (2, 1, 0.5),
        "nope": (1, 1, 1.0),
    }  # the client span "x1" is not counted
    latency = store.panel("p", "latency", WHOLE_DAY)
    assert latency[0]["tool"] is None and latency[0]["calls"] == 7  # tool calls and prompts
    (fetch,) = [row for row in latency if row["tool"] == "fetch"]
    assert (fetch["p50_ms"], fetch["upstream_share"]) == (150.0, round(240 / 300, 4))
    assert fetch["own_p95_ms"] == pytest.approx(10 + 0.95 * (50 - 10))
    assert [(r["origin"], r["reason"], r["failures"]) for r in store.panel("p", "failures", WHOLE_DAY)] == [
        ("client", "unknown_tool", 1),
        ("upstream", "upstream_error", 1),
    ]
    methods = {row["method"]: row for row in store.panel("p", "methods", WHOLE_DAY)}
    assert methods["mcp:tools/call"]["events"] == 5 and methods["mcp:tools/call"]["calls_per_list"] == 5.0
    assert methods["custom:ticket_opened"]["events"] == 1, "every event counted in the summary is shown somewhere"
    assert sum(row["events"] for row in methods.values()) == summary["events"]
    (empty,) = store.panel("p", "summary", Window(DAY - timedelta(days=9), DAY - timedelta(days=8)))
    assert empty["events"] == 0 and empty["success_rate"] is None, "no events: no success rate (not 100%)"
    assert [(r["prompt"], r["argument_keys"], r["uses"]) for r in store.panel("p", "prompts", WHOLE_DAY)] == [
        ("plan", "city", 1),
        ("plan", "city, days", 1),
    ]
    cost = {(r["tool"], r["user"]): (r["calls"], r["response_bytes"]) for r in store.panel("p", "cost", WHOLE_DAY)}
    assert cost == {("fetch", "bob"): (2, 6000), ("search", "alice"): (2, 400), ("nope", "(anonymous)"): (1, 0)}
    assert store.panel("p", "unused_tools", WHOLE_DAY) == [  # called two days before; listed, never called
        {"tool": "legacy_tool", "last_called": moment(9) - timedelta(days=2), "calls_before": 1, "last_listed": None},
        {"tool": "export", "last_called": None, "calls_before": 0, "last_listed": moment(8, 59)},
    ]
    clients = {r["client"]: (r["events"], r["sessions"], r["users"]) for r in store.panel("p", "clients", WHOLE_DAY)}
    assert clients == {"cursor": (3, 1, 1), "claude-ai": (3, 1, 1), "(unknown)": (3, 2, 0)}
    users = {r["user"]: (r["tool_calls"], r["failures"]) for r in store.panel("p", "users", WHOLE_DAY)}
    assert users == {"alice": (2, 0), "bob": (2, 1)}
    by_family = {(r["series"], r["events"]) for r in store.panel("p", "timeseries", WHOLE_DAY, by="family")}
    assert {series for series, _ in by_family} == {"requests", "capabilities", "custom"}
    assert sum(n for series, n in by_family if series == "requests") == 7


def exact_quantile(values: list[float], level: float) -> float:
    """DuckDB's ``quantile_cont``: interpolated between the sorted values around rank ``(n - 1) * level``."""
    ordered = sorted(values)
    at = (len(ordered) - 1) * level
    low = ordered[math.floor(at)]
    return low + (at - math.floor(at)) * (ordered[math.ceil(at)] - low)


def test_percentiles_are_within_one_percent_of_the_exact_ones_and_exact_for_a_value_alone(store):
    """The percentiles come from histograms (``store.BUCKET_GROWTH``): within ``PERCENTILE_ERROR`` of the exact
    quantile over thousands of spread durations (an own time below zero among them), exact for a tool whose
    calls took one time."""
    rng = random.Random(3)
    durations = [round(rng.lognormvariate(4, 1.5), 3) for _ in range(4000)]
    upstream = [round(rng.uniform(0, 1.2) * ms, 3) for ms in durations]
    store.add("p", [event(f"s{index}", resource="search", duration_ms=ms, upstream_ms=up,
                          timestamp_ns=at(9, 0) + index * 1000) for index, (ms, up) in enumerate(zip(durations, upstream, strict=True))]
              + [event(f"f{index}", resource="fixed", duration_ms=42.125, timestamp_ns=at(9, 1)) for index in range(7)])  # fmt: skip
    (search,) = [row for row in store.panel("p", "latency", WHOLE_DAY) if row["tool"] == "search"]
    own = [ms - up for ms, up in zip(durations, upstream, strict=True)]
    for column, values, level in (("p50_ms", durations, 0.5), ("p95_ms", durations, 0.95), ("p99_ms", durations, 0.99),
                                  ("own_p95_ms", own, 0.95), ("upstream_p95_ms", upstream, 0.95)):  # fmt: skip
        exact = exact_quantile(values, level)
        assert abs(search[column] - exact) <= PERCENTILE_ERROR * abs(exact) + 0.0005, (column, search[column], exact)
    assert min(own) < 0
    (fixed,) = [row for row in store.panel("p", "tools", WHOLE_DAY) if row["tool"] == "fixed"]
    assert fixed["p95_ms"] == 42.125


def test_trends_per_bucket_and_volume_by_tool_and_client(store):
    seeded(store)
    hour = Window(moment(9), moment(10))
    trends = store.panel("p", "trends", hour, bucket="10 minutes")
    assert [(row["bucket"], row["calls"], row["errors"]) for row in trends] == [(moment(9), 7, 2)]  # requests only
    (bucket,) = trends
    assert (bucket["upstream_errors"], bucket["client_errors"], bucket["auth_errors"], bucket["server_errors"]) == (
        1,
        1,
        0,
        0,
    )
    durations = sorted([10, 30, 200, 100, 1, 0, 0])  # the five tool calls and two prompts (no duration: 0)
    assert bucket["p50_ms"] == durations[3] and bucket["bucket_seconds"] == 600
    minutes = store.panel("p", "trends", hour)  # the default bucket for one hour: a minute
    assert [(row["bucket"].minute, row["calls"]) for row in minutes] == [
        (0, 1),
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 1),
        (5, 1),
        (6, 1),
    ]
    assert [row["p95_ms"] for row in minutes[:4]] == [10.0, 30.0, 200.0, 100.0]
    fetch = store.panel("p", "trends", hour, Slice(tool=("fetch",)), bucket="1 hour")
    assert [(row["calls"], row["errors"], row["upstream_share"]) for row in fetch] == [(2, 1, round(240 / 300, 4))]

    by_tool = {
        (row["series"], row["events"]) for row in store.panel("p", "timeseries", hour, bucket="1 hour", by="tool")
    }
    assert by_tool == {("search", 2), ("fetch", 2), ("nope", 1)}, "tool calls only, per tool"
    by_client = {
        (row["series"], row["events"]) for row in store.panel("p", "timeseries", hour, bucket="1 hour", by="client")
    }
    assert by_client == {("claude-ai", 2), ("cursor", 3), ("(unknown)", 3)}  # its tools/list was at 8:59


def test_extent_is_the_whole_history_whatever_the_window(store):
    assert store.panel("p", "extent", WHOLE_DAY) == [{"first_event": None, "last_event": None, "events": 0}]
    seeded(store)
    (extent,) = store.panel("p", "extent", Window(moment(0), moment(1)))
    assert extent["events"] == 10  # the client span "x1" is not counted
    assert extent["first_event"] == moment(9) - timedelta(days=2) and extent["last_event"] == moment(9, 7)


def test_a_session_timeline_is_in_order_with_intents_errors_and_custom_events(store):
    seeded(store)
    timeline = store.panel("p", "session", WHOLE_DAY, session="s1")
    assert [row["type"] for row in timeline] == [
        "mcp:tools/list",
        "mcp:tools/call",
        "mcp:tools/call",
        "mcp:prompts/get",
        "custom:ticket_opened",
    ]
    assert timeline[2]["intent"] == "find the quickstart"
    assert timeline[4]["message"] == "T-1 opened"
    (failed,) = [row for row in store.panel("p", "session", WHOLE_DAY, session="s2") if row["is_error"]][:1]
    assert (failed["error_message"], failed["failure_origin"]) == ("upstream said 503", "upstream")


def test_the_window_bounds_every_panel(store):
    seeded(store)
    morning = Window(DAY + timedelta(hours=9, minutes=2), DAY + timedelta(hours=9, minutes=4))
    assert store.panel("p", "summary", morning)[0]["events"] == 2
    assert [row["tool"] for row in store.panel("p", "tools", morning)] == ["fetch"]
    assert store.panel("p", "unused_tools", morning) == [
        {"tool": "search", "last_called": moment(9, 1), "calls_before": 2, "last_listed": moment(8, 59)},
        {"tool": "legacy_tool", "last_called": moment(9) - timedelta(days=2), "calls_before": 1, "last_listed": None},
        {"tool": "export", "last_called": None, "calls_before": 0, "last_listed": moment(8, 59)},
    ]


def test_unused_tools_are_those_listed_or_called_before_the_window_and_not_called_in_it(store):
    store.add("p", [
        event("l1", type="mcp:tools/list", tools_listed=["search", "export", "archive"], timestamp_ns=at(8, 0)),
        event("l2", type="mcp:tools/list", tools_listed=["search", "export"], timestamp_ns=at(10, 0)),
        event("l3", type="mcp:tools/list", tools_listed=["import"], timestamp_ns=at(13, 0)),  # after the window
        event("l4", type="mcp:tools/list", kind="client", tools_listed=["agent_side"], timestamp_ns=at(10, 0)),
        event("c1", resource="search", timestamp_ns=at(11, 0)),  # in the window
        event("c2", resource="archive", timestamp_ns=at(7, 0)),  # before it
    ])  # fmt: skip
    window = Window(moment(9), moment(12))
    assert store.panel("p", "unused_tools", window) == [
        {"tool": "archive", "last_called": moment(7), "calls_before": 1, "last_listed": moment(8)},
        {"tool": "export", "last_called": None, "calls_before": 0, "last_listed": moment(10)},
    ]


def test_every_panel_answers_on_an_empty_store(store):
    for name in PANELS:
        rows = store.panel("p", name, WHOLE_DAY, session="none")
        assert isinstance(rows, list)
    with pytest.raises(UnknownPanel):
        store.panel("p", "nope", WHOLE_DAY)


def test_the_schema_is_versioned_and_a_newer_file_is_refused(tmp_path):
    path = tmp_path / "events.duckdb"
    store = DuckDBStore(path)
    store.add("p", [event("e1")])
    assert store.schema_version == SCHEMA_VERSION
    store.close()
    reopened = DuckDBStore(path)  # migrations are not applied twice; data survives
    assert reopened.panel("p", "summary", WHOLE_DAY)[0]["events"] == 1
    reopened.close()
    with duckdb.connect(str(path)) as db:
        db.execute("INSERT INTO schema_version VALUES (?, now())", [SCHEMA_VERSION + 1])
    with pytest.raises(SchemaTooNew):
        DuckDBStore(path)


def test_a_version_1_file_is_migrated_and_keeps_its_events(tmp_path):
    path = tmp_path / "v1.duckdb"
    with duckdb.connect(str(path)) as db:  # a file as the release before version 2 left it
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
        db.execute(dict(MIGRATIONS)[1])
        db.execute("INSERT INTO schema_version VALUES (1, now())")
        db.execute("INSERT INTO events (project, event_id, ts, type, kind, resource, stateless, duration_ms, is_error) "
                   "VALUES ('p', 'old', ?, 'mcp:tools/call', 'server', 'legacy_tool', false, 5.0, false)",
                   [moment(9).replace(tzinfo=None) - timedelta(days=2)])  # fmt: skip
    store = DuckDBStore(path)
    assert store.schema_version == SCHEMA_VERSION == 10
    store.add("p", [event("l1", type="mcp:tools/list", tools_listed=["search", "legacy_tool"])])
    week = Window(moment(0) - timedelta(days=6), moment(0) + timedelta(days=1))  # version 7 rolled up the old event
    assert store.panel("p", "summary", week)[0]["events"] == 2
    rolled = [store.panel("p", name, week) for name in ("clients", "latency")]  # version 9 filled the histograms
    assert rolled[1][1]["tool"] == "legacy_tool" and rolled[1][1]["p95_ms"] == 5.0
    store.rollups = False
    assert rolled == [store.panel("p", name, week) for name in ("clients", "latency")]
    two_days_ago = moment(9) - timedelta(days=2)
    assert store.panel("p", "unused_tools", WHOLE_DAY) == [
        {"tool": "legacy_tool", "last_called": two_days_ago, "calls_before": 1, "last_listed": moment(9)},
        {"tool": "search", "last_called": None, "calls_before": 0, "last_listed": moment(9)},
    ]
    store.close()
    with duckdb.connect(str(path)) as db:
        assert db.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == [
            (1,),
            (2,),
            (3,),
            (4,),
            (5,),
            (6,),
            (7,),
            (8,),
            (9,),
            (10,),
        ]


def test_time_buckets_fit_the_window_and_all_starts_at_the_first_event(store):
    seeded(store)  # events within 10 minutes, plus one two days earlier
    day = store.panel("p", "timeseries", WHOLE_DAY)
    assert {row["bucket_seconds"] for row in day} == {15 * 60}  # 24 h in at most 120 buckets
    everything = store.panel("p", "timeseries", Window.parse(last="all", end=DAY + timedelta(days=1)))
    assert {row["bucket_seconds"] for row in everything} == {3600}  # three days of data, not 56 years
    assert sum(row["events"] for row in everything) == 10
    late = Window(moment(8, 57), moment(10, 57))
    assert [row["bucket"] for row in store.panel("p", "timeseries", late, bucket="1 hour")][:1] == [moment(8)]
    # buckets that divide an hour begin on its multiples (8:50, 9:00: the first request is at 9:00), others at the start
    assert [row["bucket"] for row in store.panel("p", "trends", late, bucket="10 minutes")][:1] == [moment(9)]
    assert [row["bucket"] for row in store.panel("p", "trends", late, bucket="7 minutes")][:1] == [moment(8, 57)]
    assert [row["bucket"] for row in store.panel("p", "trends", late, bucket="2 hours")] == [moment(8)], "on the hour"


def test_all_starts_at_the_first_event_the_panel_reads(store):
    """Not at a client's span, another project's event or an event deleted since: at the first of the panel's own (in
    its bucket, which begins on a multiple of its size within the hour: 15 minutes here, whole hours for ``q``)."""
    store.add("q", [event("q1", resource="search", timestamp_ns=at(7, 0) - 86_400 * 10**9)])
    store.add("p", [
        event("x", kind="client", resource="search", timestamp_ns=at(8, 10)),
        event("gone", resource="search", user_id="carol", timestamp_ns=at(8, 20)),
        event("a", resource="search", timestamp_ns=at(9, 31, 40)),
        event("b", resource="fetch", timestamp_ns=at(10, 45)),
    ])  # fmt: skip
    assert store.delete("p", user_id="carol") == 1
    everything = Window.parse(end=DAY + timedelta(days=1), last="all")
    for name in ("trends", "timeseries"):
        assert store.panel("p", name, everything)[0]["bucket"] == moment(9, 30), name
        assert store.panel("p", name, everything, Slice(tool=("fetch",)))[0]["bucket"] == moment(10, 45), name
        assert store.panel("q", name, everything)[0]["bucket"] == moment(7) - timedelta(days=1), name


def test_the_newest_intents_are_the_window_s_newest_whatever_the_limit(store):
    """Newest first, ties by event id: a limit met in the window's last hour, in its last 8 hours, or only in all
    of it; the next day's intent and a client's are not the window's."""
    newest = [("i1", 23, 59), ("i2", 23, 30), ("i3", 23, 30), ("i4", 20, 0), ("i5", 10, 0), ("i6", 9, 0)]
    store.add("p", [
        *(event(name, resource="search", intent=f"intent {name}", timestamp_ns=at(h, m)) for name, h, m in newest),
        event("next", resource="search", intent="tomorrow", timestamp_ns=at(24, 0)),
        event("agent", kind="client", resource="search", intent="the agent's", timestamp_ns=at(23, 50)),
    ])  # fmt: skip
    for limit in range(8):
        rows = store.panel("p", "intents", WHOLE_DAY, limit=limit)
        assert [(row["event_id"], row["intent"]) for row in rows] == [(n, f"intent {n}") for n, _, _ in newest][:limit]
    assert [row["event_id"] for row in store.panel("p", "intents", WHOLE_DAY, q="I3", limit=1)] == ["i3"]


def test_a_failure_s_example_is_its_newest_message_ties_by_event_id(store):
    """``failures`` and ``errors`` show each group's newest message, ties by event id: one answer on every store and
    every read, where any one message was shown before. A failure without a message is passed over; a group with
    none shows none; the next day's failure is not the window's."""

    def failing(name: str, hour: int, message: str | None, code: int = -32602, origin: str = "client") -> Event:
        error = {"type": str(code), "code": code} | ({} if message is None else {"message": message})
        reason = {"client": "invalid_params", "server": "internal_error"}[origin]
        return event(name, resource="search", timestamp_ns=at(hour, 0), is_error=True, error=error,
                     failure={"origin": origin, "reason": reason})  # fmt: skip

    store.add("p", [
        failing("f1", 10, "a tie, the lower id"),
        failing("f3", 9, "the oldest"),
        failing("f2", 10, "a tie, the higher id"),
        failing("f0", 11, None),  # the newest, without a message
        failing("g1", 12, None, code=-32603, origin="server"),
        failing("next", 24, "the next day's"),
    ])  # fmt: skip
    failures = {(row["origin"], row["reason"]): row["example"] for row in store.panel("p", "failures", WHOLE_DAY)}
    assert failures == {("client", "invalid_params"): "a tie, the higher id", ("server", "internal_error"): None}
    errors = {row["code"]: row["example"] for row in store.panel("p", "errors", WHOLE_DAY)}
    assert errors == {-32602: "a tie, the higher id", -32603: None}


def test_concurrent_batches_share_commits_and_each_event_is_stored_once(store):
    from concurrent.futures import ThreadPoolExecutor

    batches = [[event(f"e{(b * 7 + i) % 300}", timestamp_ns=at(9, 0, (b * 7 + i) % 300 % 60)) for i in range(20)]
               for b in range(60)]  # fmt: skip
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda batch: store.add("p", batch), batches))
    unique = {e["event_id"] for batch in batches for e in batch}
    assert sum(result.accepted for result in results) == len(unique)
    assert sum(result.accepted + result.duplicates for result in results) == 60 * 20
    assert store.panel("p", "summary", WHOLE_DAY)[0]["events"] == len(unique)


def test_a_bad_batch_never_fails_another_batch_of_its_group_commit(store):
    """Two requests whose batches share one group commit: the one the table refuses fails alone."""
    results: dict[str, object] = {}

    def add(name: str, batch: list[Event]) -> None:
        try:
            results[name] = store.add("p", batch)
        except Exception as error:  # noqa: BLE001 - what its request would answer
            results[name] = error

    good = [event("g1"), event("g2")]
    bad = [{**event("b1"), "content": "{not json"}]  # validation bypassed: the table itself refuses it
    with store._write:  # the writer is busy: both batches queue for the same commit
        threads = [threading.Thread(target=add, args=(name, batch)) for name, batch in (("good", good), ("bad", bad))]
        for thread in threads:
            thread.start()
        while len(store._queue) < 2:
            time.sleep(0.001)
    for thread in threads:
        thread.join(10)
    assert isinstance(results["bad"], duckdb.ConversionException)
    assert (results["good"].accepted, results["good"].duplicates) == (2, 0)
    assert store.panel("p", "summary", WHOLE_DAY)[0]["events"] == 2
    assert store.add("p", good).duplicates == 2, "the good batch was committed, and remembered"


def test_delete_by_age_and_by_user(store):
    store.add("p", [event("old", timestamp_ns=at(1, 0), user_id="alice"), event("new", timestamp_ns=at(20, 0), user_id="alice"),
                    event("bob", timestamp_ns=at(1, 0), user_id="bob")])  # fmt: skip
    store.add("q", [event("other", timestamp_ns=at(1, 0), user_id="alice")])
    assert store.delete("p", user_id="alice") == 2
    assert store.delete(None, before=moment(12)) == 2  # every project: p's bob, q's alice
    assert store.panel("p", "summary", WHOLE_DAY)[0]["events"] == 0
    assert store.panel("q", "summary", WHOLE_DAY)[0]["events"] == 0
    store.add("p", [event("new", timestamp_ns=at(20, 0), user_id="alice")])
    assert store.panel("p", "summary", WHOLE_DAY)[0]["events"] == 1, "a deleted event can be sent again"
    with pytest.raises(ValueError, match="delete what"):
        store.delete("p")


def test_the_panels_of_codes_shapes_servers_new_clients_unused_prompts_and_intents(store):
    store.add("p", [
        event("early", client_name="claude-ai", timestamp_ns=at(9, 0) - 86_400 * 10**9, type="mcp:prompts/get",
              resource="retired"),
        event("pl", type="mcp:prompts/list", prompts_listed=["plan", "summarize", "retired"], timestamp_ns=at(8, 0),
              server_name="docs", server_version="1.0"),
        event("a1", resource="search", argument_keys=["q", "limit"], server_name="docs", server_version="1.0",
              client_name="claude-ai", intent="Find the refund policy", timestamp_ns=at(9, 1)),
        event("a2", resource="search", argument_keys=["limit", "q"], server_name="docs", server_version="1.1",
              client_name="cursor", client_version="0.9", timestamp_ns=at(9, 2), intent="find pricing"),
        event("a3", resource="search", argument_keys=["query"], server_name="docs", client_name="cursor",
              client_version="1.0", timestamp_ns=at(9, 3), is_error=True, error={"type": "-32602", "code": -32602,
              "message": "Invalid params"}, failure={"origin": "client", "reason": "invalid_params"}),
        event("a4", resource="fetch", server_name="web", timestamp_ns=at(9, 4), duration_ms=40, is_error=True,
              error={"type": "-32603", "code": -32603, "message": "boom"}, failure={"origin": "server", "reason": "internal_error"}),
        event("a5", type="mcp:prompts/get", resource="plan", argument_keys=["city"], timestamp_ns=at(9, 5),
              is_error=True, error={"type": "-32602", "code": -32602, "message": "Missing city"},
              failure={"origin": "client", "reason": "invalid_params"}),
    ])  # fmt: skip
    codes = store.panel("p", "errors", WHOLE_DAY)
    assert [(r["code"], r["name"], r["errors"], r["methods"], r["origins"]) for r in codes] == [
        (-32602, "invalid params", 2, ["prompts/get", "tools/call"], ["client"]),
        (-32603, "internal error", 1, ["tools/call"], ["server"]),
    ]
    shapes = [(r["kind"], r["name"], r["argument_keys"], r["calls"], r["failures"], r["share"])
              for r in store.panel("p", "arguments", WHOLE_DAY)]  # fmt: skip
    assert shapes == [
        ("tool", "search", "limit, q", 2, 0, round(2 / 3, 4)),  # the same set in two orders: one shape
        ("prompt", "plan", "city", 1, 1, 1.0),
        ("tool", "fetch", "", 1, 1, 1.0),
        ("tool", "search", "query", 1, 1, round(1 / 3, 4)),
    ]
    servers = {
        r["server"]: (r["versions"], r["events"], r["failures"], r["p95_ms"])
        for r in store.panel("p", "servers", WHOLE_DAY)
    }
    assert servers == {"docs": ("1.0, 1.1", 4, 1, 0.0), "web": (None, 1, 1, 40.0), "(unknown)": (None, 1, 1, 0.0)}
    new = [
        (r["client"], r["first_seen"], r["versions"], r["events"]) for r in store.panel("p", "new_clients", WHOLE_DAY)
    ]
    assert new == [("cursor", moment(9, 2), "0.9, 1.0", 2)], "claude-ai was seen the day before"
    unused = store.panel("p", "unused_prompts", WHOLE_DAY)
    assert [(r["prompt"], r["last_used"], r["uses_before"], r["last_listed"]) for r in unused] == [
        ("retired", moment(9) - timedelta(days=1), 1, moment(8)),
        ("summarize", None, 0, moment(8)),
    ]
    assert [r["intent"] for r in store.panel("p", "intents", WHOLE_DAY)] == ["find pricing", "Find the refund policy"]
    assert [r["event_id"] for r in store.panel("p", "intents", WHOLE_DAY, q="REFUND")] == ["a1"], "any case"
    assert store.panel("p", "intents", WHOLE_DAY, q="%") == [], "no wildcards"
    (tools_search,) = [r for r in store.panel("p", "tools", WHOLE_DAY) if r["tool"] == "search"]
    assert tools_search["share"] == 0.75


def test_cost_estimates_tokens_from_bytes_at_each_tool_s_price():
    store = DuckDBStore(prices=Prices(2.0, {"fetch": 10.0}))
    try:
        store.add(
            "p",
            [event("c1", resource="search", response_size=4_000_000), event("c2", resource="fetch", response_size=400)],
        )
        cost = {r["tool"]: (r["est_tokens"], r["est_cost"]) for r in store.panel("p", "cost", WHOLE_DAY)}
    finally:
        store.close()
    assert cost == {"search": (1_000_000, 2.0), "fetch": (100, 0.001)}
    with pytest.raises(ValueError, match="tool=USD"):
        Prices.parse(None, ["fetch=cheap"])
    assert Prices.parse(None, ["a=1.5"]) == Prices(3.0, {"a": 1.5})


def test_slo_tiers_attainment_and_error_budget():
    store = DuckDBStore(slos=SLO_TIERS)
    try:
        assert_slo_tiers_attainment_and_error_budget(store)
    finally:
        store.close()


SLO_TIERS = Slos.parse({"tiers": {"light": 300, "medium": 2000}, "tools": {"exp*": "light"}})


def assert_slo_tiers_attainment_and_error_budget(store: Any) -> None:
    """Over a day, each tool's tier set by its p95 over the 7 days up to the day's end (or by its name), its calls
    within the tier's target; over those 7 days, the same tiers, and the calls of the days before counted too."""
    slow = [
        event(f"r{i}", resource="report", duration_ms=d, timestamp_ns=at(9, i))
        for i, d in enumerate([900, 1200, 2500] + [1000] * 17)
    ]
    fast = [
        event(f"s{i}", resource="search", duration_ms=50 if i < 18 else 400, timestamp_ns=at(10, i)) for i in range(20)
    ]
    old = [
        event(f"o{i}", resource="search", duration_ms=20, timestamp_ns=at(9, 0) - 3 * 86_400 * 10**9 + i)
        for i in range(5)
    ]
    store.add("p", slow + fast + old + [event("e1", resource="export", duration_ms=100, timestamp_ns=at(11, 0))])
    rows = {row["tool"]: row for row in store.panel("p", "slo", WHOLE_DAY)}
    report, search, export = rows["report"], rows["search"], rows["export"]
    assert (report["tier"], report["assigned"], report["target_ms"]) == ("medium", "observed", 2000.0)  # p95 ~1.1 s
    assert (report["calls"], report["within"], report["attainment"], report["met"]) == (20, 19, 0.95, True)
    assert report["budget_remaining"] == 0.0, "one slow call of twenty: the whole 5% budget"
    assert (search["tier"], search["assigned"]) == ("medium", "observed"), "p95 over 7 days: 330 ms, over light's 300"
    assert (search["calls"], search["within"], search["budget_remaining"]) == (20, 20, 1.0)
    assert (export["tier"], export["assigned"], export["within"]) == ("light", "pattern", 1)
    assert set(rows) == {"report", "search", "export"}, "tools not called in the window are not listed"
    week = store.panel("p", "slo", Window(WHOLE_DAY.end - timedelta(days=7), WHOLE_DAY.end))
    assert [(row["tool"], row["tier"], row["calls"], row["within"], row["p95_ms"]) for row in week] == [
        ("search", "medium", 25, 25, 330.0), ("report", "medium", 20, 19, rows["report"]["p95_ms"]),
        ("export", "light", 1, 1, 100.0),
    ]  # fmt: skip


def test_slo_configuration_is_checked():
    assert Slos.parse().tiers == {"light": 500.0, "medium": 2000.0, "heavy": 30000.0}
    parsed = Slos.parse({"tools": {"a*": "heavy"}}, tiers=["light=100"], tools=["ab=light"], objective=0.99)
    assert (
        parsed.tiers["light"] == 100.0
        and parsed.tools == (("ab", "light"), ("a*", "heavy"))
        and parsed.objective == 0.99
    )
    assert parsed.tier_of("abc", 1.0) == ("heavy", "pattern") and parsed.tier_of("ab", 9e9) == ("light", "pattern")
    assert parsed.tier_of("zzz", 1e6) == ("heavy", "slowest")
    for bad in ({"tools": {"x": "nope"}}, {"tiers": {"light": -1}}, {"objective": 2}, {"tiers": ["light"]},
                {"colour": 1}, {"tiers": {"light": "fast"}}):  # fmt: skip
        with pytest.raises(ValueError):  # noqa: PT011 - each bad spec has its own message
            Slos.parse(bad)
    with pytest.raises(ValueError, match="name=milliseconds"):
        Slos.parse(tiers=["light"])

"""The ClickHouse store's hourly rollups (``rollup_people``, ``rollup_runs``) answer exactly what the raw events do:
every rolled-up panel equals the same panel read from the raw rows (``ClickHouseStore(rollups=False)``) over windows
with partial hours at either edge, after out-of-order batches and retries, while hours are dirty and after rolls, when an insert
of another instance races a roll, when two instances roll at once, when a roll stopped before recording itself,
after deletion and retention, after the rows of superseded rolls are deleted, for runs that cross hours, and for an
instance with another session timeout; on ClickHouse 18.16 and on the current engine (``chdb``) where the test can
run there.

The populations, batches and windows are those of the DuckDB rollups' tests (``tests/test_rollups.py``)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("clickhouse_driver", reason="the clickhouse extra is not installed")


from mcp_analytics import api, clickhouse_store
from mcp_analytics.alerts import Rules
from mcp_analytics.api import create_app
from mcp_analytics.clickhouse_store import ClickHouseStore
from mcp_analytics.keys import ApiKeys
from mcp_analytics.models import Event, validated_event
from mcp_analytics.server import in_thread
from mcp_analytics.store import EPOCH, PANELS, Slice, Window
from tests import test_analytics_clickhouse as fixtures
from tests.test_rollups import DAYS, START, assert_read_as_raw_rows, fill, windows

clickhouse, make, store, engine = fixtures.clickhouse, fixtures.make, fixtures.store, fixtures.engine
pytestmark = pytest.mark.timeout(420)  # each comparison reads every rolled-up panel twice over ten windows

ROLLED = tuple(clickhouse_store._ROLLED_PANELS)
BOOKKEEPING = ("summary", "sessions", "tools", "methods")
"""A panel of each rollup (``summary``: the counts per client and user and the runs' pieces; ``sessions``: the runs
chosen; ``tools``: the tool calls and the timings per tool, by hour and by day; ``methods``: the counts per method),
which the tests of the rolls' bookkeeping (dirty hours, races, stopped rolls, another session timeout, the dirty
hours a deletion leaves) compare; every rolled-up panel is compared after out-of-order batches, the rolls after a
deletion and retention, superseded rows and compaction (with a dirty hour)."""


def assert_rollups_answer_as_raw_rows(
    store: ClickHouseStore, seed: int, projects: tuple[str, ...] = ("p", "q"), panels: tuple[str, ...] = ROLLED
) -> int:
    """Every panel of ``panels`` (rolled-up ones) over ``windows(seed)`` equals the raw rows' answer; returns how many
    answers read clean hours from the rollups."""
    from_rollups = 0
    for window in windows(seed)[:10]:  # the fixed ones and four at random
        for project in (*projects, "nobody"):
            for name in panels:
                store.rollups = True
                answer = store.panel(project, name, window, limit=1000)
                if store._rolled(name, window, Slice()):
                    from_rollups += store._clean(project, window)[1]["clean_hours"] != [0]
                store.rollups = False
                assert answer == store.panel(project, name, window, limit=1000), (project, name, window)
    store.rollups = True
    return from_rollups


def dirty_hours(store: ClickHouseStore, project: str | None = None) -> int:
    where = "1" if project is None else "project = %(project)s"
    state = store._run(clickhouse_store._STATE.format(where=where), {"project": project or ""})
    return sum(not store._is_clean(row) for row in state)


def rollup_rows(store: ClickHouseStore) -> int:
    return store._run("SELECT count() AS n FROM rollup_people", {})[0]["n"]


def test_rolled_up_panels_equal_the_raw_rows_after_out_of_order_batches_and_retries(engine, monkeypatch):
    """Rolls at random moments between the batches; reads while hours are dirty (no roll at the read), then after a
    roll at the read, then after every hour is rolled."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    rng = random.Random(11)
    fill(engine, 11, between=lambda: rng.random() < 0.4 and engine.roll())
    assert dirty_hours(engine) > 0 and rollup_rows(engine) > 0
    # how many hours the rolls between the batches left clean depends on the clock (a mark in a roll's second)
    assert assert_rollups_answer_as_raw_rows(engine, 11) > 0, "clean hours and dirty ones read together"
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 0)  # the first read rolls its project's dirty hours
    assert assert_rollups_answer_as_raw_rows(engine, 11) >= 30
    assert dirty_hours(engine) == 0
    assert engine.roll() == 0, "nothing left to roll"


def test_trends_in_buckets_of_15_and_30_minutes_read_the_clean_hours_quarters(engine, monkeypatch):
    """Buckets of 15 and 30 minutes begin on the quarter hours (``store.time_buckets``), so the clean whole hours'
    quarters (``rollup_quarters``) fill them: every answer equals the raw rows', over windows with partial hours at
    either edge and one of the whole history. Buckets of 10 minutes, which no quarter fills, are read raw."""
    fill(engine, 12)
    second_boundary()
    assert engine.roll() > 0 and dirty_hours(engine) == 0
    quarters: list[bool] = []
    run = ClickHouseStore._run
    monkeypatch.setattr(
        ClickHouseStore,
        "_run",
        lambda self, sql, values: quarters.append("rollup_quarters" in sql) or run(self, sql, values),
    )
    read = 0
    for window in windows(12)[:10]:
        for bucket, quartered in (("15 minutes", True), ("30 minutes", True), ("10 minutes", False)):
            engine.rollups, quarters[:] = True, []
            answer = engine.panel("p", "trends", window, bucket=bucket)
            assert any(quarters) == (quartered and engine._rolled("trends", window, Slice())), (window, bucket)
            read += any(quarters)
            engine.rollups = False
            assert answer == engine.panel("p", "trends", window, bucket=bucket), (window, bucket)
    assert read >= 12, "most windows hold a clean whole hour"


def test_reads_while_the_hours_are_dirty_equal_the_raw_rows(engine, monkeypatch):
    """Read between batches, the rollups behind the events by a few batches (rolled now and then by the reads)."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 8)
    seen = []

    def compare() -> None:
        seen.append(dirty_hours(engine, "p"))
        assert_read_as_raw_rows(
            engine, BOOKKEEPING, [Window(EPOCH, START + timedelta(days=DAYS)), windows(6)[-1], windows(6)[4]]
        )

    fill(engine, 6, between=compare)
    assert len(seen) >= 10 and sum(1 for hours in seen if hours) >= 5
    assert rollup_rows(engine) > 0


def second_boundary() -> None:
    """Until just after the clock's second changes: the steps that follow happen within one second."""
    time.sleep(1 - time.time() % 1 + 0.01)


def batch(prefix: str, hour: int, count: int = 20, user: str = "dave") -> list:
    at = START + timedelta(hours=hour, minutes=5)
    return [
        validated_event(event_id=f"{prefix}{i}", type="mcp:tools/call", user_id=user, client_name="Cursor",
                        session_id=f"{prefix}-s", timestamp_ns=int((at + timedelta(seconds=i)).timestamp() * 1e9))
        for i in range(count)
    ]  # fmt: skip


def test_an_insert_of_another_instance_racing_a_roll_leaves_its_hour_dirty(make, monkeypatch):
    """Instance two stores events in an hour while instance one rolls it, in the second its roll began: after the
    roll took its time R and before it read the events, then after it read them. Either way the mark (R or later) is
    not older than the roll: the hour stays dirty, read raw, until a roll that began after the mark."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    one = make()
    two = make(database=one.address.database)
    fill(one, 12)
    second_boundary()  # a mark in the second a roll began leaves its hour dirty
    one.roll()
    window = Window(START + timedelta(hours=1, minutes=30), START + timedelta(hours=30, minutes=30))
    hour = int((START + timedelta(hours=10)).timestamp())
    for step, when in enumerate(("before the roll read", "after the roll read")):
        for attempt in range(5):  # until the steps fit in one second (a loaded machine may take longer)
            second_boundary()
            roll = one._new_roll()
            began = roll >> clickhouse_store._ROLL_BITS
            if when == "before the roll read":
                two.add("p", batch(f"race{step}-{attempt}-", 10))
                one._count("p", [hour], roll)
            else:
                one._count("p", [hour], roll)
                two.add("p", batch(f"race{step}-{attempt}-", 10))
            one._rolled_at("p", [hour], roll)
            if one._now() == began:
                break
        else:
            pytest.fail("no attempt fit in one second")
        assert dirty_hours(one, "p") == 1, when
        for instance in (one, two):
            assert assert_rollups_answer_as_raw_rows(instance, 12, ("p",), BOOKKEEPING) > 0, when
        for name in ROLLED:  # (every client was first seen before the window: no new one)
            answer = one.panel("p", name, window)
            assert answer == two.panel("p", name, window) and (answer != []) == (name != "new_clients"), name
        summary = one.panel("p", "summary", window)[0]
        one.rollups = False
        assert summary == one.panel("p", "summary", window)[0]
        one.rollups = True
    second_boundary()
    assert one.roll("p") == 3 and dirty_hours(one, "p") == 0, "its hour, then the two beside it anew"
    assert assert_rollups_answer_as_raw_rows(two, 12, ("p",), BOOKKEEPING) > 0


def test_two_instances_rolling_at_once_while_a_third_inserts_are_exact(make, monkeypatch):
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    one = make()
    two, three = (make(database=one.address.database) for _ in range(2))
    fill(one, 13)
    errors: list[BaseException] = []

    def guarded(job) -> None:
        try:
            job()
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread
            errors.append(error)

    def rolls(store: ClickHouseStore) -> None:
        for _ in range(6):
            store.roll()

    def inserts() -> None:
        for index in range(12):
            three.add("p", batch(f"third{index}-", index * 5 % 70, count=15, user=f"u{index % 3}"))

    threads = [threading.Thread(target=guarded, args=(job,)) for job in (lambda: rolls(one), lambda: rolls(two),
                                                                          inserts)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not errors, errors
    assert assert_rollups_answer_as_raw_rows(one, 13, panels=BOOKKEEPING) > 0
    second_boundary()
    one.roll()
    assert dirty_hours(one) == 0
    assert assert_rollups_answer_as_raw_rows(two, 13, panels=BOOKKEEPING) >= 30


def test_a_roll_that_stopped_before_recording_itself_changes_no_answer(make, monkeypatch):
    """A roll that wrote its counts and stopped before recording its hours: clean hours read the recorded roll's rows
    (by its id; the unrecorded roll's are never read), dirty ones are still read raw."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    store = make()
    fill(store, 14)
    second_boundary()
    store.roll()
    second_boundary()
    store.add("p", batch("late-", 20))  # hour 20 dirty
    store.roll("q")
    second_boundary()
    hours = sorted({int((START + timedelta(hours=h)).timestamp()) for h in range(0, 72, 3)})
    rows = rollup_rows(store)
    store._count("p", hours, store._new_roll())  # and never recorded
    assert rollup_rows(store) > rows and dirty_hours(store, "p") == 1
    assert assert_rollups_answer_as_raw_rows(store, 14, panels=BOOKKEEPING) >= 30


@contextmanager
def at_schema(version: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stores made in the block are of an earlier release, of schema ``version``."""
    with monkeypatch.context() as earlier:
        earlier.setattr(clickhouse_store, "MIGRATIONS", [m for m in clickhouse_store.MIGRATIONS if m[0] <= version])
        earlier.setattr(clickhouse_store, "SCHEMA_VERSION", version)
        yield


def filled(make: Callable[..., ClickHouseStore]) -> ClickHouseStore:
    """A new store with seed 15's events (``fill``), each hour's last mark a second before now."""
    store = make()
    fill(store, 15)
    second_boundary()
    return store


def test_an_upgrade_reads_every_hour_raw_until_rolled_anew_and_an_earlier_release_s_roll_is_not_read(make, monkeypatch):
    """A database at schema 8 whose every hour an earlier release rolled (recorded clean): migrating to 9 (and on) marks
    every hour dirty, so the panels and the slices by origin read them raw (the new ``rollup_failed`` is empty) until this
    release rolls them; a roll recorded later by the earlier release (schema 8: it writes no copies), or by schema 10
    (no quarters), leaves its hours dirty."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    failures = Slice(origin=("server", "upstream", "client"))
    with at_schema(8, monkeypatch):
        old = filled(make)
        hours = old._run("SELECT DISTINCT project, toUInt32(hour) AS hour FROM rollup_dirty ORDER BY hour", {})
        for project in ("p", "q"):
            old._rolled_at(project, [row["hour"] for row in hours if row["project"] == project], old._new_roll())
        assert old.schema_version == 8 and dirty_hours(old) == 0 and len(hours) >= 60
    store = make(database=old.address.database)
    assert store.schema_version == clickhouse_store.SCHEMA_VERSION == 12
    assert dirty_hours(store) == len(hours)
    assert assert_rollups_answer_as_raw_rows(store, 15, panels=BOOKKEEPING) == 0
    assert_sliced_as_raw_rows(store, failures, 15)
    assert store.roll() == len(hours) and dirty_hours(store) == 0
    assert assert_rollups_answer_as_raw_rows(store, 15, panels=BOOKKEEPING) >= 30
    assert_sliced_as_raw_rows(store, failures, 15)
    with store._client() as client:  # the earlier release rolls every hour again: recorded with its schema
        client.execute("INSERT INTO rollup_rolls SELECT project, hour, roll + 1, gap, 8 FROM rollup_rolls")
    assert dirty_hours(store) == len(hours), "an earlier release's roll makes no hour clean"
    assert_sliced_as_raw_rows(store, failures, 15)
    with store._client() as client:  # and a release of schema 10, which writes no quarters, rolls them once more
        client.execute("INSERT INTO rollup_rolls SELECT project, hour, roll + 2, gap, 10 FROM rollup_rolls")
    assert dirty_hours(store) == len(hours), "nor does schema 10's"


def test_an_upgrade_to_12_reads_the_timings_raw_until_rolled_anew_sorted_by_view_and_measure(make, monkeypatch):
    """A database at schema 11 whose every hour was rolled and whose days were compacted: migrating to 12 makes the
    timings' tables anew (sorted by view and measure before the time) and marks every hour dirty, so the panels that
    read timings answer as the raw rows from the events, then, once rolled and compacted anew, from the new tables; a
    roll recorded by schema 11 (which writes the same rows) makes its hours clean."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    timed = ("latency", "tools", "servers", "slo", "trends")
    with at_schema(11, monkeypatch):
        old = filled(make)
        rolled = old.roll()
        assert old.schema_version == 11 and dirty_hours(old) == 0 and rolled >= 60
        assert old._run("SELECT count() AS n FROM rollup_days", {})[0]["n"] > 0
    store = make(database=old.address.database)
    assert store.schema_version == 12 and dirty_hours(store) == rolled
    assert store._run("SELECT count() AS n FROM rollup_timings", {})[0]["n"] == 0
    assert assert_rollups_answer_as_raw_rows(store, 15, panels=timed) == 0
    assert store.roll() == rolled and dirty_hours(store) == 0
    assert store._run("SELECT count() AS n FROM rollup_timings_days", {})[0]["n"] > 0
    assert assert_rollups_answer_as_raw_rows(store, 15, panels=timed) >= 30
    with store._client() as client:
        for table, key in (("rollup_timings", "hour, roll"), ("rollup_timings_days", "day, compaction")):
            assert f"ORDER BY (project, view, measure, {key})" in client.execute(f"SHOW CREATE TABLE {table}")[0][0]
        client.execute("INSERT INTO rollup_rolls SELECT project, hour, roll + 1, gap, 11 FROM rollup_rolls")
    assert dirty_hours(store) == 0, "schema 11's roll writes the rows schema 12 reads"


def assert_sliced_as_raw_rows(store: ClickHouseStore, slice: Slice, seed: int) -> None:
    """Every panel sliced by ``slice`` over ``windows(seed)`` (the first ten) answers as the raw rows do."""
    for window in windows(seed)[:10]:
        for name in PANELS:
            store.rollups = True
            answer = store.panel("p", name, window, slice, limit=1000)
            store.rollups = False
            assert answer == store.panel("p", name, window, slice, limit=1000), (name, window, slice)
    store.rollups = True


def test_a_slice_by_failure_origin_reads_its_clean_hours_from_the_copies_of_the_failed_events(engine, monkeypatch):
    """A slice by origin (which only events with one match) reads the clean whole hours of its range from
    ``rollup_failed`` and the rest from the events: every panel so sliced, alone and with a client, answers as the raw
    rows do with some hours dirty (and second copies of some failures) and once all are rolled; the copies are what it reads (a failure deleted from the
    events of a clean hour behind the store's back is still counted; read raw, it is not), and a slice without an
    origin reads the events."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    rng = random.Random(21)
    events = fill(engine, 21, between=lambda: rng.random() < 0.4 and engine.roll())
    failed = [event for project, event in events if project == "p" and event.get("failure")]
    fixtures.second_copies(engine, failed[:40])  # as two instances storing one batch at once leave them
    assert dirty_hours(engine) > 0
    slices = [Slice(origin=("server", "upstream", "client")), Slice(origin=("auth",), client=("Cursor", "(unknown)"))]
    for slice in slices:
        assert_sliced_as_raw_rows(engine, slice, 21)
    second_boundary()
    engine.roll()
    assert dirty_hours(engine) == 0
    copies = engine._run(
        """SELECT count() AS n FROM rollup_failed
        WHERE (project, hour, roll) IN (SELECT project, hour, max(roll) FROM rollup_rolls GROUP BY project, hour)""",
        {},
    )[0]["n"]
    stored = engine._run("SELECT count() AS n FROM events FINAL WHERE failure_origin IS NOT NULL", {})[0]["n"]
    assert copies == stored > 100, "every failure copied once by its hour's roll, its second copy left out"
    for slice in slices:
        assert_sliced_as_raw_rows(engine, slice, 21)
    week = Window(EPOCH, START + timedelta(days=DAYS + 1))
    assert "rollup_failed" not in engine._read("p", "failures", week, Slice(client=("Cursor",))).source
    server = Slice(origin=("server",))
    before = sum(row["failures"] for row in engine.panel("p", "failures", week, server))
    with engine._client() as client:
        (hour,) = client.execute(
            "SELECT toUInt32(toStartOfHour(min(at))) FROM events WHERE project = 'p' AND failure_origin = 'server'"
        )[0]
        gone = client.execute(
            "SELECT count() FROM events FINAL WHERE project = 'p' AND failure_origin = 'server'"
            " AND toUInt32(toStartOfHour(at)) = %(hour)s",
            {"hour": hour},
        )[0][0]
        client.execute(
            "ALTER TABLE events DELETE WHERE failure_origin = 'server' AND toUInt32(toStartOfHour(at)) = %(hour)s",
            {"hour": hour},
        )
        ClickHouseStore._wait_for_mutations(client)
    assert gone > 0
    assert sum(row["failures"] for row in engine.panel("p", "failures", week, server)) == before
    engine.rollups = False
    assert sum(row["failures"] for row in engine.panel("p", "failures", week, server)) == before - gone


def test_a_history_read_takes_the_hour_its_window_starts_in_from_the_events(store):
    """``unused_tools`` counts the uses before its window and finds those in it from one read of the clean hours up
    to the window's end: the hour the window starts in, rolled and clean, is read from the events, so a call a minute
    before the start counts before it and one a minute after is in the window. ``new_clients`` reads the same hours:
    a client seen a minute before the start is not new; one first seen a minute after is."""

    def call(name: str, tool: str | None, hour: int, minute: int, **fields) -> Event:
        moment = START + timedelta(hours=hour, minutes=minute)
        fields.setdefault("type", "mcp:tools/call")
        return validated_event(event_id=name, resource=tool, timestamp_ns=int(moment.timestamp() * 1e9), **fields)

    store.add("p", [
        call("list", None, 2, 0, type="mcp:tools/list", tools_listed=["search", "fetch", "report", "purge"]),
        call("r", "report", 3, 0), call("f", "fetch", 5, 29), call("s", "search", 5, 31), call("f2", "fetch", 9, 0),
        call("o1", "search", 5, 29, client_name="old"), call("o2", "search", 6, 0, client_name="old", is_error=True),
        call("z1", "search", 5, 31, client_name="zed", client_version="1.0", user_id="ann"),
        call("z2", "search", 7, 0, client_name="zed", client_version="1.1", user_id="bob", is_error=True),
        call("l1", "search", 7, 30, client_name="late"),
    ])  # fmt: skip
    second_boundary()
    assert store.roll("p") == 6
    window = Window(START + timedelta(hours=5, minutes=30), START + timedelta(hours=8))
    assert store._rolled("unused_tools", window, Slice())
    clean = store._clean("p", Window(EPOCH, window.end), cut=int(window.start.timestamp() * 1e6))[1]["clean_hours"]
    assert clean == [int((START + timedelta(hours=h)).timestamp()) for h in (2, 3, 6, 7)], "the 5th hour is read raw"
    rows = store.panel("p", "unused_tools", window)
    assert [(row["tool"], row["calls_before"]) for row in rows] == [("fetch", 1), ("report", 1), ("purge", 0)]
    assert rows[0]["last_called"] == START + timedelta(hours=5, minutes=29)
    assert rows[2]["last_listed"] == START + timedelta(hours=2)
    clients = store.panel("p", "new_clients", window)
    assert [(row["client"], row["versions"], row["events"], row["users"], row["failures"]) for row in clients] == [
        ("late", None, 1, 0, 0),
        ("zed", "1.0, 1.1", 2, 2, 1),
    ]
    assert clients[1]["first_seen"] == START + timedelta(hours=5, minutes=31)
    store.rollups = False
    assert store.panel("p", "unused_tools", window) == rows and store.panel("p", "new_clients", window) == clients


def test_the_destructive_new_client_rule_reads_when_clients_were_first_seen_from_the_rollups(store):
    """``destructive_new_client`` finds the clients first seen in the last day as ``new_clients`` reads them: the clean
    hours' first instants from ``rollup_clients`` (exact, so a client first seen at the day's very start is new and one
    a microsecond before is not), the partial hour from the events; the same alerts as the raw rows'. Shown to be read
    from the rollups: with an old client's first events deleted behind the store's back, the raw rows call it new."""
    now = START + timedelta(days=1, hours=6, minutes=15)
    day_before = now - timedelta(hours=24)

    def call(name: str, client: str, moment: datetime, **fields) -> Event:
        fields.setdefault("type", "mcp:tools/call")
        fields.setdefault("resource", "search")
        return validated_event(event_id=name, client_name=client, timestamp_ns=int(moment.timestamp() * 1e9), **fields)

    store.add("p", [
        call("list", "host", START + timedelta(hours=2), type="mcp:tools/list", resource=None,
             tools_listed=["search", "purge"], destructive_tools=["purge"]),
        call("o1", "old", START + timedelta(hours=3, minutes=10)), call("o2", "old", START + timedelta(hours=3, minutes=50)),
        call("b1", "boundary", day_before), call("j1", "just_old", day_before - timedelta(microseconds=1)),
        call("f1", "fresh", now - timedelta(minutes=5), resource="purge"),
        *(call(f"{name}p", name, now - timedelta(minutes=20), resource="purge")
          for name in ("old", "boundary", "just_old")),
        call("bp2", "boundary", now - timedelta(minutes=10), resource="purge"),
    ])  # fmt: skip
    second_boundary()
    assert store.roll("p") == 5
    read = store._read("p", "new_clients", Window(EPOCH, now), Slice())
    hours = [int((START + timedelta(hours=h)).timestamp()) for h in (2, 3, 6, 29)]
    assert read.rolled and read.values["clean_hours"] == hours, "every hour but the partial one from the rollups"

    def alerts() -> dict[str, float]:
        found = store.deviations("p", now, Rules())
        return {alert.subject: alert.observed for alert in found if alert.rule == "destructive_new_client"}

    assert alerts() == {"purge by boundary": 2.0, "purge by fresh": 1.0}
    store.rollups = False
    assert alerts() == {"purge by boundary": 2.0, "purge by fresh": 1.0}
    with store._client() as client:
        client.execute("ALTER TABLE events DELETE WHERE client_name = 'old' AND at < toDateTime(%(hour)s)",
                       {"hour": hours[2]})  # fmt: skip
        ClickHouseStore._wait_for_mutations(client)
    assert alerts() == {"purge by boundary": 2.0, "purge by fresh": 1.0, "purge by old": 1.0}
    store.rollups = True
    assert alerts() == {"purge by boundary": 2.0, "purge by fresh": 1.0}


def test_latency_spike_s_usual_p95_from_the_rollups_equals_the_raw_rows(engine, monkeypatch):
    """Each tool's p95 over the 24 hours before the last 15 minutes, read with its whole hours from the rollups, equals
    the raw rows' at instants on, just after and inside hours."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    fill(engine, 15)
    second_boundary()
    engine.roll()
    for now in (START + timedelta(days=2), START + timedelta(days=2, minutes=15, microseconds=1),
                START + timedelta(days=1, hours=17, minutes=41, seconds=7)):  # fmt: skip
        usual = Window(now - timedelta(hours=24, minutes=15), now - timedelta(minutes=15))
        assert engine._read("p", "slo", usual, Slice()).values["clean_hours"] != [0]
        rolled = engine._usual_p95("p", now)
        engine.rollups = False
        assert engine._usual_p95("p", now) == rolled and len(rolled) == 3, now
        engine.rollups = True


def test_a_session_s_timeline_reads_only_the_hours_its_runs_are_in_and_those_not_clean(engine, monkeypatch):
    """A session's timeline (by its id) reads, of the clean hours, only those whose runs (``rollup_runs``) hold it, and
    every hour that is not clean: each session's timeline equals the raw rows' with every hour clean, then with an
    event of it in an hour it was not in (dirty); and an event of it stored in such an hour without the hour's mark
    (behind the store's back) is not read, where the raw rows read it."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    fill(engine, 15)
    second_boundary()
    engine.roll()
    window = Window(START, START + timedelta(hours=1))  # the timeline reads the whole history whatever the window
    sessions = [(project, f"s{n}") for project in ("p", "q") for n in range(13)]  # s12: none

    def timelines() -> list[list[dict]]:
        return [engine.panel(project, "session", window, session=key, limit=1000) for project, key in sessions]

    def read_hours(project: str, key: str) -> list[int]:
        return [row["held"] for row in engine._run(clickhouse_store._SESSION_HOURS, engine._clean(
            project, Window(EPOCH, datetime.now(UTC)))[1] | {"project": project, "session": key})]  # fmt: skip

    rolled = timelines()
    assert sum(map(len, rolled)) > 500 and rolled[12] == rolled[-1] == []
    clean = engine._clean("p", Window(EPOCH, datetime.now(UTC)))[1]["clean_hours"]
    held = read_hours("p", "s0")
    assert len(clean) >= DAYS * 24 and 0 < len(held) < len(clean) - 10, "s0's hours, not all"
    hour = next(hour for hour in clean if hour not in held)
    engine.rollups = False
    assert timelines() == rolled
    engine.rollups = True

    def visit(name: str, hour: int) -> Event:
        return validated_event(event_id=name, session_id="s0", timestamp_ns=(hour + 1800) * 10**9, type="mcp:ping")

    engine.add("p", [visit("x1", hour)])  # marked: the hour is dirty
    rolled = timelines()
    assert "x1" in [row["event_id"] for row in rolled[0]]
    engine.rollups = False
    assert timelines() == rolled
    engine.rollups = True
    second_boundary()
    engine.roll()
    assert hour in read_hours("p", "s0")
    other = next(hour for hour in clean if hour not in read_hours("p", "s0"))
    monkeypatch.setattr(clickhouse_store, "_MARK", "SELECT %(project)s, %(hours)s")  # the insert's mark lost
    engine.add("p", [visit("x2", other)])
    assert "x2" not in [row["event_id"] for row in engine.panel("p", "session", window, session="s0", limit=1000)]
    engine.rollups = False
    assert "x2" in [row["event_id"] for row in engine.panel("p", "session", window, session="s0", limit=1000)]


def test_rollups_equal_the_raw_rows_after_deletion_and_retention(engine, monkeypatch):
    """A user's events deleted (their keys' rows stay in the rollups, of an older roll: not read), then retention
    in the middle of a day (the days before dropped from the rollups too, the rest of the cutoff's day dirty)."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    fill(engine, 15)
    second_boundary()
    engine.roll()
    assert dirty_hours(engine) == 0
    anonymous = engine._run("SELECT count() AS n FROM events FINAL WHERE user_id IS NULL", {})[0]["n"]
    assert engine.delete(None, user_id="bob") > 0
    after = engine._run("SELECT count() AS n FROM events FINAL WHERE user_id IS NULL", {})[0]["n"]
    assert after == anonymous > 0, "a user's deletion keeps the events of no user"
    copied = engine._run("SELECT countIf(user_id = 'bob') AS bob, count() AS n FROM rollup_failed", {})[0]
    assert copied["bob"] == 0 < copied["n"], "and deletes the copies of their failed events at once"
    assert dirty_hours(engine) > 0
    assert assert_rollups_answer_as_raw_rows(engine, 15, panels=BOOKKEEPING) >= 30
    second_boundary()
    engine.roll()
    assert dirty_hours(engine) == 0
    stale = engine._run("SELECT count() AS n FROM rollup_people WHERE user_id = 'bob'", {})[0]["n"]
    assert stale > 0, "bob's rows of the older roll are still in the table..."
    assert assert_rollups_answer_as_raw_rows(engine, 15) >= 30, "...and no answer counts them"
    assert all(row["user"] != "bob" for row in engine.panel("p", "users", Window(EPOCH, START + timedelta(days=9))))
    cutoff = START + timedelta(days=1, hours=13, minutes=20)
    assert engine.delete(None, before=cutoff) > 0
    first = engine._run("SELECT toUInt32(toYYYYMMDD(min(hour))) AS day FROM rollup_people", {})[0]["day"]
    assert first == 20261121, "the rollups of the day dropped are dropped"
    assert assert_rollups_answer_as_raw_rows(engine, 15, panels=BOOKKEEPING) >= 30
    second_boundary()
    engine.roll()
    assert assert_rollups_answer_as_raw_rows(engine, 15) >= 30


def rolls_per_hour(store: ClickHouseStore, table: str = "rollup_people") -> dict[tuple[str, int], set[int]]:
    """The rolls whose rows ``table`` holds, per project and hour."""
    rows = store._run(f"SELECT DISTINCT project, toUInt32(hour) AS hour, roll FROM {table}", {})  # noqa: S608 - a table of ours
    found: dict[tuple[str, int], set[int]] = {}
    for row in rows:
        found.setdefault((row["project"], row["hour"]), set()).add(row["roll"])
    return found


def test_the_rows_of_superseded_rolls_are_deleted_and_no_answer_changes(engine, monkeypatch):
    """Hours rolled twice hold two rolls' rows until the newer is ``SUPERSEDED_AFTER`` old; then only the recorded
    roll's rows stay, and those of a newer roll not yet recorded (in progress) are kept."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    monkeypatch.setattr(clickhouse_store, "SUPERSEDED_AFTER", 0)
    fill(engine, 16)
    second_boundary()
    engine.roll()
    for hour in (5, 20, 40):
        engine.add("p", batch(f"late{hour}-", hour))
    second_boundary()
    assert engine.roll() == 9, "three hours, then the two beside each anew"
    unrecorded = engine._new_roll()
    engine._count("q", [int((START + timedelta(hours=7)).timestamp())], unrecorded)
    tables = clickhouse_store._ROLLUPS
    before = {table: rolls_per_hour(engine, table) for table in tables}
    late = {
        ("p", int((START + timedelta(hours=hour + step)).timestamp())) for hour in (5, 20, 40) for step in (-1, 0, 1)
    }
    for table in tables:
        twice = {key for key, rolls in before[table].items() if len(rolls) == 2}
        assert twice == (late | {("q", int((START + timedelta(hours=7)).timestamp()))}) & before[table].keys(), table
        assert max(len(rolls) for rolls in before[table].values()) == 2, table
    assert len({key for key, rolls in before["rollup_people"].items() if len(rolls) == 2}) == 10, "nine, one more"
    second_boundary()
    engine._drop_superseded()
    with engine._client() as client:
        for table in tables:
            engine._wait_for_mutations(client, table=table)
    state = engine._run(clickhouse_store._STATE.format(where="1"), {})
    recorded = {(row["project"], row["hour"]): row["roll"] for row in state}
    for table in tables:
        after = rolls_per_hour(engine, table)
        assert after.keys() == before[table].keys()
        for key, rolls in after.items():
            assert rolls == {recorded[key]} | ({unrecorded} & before[table][key]), (table, key)
        assert any(unrecorded in rolls for rolls in after.values()), "the roll in progress keeps its rows"
    assert assert_rollups_answer_as_raw_rows(engine, 16) >= 30


def compactions(store: ClickHouseStore) -> dict[tuple[str, int], set[int]]:
    """The compactions whose rows ``rollup_timings_days`` holds, per project and day."""
    rows = store._run("SELECT DISTINCT project, toUInt32(day) AS day, compaction FROM rollup_timings_days", {})
    found: dict[tuple[str, int], set[int]] = {}
    for row in rows:
        found.setdefault((row["project"], row["day"]), set()).add(row["compaction"])
    return found


def test_the_timings_of_days_whose_hours_are_all_clean_are_read_from_their_compaction(engine, monkeypatch):
    """A roll compacts every ended day whose hours are all clean: its hours' timings summed per day, recorded with the
    digest of the rolls they were summed from. A read over whole days reads those days' rows, not their hours'. An
    insert into a compacted day leaves its compaction unread (the hour is dirty) until a roll counts the hour anew and
    compacts the day again; the older compaction's rows are then deleted. Every answer equals the raw rows'."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    monkeypatch.setattr(clickhouse_store, "SUPERSEDED_AFTER", 0)
    fill(engine, 17)
    second_boundary()
    engine.roll()
    days = {(row["project"], row["day"]) for row in engine._run(
        "SELECT DISTINCT project, toUInt32(toStartOfDay(at)) AS day FROM events", {})}  # fmt: skip
    recorded = engine._run("SELECT project, toUInt32(day) AS day FROM rollup_days", {})
    assert sorted((row["project"], row["day"]) for row in recorded) == sorted(days), "every day compacted once"
    first = compactions(engine)
    assert first.keys() <= days and all(len(ids) == 1 for ids in first.values())
    assert ("p", int(START.timestamp()) + 86400) in first
    requests = engine._run(
        "SELECT toUInt32(toStartOfDay(at)) AS day, count() AS n FROM events FINAL WHERE project = 'p'"
        " AND kind != 'client' AND has(%(requests)s, type) GROUP BY day ORDER BY day",
        {"requests": list(clickhouse_store.REQUEST_TYPES)},
    )
    summed = engine._run(
        "SELECT toUInt32(day) AS day, sum(n) AS n FROM rollup_timings_days WHERE project = 'p' AND view = 'all'"
        " AND measure = 'd' GROUP BY day ORDER BY day",
        {},
    )
    assert summed == requests, "a day's histogram of all requests counts each of its requests once"
    whole = Window(START, START + timedelta(days=DAYS))
    day = int(START.timestamp()) + 86400
    all_days = [int(START.timestamp()) + 86400 * i for i in range(DAYS)]
    assert engine._clean("p", whole, daily=True)[1]["compacted_days"] == all_days
    assert engine._clean("p", whole)[1]["compacted_days"] == [0], "not looked up for panels that read no day rows"
    assert (
        engine._clean("p", Window(START + timedelta(minutes=1), whole.end), daily=True)[1]["compacted_days"]
        == all_days[1:]
    )
    assert_read_as_raw_rows(engine, ROLLED, [whole])
    assert assert_rollups_answer_as_raw_rows(engine, 17) >= 30

    engine.add("p", batch("late", 30))  # an hour of the second day
    assert engine._clean("p", whole, daily=True)[1]["compacted_days"] == [all_days[0]], (
        "its hour is dirty: the first of the longest runs of consecutive compacted days"
    )
    assert_read_as_raw_rows(engine, ROLLED, [whole])
    second_boundary()
    assert engine.roll() == 3, "its hour, then the two beside it anew (of the same day)"
    second = compactions(engine)
    assert second[("p", day)] > first[("p", day)] and len(second[("p", day)]) == 2, "the day compacted anew"
    assert {key: ids for key, ids in second.items() if key != ("p", day)} == {
        key: ids for key, ids in first.items() if key != ("p", day)
    }, "and no other"
    assert engine._clean("p", whole, daily=True)[1]["compacted_days"] == all_days
    assert engine._clean("p", whole, daily=True)[1]["compactions"][1] == max(second[("p", day)])
    assert_read_as_raw_rows(engine, ROLLED, [whole])
    second_boundary()
    engine._dropped_at = 0
    engine._drop_superseded()
    with engine._client() as client:
        engine._wait_for_mutations(client, table="rollup_timings_days")
    assert compactions(engine)[("p", day)] == {max(second[("p", day)])}, "the older compaction's rows deleted"
    assert assert_rollups_answer_as_raw_rows(engine, 17) >= 30


def test_a_roll_counts_only_the_hours_that_have_ended(store, monkeypatch):
    """The current hour stays dirty (read from the events, at a window's edge) until it is over."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    if not 5 < time.time() % 3600 < 3590:  # the events and the roll in one hour, a second into it at least
        time.sleep((5.1 - time.time() % 3600) % 3600)
    now = datetime.now(UTC)
    events = [
        validated_event(event_id=f"now{i}", type="mcp:tools/call", user_id="erin", client_name="Zed",
                        session_id="now-s", timestamp_ns=int((now - timedelta(hours=2 * i, seconds=1)).timestamp() * 1e9))
        for i in range(2)
    ]  # fmt: skip
    store.add("p", events)
    second_boundary()
    assert store.roll() == 1 and dirty_hours(store, "p") == 1, "the hour two hours ago, not the current one"
    window = Window(now - timedelta(hours=3), now + timedelta(hours=2))
    answer = store.panel("p", "summary", window)
    store.rollups = False
    assert answer == store.panel("p", "summary", window) and answer[0]["events"] == 2


def test_a_read_that_rolls_reads_no_hour_final_after_it(engine, monkeypatch):
    """A rolled-up panel over more dirty hours than ``ROLL_AT_READ`` rolls them first; the hours that roll found
    free of second copies are then read as they are, not ``FINAL``."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 0)
    fill(engine, 17)
    doubled: list[Sequence[int]] = []
    events = clickhouse_store._events

    def recorded(
        slice: Slice, project: str, scope: tuple, hours: Sequence[int], within: str = "", **named: str
    ) -> tuple[str, dict]:
        doubled.append(hours)
        return events(slice, project, scope, hours, within, **named)

    monkeypatch.setattr(clickhouse_store, "_events", recorded)
    second_boundary()
    window = Window(START, START + timedelta(days=DAYS))
    assert dirty_hours(engine, "p") > 0
    answer = engine.panel("p", "summary", window)
    assert dirty_hours(engine, "p") == 0 and doubled == [[], []], "its events, and the edges beside the rollups"
    engine.rollups = False
    assert answer == engine.panel("p", "summary", window)


def test_the_api_rolls_the_dirty_hours_at_start_up_and_then_every_minute(make, monkeypatch):
    monkeypatch.setattr(api, "ROLL_INTERVAL", 0.5)
    store = make()
    store.add("p", batch("api-", 3))
    second_boundary()
    assert dirty_hours(store) == 1
    with in_thread(create_app(store, ApiKeys([("p", "key")]))):
        deadline = time.monotonic() + 30
        while dirty_hours(store) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert dirty_hours(store) == 0, "rolled at start-up"
        store.add("p", batch("api-later-", 7))
        assert dirty_hours(store) == 1
        time.sleep(1.1)  # the mark is older than the next roll
        while dirty_hours(store) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert dirty_hours(store) == 0, "and again later"


def test_runs_across_hours_are_joined_from_each_hour_s_pieces(engine, monkeypatch):
    """A session's run over five hours whose user is identified half way, a stateless user's run across an hour's end
    and a second run after a pause, an event of no group: rolled, ``rollup_runs`` holds a piece per group, hour, run,
    user and client, and ``summary``, ``clients``, ``users`` and ``sessions`` count the runs as the raw events do,
    over windows that begin before the runs, inside them and between their pieces."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    base = START + timedelta(hours=10)

    def event(name: str, minutes: int, **fields: str | None) -> dict:
        at = int((base + timedelta(minutes=minutes)).timestamp() * 1e9)
        return validated_event(event_id=name, type="mcp:tools/call", timestamp_ns=at, **fields)

    session = [event(f"s{i}", 5 + 20 * i, session_id="s1", client_name="Cursor", user_id="alice" if i >= 6 else None)
               for i in range(15)]  # fmt: skip
    stateless = [event(f"b{m}", m, user_id="bob", client_name="Claude") for m in (50, 70, 150, 160)]
    engine.add("p", [*session, *stateless, event("single", 180, client_name="Zed")])
    session_started, session_ended = base + timedelta(minutes=5), base + timedelta(minutes=285)
    second_boundary()
    assert engine.roll() == 5
    pieces = engine._run("SELECT toUInt32(hour) AS hour, grp, user_id FROM rollup_runs ORDER BY hour, grp", {})
    assert len(pieces) == 5 + 3, "the session's piece in each of its hours, bob's in three"
    both = {"Cursor": 1, "Claude": 2, "Zed": 1}, {"alice": 1, "bob": 2}
    expected = {  # window (minutes from base): sessions per client, per user
        (0, 300): both,
        (-60, 600): both,
        (90, 300): ({"Cursor": 1, "Claude": 1, "Zed": 1}, {"alice": 1, "bob": 1}),  # bob's first run ended before
        (60, 120): ({"Cursor": 1, "Claude": 1}, {"bob": 1}),  # alice is counted in the runs she was seen in
    }
    for (start, end), (clients, users) in expected.items():
        window = Window(base + timedelta(minutes=start), base + timedelta(minutes=end))
        answers = {name: engine.panel("p", name, window) for name in ("summary", "clients", "users", "sessions")}
        assert engine._clean("p", window)[1]["clean_hours"] != [0], "whole hours read from the rollups"
        engine.rollups = False
        assert answers == {name: engine.panel("p", name, window) for name in answers}, window
        engine.rollups = True
        assert answers["summary"][0]["sessions"] == sum(clients.values()), window
        assert {row["client"]: row["sessions"] for row in answers["clients"]} == clients, window
        assert {row["user"]: row["sessions"] for row in answers["users"]} == users, window
        assert len(answers["sessions"]) == sum(clients.values()), window
    (session, *_) = [row for row in engine.panel("p", "sessions", Window(base, base + timedelta(hours=5)))
                     if row["session"] == "s1"]  # fmt: skip
    assert (session["started"], session["ended"], session["events"]) == (session_started, session_ended, 15)


def test_hours_rolled_with_another_session_timeout_are_read_raw_until_cut_anew(make, monkeypatch):
    """An instance whose session timeout is not the one the runs were cut by reads those hours from the events, and
    its roll cuts them anew (then the other instance reads them raw): both answer what the raw events do."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    thirty = make()
    ten = make(database=thirty.address.database, session_timeout=timedelta(minutes=10))
    fill(thirty, 9)
    second_boundary()
    hours = thirty.roll()
    assert hours > 30 and dirty_hours(thirty) == 0 and dirty_hours(ten) == hours
    window = Window(START, START + timedelta(days=DAYS))
    assert ten.panel("p", "summary", window) != thirty.panel("p", "summary", window), "the timeouts cut other runs"
    assert assert_rollups_answer_as_raw_rows(ten, 9, panels=BOOKKEEPING) == 0, (
        "no hour read from runs cut by another timeout"
    )
    assert assert_rollups_answer_as_raw_rows(thirty, 9, panels=BOOKKEEPING) >= 30
    second_boundary()
    assert ten.roll() == hours and dirty_hours(ten) == 0 and dirty_hours(thirty) == hours
    assert assert_rollups_answer_as_raw_rows(ten, 9, panels=BOOKKEEPING) >= 30
    assert assert_rollups_answer_as_raw_rows(thirty, 9, panels=BOOKKEEPING) == 0


def test_the_sessions_panel_reads_its_events_of_no_group_from_the_hour_its_newest_hold_on(engine, monkeypatch):
    """Events of no group (a session each), five an hour over ten hours, rolled, then more in a dirty hour and in the
    window's partial last hour (52 sessions in the window, one of them grouped): for each ``limit``, the newest runs
    read from the hours the clean counts say hold them (later than the window's start where they can) equal the raw
    rows' answer. (Each read over the whole window, not first over its last hours: ``_newest_sessions``.)"""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    monkeypatch.setattr(engine, "_newest_sessions", lambda project, window, slice, params: engine._panel(
        project, "sessions", window, slice, params))  # fmt: skip
    base = START + timedelta(hours=30)

    def single(name: str, minutes: int) -> dict:
        at = int((base + timedelta(minutes=minutes)).timestamp() * 1e9)
        return validated_event(event_id=name, type="mcp:tools/call", client_name="Zed", timestamp_ns=at)

    engine.add("p", [single(f"h{hour}-{i}", hour * 60 + 7 * i + 3) for hour in range(10) for i in range(5)])
    engine.add("p", [single("grouped", 100) | {"session_id": "s9"}])
    second_boundary()
    assert engine.roll() == 10
    engine.add("p", [single("late", 4 * 60 + 30), single("edge", 10 * 60 + 20)])  # hour 4 dirty; the last partial
    window = Window(base + timedelta(minutes=10), base + timedelta(hours=10, minutes=40))
    froms = []
    monkeypatch.setattr(engine, "_singles_from", lambda values, bound=engine._singles_from: froms.append(bound(values))
                        or froms[-1])  # fmt: skip
    for limit in (1, 5, 7, 12, 100):
        answer = engine.panel("p", "sessions", window, limit=limit)
        engine.rollups = False
        assert answer == engine.panel("p", "sessions", window, limit=limit) and len(answer) == min(limit, 52), limit
        engine.rollups = True
    start = int(window.start.timestamp() * 1e6)
    hour = 3_600_000_000
    assert froms == [int(base.timestamp() * 1e6) + h * hour for h in (9, 9, 8, 7)] + [start]


def test_whole_runs_are_counted_without_sorting_until_an_event_stored_near_one_may_join_it(engine, monkeypatch):
    """A roll writes a piece that is a whole run as ``lone`` (a session identified within it: a row per user, its
    run's first and its client's first flagged once), a piece with an event of its group within the timeout in the
    next hour as not. Then an event is stored 20 minutes after bob's whole run, in the next hour: bob's hour is read
    from the rollups but not as whole runs until the roll, which cuts it anew once the event's hour is rolled (and not
    while that hour has not ended). ``summary``, ``clients`` and ``users`` count every run once, as the raw events do."""
    monkeypatch.setattr(clickhouse_store, "ROLL_AT_READ", 10**9)
    base = START + timedelta(hours=40)
    hour = int(base.timestamp())

    def event(name: str, at: datetime | int, **fields: str) -> dict:
        at = base + timedelta(minutes=at) if isinstance(at, int) else at
        return validated_event(event_id=name, type="mcp:tools/call", timestamp_ns=int(at.timestamp() * 1e9), **fields)

    def pieces() -> set[tuple]:
        rows = engine._run(
            """SELECT toUInt32(hour) AS hour, ifNull(user_id, '-') AS user, client_name AS client, lone, new_run,
            new_client, new_user FROM rollup_runs WHERE hour < toDateTime(%(end)s)""",
            {"end": hour + 7200},
        )
        return {(row["hour"] - hour, *list(row.values())[1:]) for row in rows}

    def assert_counted(window: Window, runs: dict[str, int]) -> None:
        answers = {name: engine.panel("p", name, window) for name in ("summary", "clients", "users")}
        engine.rollups = False
        assert answers == {name: engine.panel("p", name, window) for name in answers}, window
        engine.rollups = True
        assert answers["summary"][0]["sessions"] == sum(runs.values())
        assert {row["user"]: row["sessions"] for row in answers["users"]} == {
            user: n for user, n in runs.items() if user != "-"
        }

    engine.add("p", [event("s1", 10, session_id="s", client_name="Cursor"),
                     event("s2", 15, session_id="s", client_name="Cursor", user_id="alice"),
                     *(event(f"c{m}", m, user_id="carol", client_name="Claude") for m in (20, 30)),
                     *(event(f"b{m}", m, user_id="bob", client_name="Claude") for m in (40, 45)),
                     *(event(f"d{m}", m, user_id="dan", client_name="Zed") for m in (50, 70))])  # fmt: skip
    second_boundary()
    assert engine.roll() == 2
    session = {(0, "alice", "Cursor", 1, 1, 1, 1), (0, "-", "Cursor", 1, 0, 0, 1)}
    assert pieces() - session == {
        (0, "carol", "Claude", 1, 1, 1, 1),
        (0, "bob", "Claude", 1, 1, 1, 1),
        (0, "dan", "Zed", 0, 1, 1, 1),
        (3600, "dan", "Zed", 0, 1, 1, 1),
    }
    assert pieces() & session in (session, {(0, "alice", "Cursor", 1, 0, 0, 1), (0, "-", "Cursor", 1, 1, 1, 1)})
    window = Window(base - timedelta(minutes=30), base + timedelta(hours=3))
    runs = {"alice": 1, "-": 0, "carol": 1, "bob": 1, "dan": 1}
    assert_counted(window, runs)
    assert engine._clean("p", window)[1]["lone_hours"] == (hour, hour + 3600)

    engine.add("p", [event("b65", 65, user_id="bob", client_name="Claude")])
    read = engine._clean("p", window)[1]
    assert (read["clean_hours"], read["lone_hours"]) == ([hour], (0,)), "bob's hour read, not as whole runs"
    assert_counted(window, runs)
    second_boundary()
    assert engine.roll() == 2, "the event's hour, then bob's anew"
    assert (0, "bob", "Claude", 0, 1, 1, 1) in pieces(), "bob's piece is not a whole run any more"
    assert engine._clean("p", window)[1]["lone_hours"] == (hour, hour + 3600)
    assert_counted(window, runs)

    now = datetime.now(UTC)
    if now.minute == 59 and now.second > 50:
        time.sleep(11)  # the hour that has not ended must not end during the test
    current = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    engine.add("p", [event("e1", current - timedelta(minutes=10), user_id="erin", client_name="Zed")])
    second_boundary()
    assert engine.roll() == 1, "the hour before the current one"
    engine.add("p", [event("e2", current, user_id="erin", client_name="Zed")])
    second_boundary()
    assert engine.roll() == 0, "not while the hour that may join a whole run of it has not ended"
    recent = Window(current - timedelta(hours=2), current + timedelta(minutes=1))
    assert engine._clean("p", recent)[1]["lone_hours"] == (0,)
    assert_counted(recent, {"erin": 1})

"""The embedded default store: one DuckDB file, a versioned schema, the panels as SQL.

Writes are serialised by one lock (DuckDB appends are fast; the lock keeps the
duplicate check and the insert one step). Reads use their own cursors and run
beside writes. Sessions are derived at query time, so they do not depend on the
order in which events arrived.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
from pydantic import TypeAdapter

from mcp_analytics.models import Event, IngestResult
from mcp_analytics.store import EPOCH, SESSION_GAP, UnknownPanel, Window

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE events (
            project VARCHAR NOT NULL,
            event_id VARCHAR NOT NULL,
            ts TIMESTAMP NOT NULL,
            type VARCHAR NOT NULL,
            kind VARCHAR NOT NULL,
            resource VARCHAR,
            session_id VARCHAR,
            stateless BOOLEAN NOT NULL,
            duration_ms DOUBLE NOT NULL,
            upstream_ms DOUBLE,
            intent VARCHAR,
            user_id VARCHAR,
            user_name VARCHAR,
            client_name VARCHAR,
            client_version VARCHAR,
            server_name VARCHAR,
            server_version VARCHAR,
            protocol_version VARCHAR,
            transport VARCHAR,
            is_error BOOLEAN NOT NULL,
            error_type VARCHAR,
            error_message VARCHAR,
            error_code INTEGER,
            failure_origin VARCHAR,
            failure_reason VARCHAR,
            argument_keys VARCHAR[],
            response_size BIGINT,
            trace_id VARCHAR,
            span_id VARCHAR,
            content JSON,
            custom JSON
        );
        """,
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

_BATCH_SHAPE = json.dumps([{
    "event_id": "VARCHAR", "type": "VARCHAR", "timestamp_ns": "BIGINT", "duration_ms": "DOUBLE", "kind": "VARCHAR",
    "session_id": "VARCHAR", "stateless": "BOOLEAN", "resource": "VARCHAR", "intent": "VARCHAR", "user_id": "VARCHAR",
    "user_name": "VARCHAR", "client_name": "VARCHAR", "client_version": "VARCHAR", "server_name": "VARCHAR",
    "server_version": "VARCHAR", "protocol_version": "VARCHAR", "transport": "VARCHAR", "is_error": "BOOLEAN",
    "error": {"type": "VARCHAR", "message": "VARCHAR", "code": "INTEGER"}, "failure": {"origin": "VARCHAR", "reason": "VARCHAR"},
    "argument_keys": ["VARCHAR"], "response_size": "BIGINT", "upstream_ms": "DOUBLE", "content": "JSON", "custom": "JSON",
    "trace_id": "VARCHAR", "span_id": "VARCHAR",
}])  # fmt: skip
_INSERT = f"""
INSERT INTO events
SELECT $project, event_id, ts, type, kind, resource, session_id, stateless, duration_ms, upstream_ms, intent, user_id,
    user_name, client_name, client_version, server_name, server_version, protocol_version, transport, is_error,
    error.type, error.message, error.code, failure.origin, failure.reason, argument_keys, response_size, trace_id,
    span_id, content, custom
FROM (SELECT e.*, make_timestamp(e.timestamp_ns // 1000) AS ts FROM (SELECT unnest(from_json($batch, '{_BATCH_SHAPE}')) AS e)) AS batch
WHERE NOT EXISTS (
    SELECT 1 FROM events AS stored
    WHERE stored.project = $project AND stored.ts BETWEEN make_timestamp($first) AND make_timestamp($last)
      AND stored.ts = batch.ts AND stored.event_id = batch.event_id
)
RETURNING event_id
"""
"""The batch goes to DuckDB as one JSON document, parsed there (not 31 Python lists of values). An event's id
fixes its timestamp, so the duplicate check only reads the batch's time range."""
_BATCH = TypeAdapter(list[Event])

REQUEST_TYPES = ("mcp:tools/call", "mcp:resources/read", "mcp:prompts/get", "mcp:completion/complete")
_FAMILY = f"""CASE
    WHEN type LIKE 'custom:%' THEN 'custom'
    WHEN failure_origin = 'auth' THEN 'auth'
    WHEN type IN {REQUEST_TYPES} THEN 'requests'
    ELSE 'capabilities' END"""
_IN_WINDOW = "project = $project AND ts >= $start AND ts < $end AND kind <> 'client'"
"""Panels describe the server side: client spans of an instrumented agent in the same process are not counted twice."""
_TOOL_CALLS = f"{_IN_WINDOW} AND type = 'mcp:tools/call' AND resource IS NOT NULL"

_GAP = f"INTERVAL {int(SESSION_GAP.total_seconds())} SECOND"


def _runs(source: str, columns: str = "*") -> str:
    """The stateless identified events of ``source`` (its ``columns``), each with ``run``: the number of its run of
    the same user and client with gaps of at most ``SESSION_GAP``."""
    return f"""
    SELECT * EXCLUDE (starts), sum(starts) OVER (PARTITION BY user_id, client_name ORDER BY ts, event_id) AS run
    FROM (
        SELECT {columns}, CASE WHEN ts - lag(ts) OVER (PARTITION BY user_id, client_name ORDER BY ts, event_id) <= {_GAP}
                               THEN 0 ELSE 1 END AS starts
        FROM {source} WHERE session_id IS NULL AND user_id IS NOT NULL
    )"""


_SESSION_COLUMNS = "event_id, ts, type, is_error, intent, session_id, user_id, user_name, client_name"
"""What the session panels read (narrow: the runs' window functions sort these columns only)."""
_SESSIONED = f"""
WITH scoped AS (
    SELECT {_SESSION_COLUMNS} FROM events
    WHERE project = $project AND kind <> 'client' AND ts >= CAST($start AS TIMESTAMP) - {_GAP} AND ts < $end
),
sessioned AS (
    SELECT *, hash(coalesce(session_id, event_id)) AS session_hash FROM scoped WHERE session_id IS NOT NULL OR user_id IS NULL
    UNION ALL BY NAME
    SELECT * EXCLUDE (run), hash(user_id, client_name, run) AS session_hash FROM ({_runs("scoped")})
)
"""
_SESSION_KEY = """CASE WHEN bool_or(session_id IS NOT NULL) THEN any_value(session_id)
    WHEN bool_or(user_id IS NOT NULL) THEN 'u-' || min(event_id) ELSE 'e-' || any_value(event_id) END"""
"""Every event of the window with its session (``session_hash``): the session id; else identified user + client +
inactivity gap (runs are cut from the events since ``SESSION_GAP`` before the window, which cuts the window's
events exactly as the whole history would); else the event on its own. Sessions are counted by hash (64 bits:
exact in practice, and far cheaper than distinct strings); a session's key (``_SESSION_KEY``, what the ``session``
panel takes) is its session id, else ``u-`` + one of its events' ids, else ``e-`` + its event's id."""

_PERCENTILES = """
    round(quantile_cont(duration_ms, 0.5), 3) AS p50_ms,
    round(quantile_cont(duration_ms, 0.95), 3) AS p95_ms,
    round(quantile_cont(duration_ms, 0.99), 3) AS p99_ms,
    round(quantile_cont(duration_ms - coalesce(upstream_ms, 0), 0.95), 3) AS own_p95_ms,
    round(quantile_cont(coalesce(upstream_ms, 0), 0.95), 3) AS upstream_p95_ms,
    round(sum(coalesce(upstream_ms, 0)) / nullif(sum(duration_ms), 0), 4) AS upstream_share"""

_PANELS: dict[str, str] = {
    "summary": f"""
        {_SESSIONED}
        SELECT count(*) AS events,
            count(*) FILTER (WHERE is_error) AS failures,
            round(1 - count(*) FILTER (WHERE is_error) / greatest(count(*), 1), 4) AS success_rate,
            count(*) FILTER (WHERE type = 'mcp:tools/call') AS tool_calls,
            count(DISTINCT session_hash) AS sessions,
            count(DISTINCT user_id) AS users,
            count(DISTINCT client_name) AS clients
        FROM sessioned WHERE ts >= $start AND ts < $end""",
    "timeseries": f"""
        SELECT time_bucket(CAST($bucket AS INTERVAL), ts, CAST($start AS TIMESTAMP)) AS bucket,
            CAST(date_part('epoch', CAST($bucket AS INTERVAL)) AS INTEGER) AS bucket_seconds,
            CASE WHEN $by = 'family' THEN {_FAMILY} ELSE type END AS series,
            count(*) AS events, count(*) FILTER (WHERE is_error) AS failures
        FROM events WHERE {_IN_WINDOW} GROUP BY ALL ORDER BY bucket, series""",
    "latency": f"""
        SELECT NULL AS tool, count(*) AS calls, {_PERCENTILES}
        FROM events WHERE {_IN_WINDOW} AND type IN {REQUEST_TYPES}
        UNION ALL (
            SELECT resource AS tool, count(*) AS calls, {_PERCENTILES}
            FROM events WHERE {_TOOL_CALLS} GROUP BY resource ORDER BY p95_ms DESC, tool LIMIT $limit
        )""",
    "tools": f"""
        SELECT resource AS tool, count(*) AS calls, count(*) FILTER (WHERE is_error) AS errors,
            round(count(*) FILTER (WHERE is_error) / count(*), 4) AS error_rate,
            round(quantile_cont(duration_ms, 0.95), 3) AS p95_ms,
            count(DISTINCT user_id) AS users, max(ts) AS last_called
        FROM events WHERE {_TOOL_CALLS} GROUP BY resource ORDER BY calls DESC, tool LIMIT $limit""",
    "clients": f"""
        {_SESSIONED}
        SELECT coalesce(client_name, '(unknown)') AS client, count(*) AS events,
            count(*) FILTER (WHERE type = 'mcp:tools/call') AS tool_calls,
            count(*) FILTER (WHERE is_error) AS failures,
            count(DISTINCT session_hash) AS sessions, count(DISTINCT user_id) AS users
        FROM sessioned WHERE ts >= $start AND ts < $end
        GROUP BY ALL ORDER BY events DESC, client LIMIT $limit""",
    "users": f"""
        {_SESSIONED}
        SELECT user_id AS user, any_value(user_name) AS name, count(*) AS events,
            count(*) FILTER (WHERE type = 'mcp:tools/call') AS tool_calls,
            count(*) FILTER (WHERE is_error) AS failures,
            count(DISTINCT session_hash) AS sessions, max(ts) AS last_seen
        FROM sessioned WHERE ts >= $start AND ts < $end AND user_id IS NOT NULL
        GROUP BY user_id ORDER BY events DESC, user LIMIT $limit""",
    "failures": f"""
        SELECT coalesce(failure_origin, 'unknown') AS origin, coalesce(failure_reason, error_type) AS reason,
            count(*) AS failures, sum(count(*)) OVER (PARTITION BY coalesce(failure_origin, 'unknown')) AS origin_failures,
            any_value(error_message) AS example, max(ts) AS last_seen
        FROM events WHERE {_IN_WINDOW} AND is_error
        GROUP BY 1, 2 ORDER BY origin_failures DESC, origin, failures DESC, reason""",
    "methods": f"""
        SELECT type AS method, count(*) AS events, round(count(*) / sum(count(*)) OVER (), 4) AS share,
            round(sum(count(*) FILTER (WHERE type = 'mcp:tools/call')) OVER ()
                  / nullif(sum(count(*) FILTER (WHERE type = 'mcp:tools/list')) OVER (), 0), 3) AS calls_per_list
        FROM events WHERE {_IN_WINDOW} AND type LIKE 'mcp:%' GROUP BY type ORDER BY events DESC, method""",
    "prompts": f"""
        SELECT resource AS prompt, array_to_string(list_sort(argument_keys), ', ') AS argument_keys,
            count(*) AS uses, count(*) FILTER (WHERE is_error) AS failures, count(DISTINCT user_id) AS users
        FROM events WHERE {_IN_WINDOW} AND type = 'mcp:prompts/get'
        GROUP BY ALL ORDER BY uses DESC, prompt, argument_keys LIMIT $limit""",
    "cost": f"""
        SELECT resource AS tool, coalesce(user_id, '(anonymous)') AS user, count(*) AS calls,
            sum(coalesce(response_size, 0)) AS response_bytes,
            round(avg(response_size), 1) AS avg_response_bytes,
            round(sum(duration_ms), 3) AS total_ms
        FROM events WHERE {_TOOL_CALLS} GROUP BY ALL ORDER BY response_bytes DESC, calls DESC, tool, user
        LIMIT $limit""",
    "unused_tools": f"""
        SELECT resource AS tool, max(ts) AS last_called, count(*) AS calls_before
        FROM events WHERE project = $project AND kind <> 'client' AND type = 'mcp:tools/call'
            AND resource IS NOT NULL AND ts < $start
            AND resource NOT IN (SELECT resource FROM events WHERE {_TOOL_CALLS})
        GROUP BY resource ORDER BY last_called DESC, tool LIMIT $limit""",
    "sessions": f"""
        {_SESSIONED}
        SELECT {_SESSION_KEY} AS session, bool_or(session_id IS NULL) AS stateless,
            CASE WHEN bool_or(session_id IS NOT NULL) THEN 'session id'
                 WHEN bool_or(user_id IS NOT NULL) THEN 'user + client' ELSE 'single event' END AS grouping,
            any_value(user_id) AS user, any_value(client_name) AS client,
            min(ts) AS started, max(ts) AS ended,
            round(date_diff('millisecond', min(ts), max(ts)) / 1000.0, 3) AS duration_s,
            count(*) AS events, count(*) FILTER (WHERE type = 'mcp:tools/call') AS tool_calls,
            count(*) FILTER (WHERE is_error) AS failures, count(intent) AS intents
        FROM sessioned WHERE ts >= $start AND ts < $end
        GROUP BY session_hash ORDER BY started DESC, session LIMIT $limit""",
}
_TIMELINE = """SELECT ts, event_id, type, resource, intent, duration_ms, upstream_ms, response_size, argument_keys,
    is_error, error_type, error_message, failure_origin, failure_reason, user_id AS user, client_name AS client,
    json_extract_string(custom, '$.message') AS message, custom, trace_id, span_id"""
_SESSION_TIMELINES = {
    "": f"""{_TIMELINE} FROM events WHERE project = $project AND kind <> 'client' AND session_id = $session
        ORDER BY ts, event_id LIMIT $limit""",
    "e-": f"""{_TIMELINE} FROM events WHERE project = $project AND kind <> 'client' AND session_id IS NULL
        AND event_id = substr($session, 3) LIMIT $limit""",
    "u-": f"""WITH anchor AS (
            SELECT user_id, client_name FROM events
            WHERE project = $project AND session_id IS NULL AND event_id = substr($session, 3) LIMIT 1
        ),
        same AS (
            SELECT events.* FROM events JOIN anchor ON events.user_id = anchor.user_id
                AND events.client_name IS NOT DISTINCT FROM anchor.client_name
            WHERE project = $project AND kind <> 'client'
        ),
        runs AS ({_runs("same")}),
        mine AS (SELECT * FROM runs WHERE run = (SELECT run FROM runs WHERE event_id = substr($session, 3)))
        {_TIMELINE} FROM mine ORDER BY ts, event_id LIMIT $limit""",
}
"""One session's timeline, by the kind of key: a session id; ``e-`` an event of its own; ``u-`` the run of a
user and client that holds that event (searched in that user's and client's whole history)."""
_FIRST_EVENT = f"SELECT min(ts) FROM events WHERE {_IN_WINDOW}"
_DEFAULTS: dict[str, Any] = {"limit": 100, "by": "method", "bucket": None, "session": None}
_BUCKETS = [timedelta(minutes=m) for m in (1, 5, 15, 60, 360, 1440, 10080)]


def bucket_for(window: Window, most: int = 120) -> timedelta:
    """The smallest bucket that cuts the window into at most ``most`` pieces."""
    length = window.end - window.start
    return next((bucket for bucket in _BUCKETS if length / bucket <= most), _BUCKETS[-1])


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _aware(value: Any) -> Any:
    """Stored timestamps are UTC; answers say so."""
    return value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) else value


class _Pending:
    """One ``add`` call waiting for a group commit, its batch already deduplicated and written as JSON (outside
    the write lock, so that this work overlaps the commit in progress)."""

    def __init__(self, project: str, events: Sequence[Event]) -> None:
        self.project, self.received = project, len(events)
        self.events = list({event.event_id: event for event in events}.values())
        self.ids = [event.event_id for event in self.events]
        self.json = _BATCH.dump_json(self.events).decode()[1:-1]  # the array's items
        stamps = [event.timestamp_ns // 1000 for event in self.events] or [0]
        self.first, self.last = min(stamps), max(stamps)
        self.result: IngestResult | None = None
        self.error: Exception | None = None

    def items_after(self, seen: set[str]) -> str:
        """This batch's JSON items without the events an earlier batch of the same commit carries (rare: a retry
        racing its original)."""
        if seen.isdisjoint(self.ids):
            return self.json
        return _BATCH.dump_json([event for event in self.events if event.event_id not in seen]).decode()[1:-1]


class SchemaTooNew(RuntimeError):
    pass


DEFAULT_MEMORY_LIMIT = "1GB"


class DuckDBStore:
    """``Store`` on an embedded DuckDB file (or ``:memory:``)."""

    def __init__(self, path: str | Path = ":memory:", *, memory_limit: str = DEFAULT_MEMORY_LIMIT) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        # DuckDB caches table blocks up to its memory limit (80% of RAM by default): bounded here, so the
        # service's memory stays flat however much it stores.
        self._connection = duckdb.connect(self.path, config={"memory_limit": memory_limit})
        self._write = threading.Lock()
        self._queued = threading.Lock()
        self._queue: list[_Pending] = []
        self._migrate()

    def _migrate(self) -> None:
        with self._write:
            db = self._connection
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
            current = db.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise SchemaTooNew(f"{self.path} has schema version {current}; this release knows {SCHEMA_VERSION}")
            for version, ddl in MIGRATIONS:
                if version > current:
                    db.execute("BEGIN TRANSACTION")
                    db.execute(ddl)
                    db.execute("INSERT INTO schema_version VALUES (?, now())", [version])
                    db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return self._connection.cursor().execute("SELECT max(version) FROM schema_version").fetchone()[0]

    def add(self, project: str, events: Sequence[Event]) -> IngestResult:
        """Group commit: the caller that takes the write lock stores every batch queued meanwhile, in one
        statement per project and one transaction, so concurrent requests share the cost of a commit."""
        pending = _Pending(project, events)
        if not pending.events:
            return IngestResult(accepted=0, duplicates=0)
        with self._queued:
            self._queue.append(pending)
        with self._write:
            if pending.result is None and pending.error is None:
                with self._queued:
                    batches, self._queue = self._queue, []
                self._store(batches)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _store(self, batches: list[_Pending]) -> None:
        db = self._connection
        try:
            db.execute("BEGIN TRANSACTION")
            stored: set[tuple[str, str]] = set()
            for project in {batch.project for batch in batches}:
                group = [batch for batch in batches if batch.project == project]
                seen: set[str] = set()
                items = []
                for batch in group:
                    items.append(batch.items_after(seen))
                    seen.update(batch.ids)
                values = {"project": project, "batch": "[" + ",".join(filter(None, items)) + "]",
                          "first": min(b.first for b in group), "last": max(b.last for b in group)}  # fmt: skip
                stored.update((project, row[0]) for row in db.execute(_INSERT, values).fetchall())
            db.execute("COMMIT")
        except Exception as error:  # noqa: BLE001 - every waiting request gets the error, none is lost silently
            db.execute("ROLLBACK")
            for batch in batches:
                batch.error = error
            return
        for batch in batches:  # an id stored once counts for the first batch that carried it
            accepted = 0
            for event_id in batch.ids:
                if (batch.project, event_id) in stored:
                    stored.discard((batch.project, event_id))
                    accepted += 1
            batch.result = IngestResult(accepted=accepted, duplicates=batch.received - accepted)

    def panel(self, project: str, name: str, window: Window, **params: Any) -> list[dict[str, Any]]:
        if name == "session":
            key = str(params.get("session") or "")
            sql = _SESSION_TIMELINES[key[:2] if key[:2] in ("e-", "u-") else ""]
        elif (sql := _PANELS.get(name)) is None:
            raise UnknownPanel(name)
        values = {**_DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
        values |= {"project": project, "start": _naive_utc(window.start), "end": _naive_utc(window.end)}
        cursor = self._connection.cursor()
        try:
            if name == "timeseries" and values["bucket"] is None and window.start <= EPOCH:
                # "All" starts in 1970: its buckets start at the project's first event instead.
                first = cursor.execute(_FIRST_EVENT, {k: values[k] for k in ("project", "start", "end")}).fetchone()[0]
                values["start"] = first.replace(second=0, microsecond=0) if first else values["start"]
            values["bucket"] = values["bucket"] or bucket_for(Window(values["start"], values["end"]))
            used = {key: value for key, value in values.items() if f"${key}" in sql}
            result = cursor.execute(sql, used)
            names = [column[0] for column in result.description]
            return [{name: _aware(value) for name, value in zip(names, row)} for row in result.fetchall()]
        finally:
            cursor.close()

    def close(self) -> None:
        with self._write:
            self._connection.close()

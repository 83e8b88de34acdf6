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

_COLUMNS = (
    ("project", "VARCHAR"), ("event_id", "VARCHAR"), ("ts", "BIGINT"), ("type", "VARCHAR"), ("kind", "VARCHAR"),
    ("resource", "VARCHAR"), ("session_id", "VARCHAR"), ("stateless", "BOOLEAN"), ("duration_ms", "DOUBLE"),
    ("upstream_ms", "DOUBLE"), ("intent", "VARCHAR"), ("user_id", "VARCHAR"), ("user_name", "VARCHAR"),
    ("client_name", "VARCHAR"), ("client_version", "VARCHAR"), ("server_name", "VARCHAR"),
    ("server_version", "VARCHAR"), ("protocol_version", "VARCHAR"), ("transport", "VARCHAR"),
    ("is_error", "BOOLEAN"), ("error_type", "VARCHAR"), ("error_message", "VARCHAR"), ("error_code", "INTEGER"),
    ("failure_origin", "VARCHAR"), ("failure_reason", "VARCHAR"), ("argument_keys", "VARCHAR[]"),
    ("response_size", "BIGINT"), ("trace_id", "VARCHAR"), ("span_id", "VARCHAR"), ("content", "VARCHAR"),
    ("custom", "VARCHAR"),
)  # fmt: skip
_UNNESTED = ", ".join(
    f"make_timestamp(unnest(${i}::BIGINT[])) AS ts" if name == "ts" else f"unnest(${i}::{kind}[]) AS {name}"
    for i, (name, kind) in enumerate(_COLUMNS, start=1)
)
_INSERT = f"""
INSERT INTO events SELECT * FROM (SELECT {_UNNESTED}) AS batch
WHERE NOT EXISTS (
    SELECT 1 FROM events AS stored
    WHERE stored.ts BETWEEN make_timestamp(${len(_COLUMNS) + 1}) AND make_timestamp(${len(_COLUMNS) + 2})
      AND stored.ts = batch.ts AND stored.event_id = batch.event_id AND stored.project = batch.project
)
"""  # an event's id fixes its timestamp, so the duplicate check only reads the batch's time range

REQUEST_TYPES = ("mcp:tools/call", "mcp:resources/read", "mcp:prompts/get", "mcp:completion/complete")
_FAMILY = f"""CASE
    WHEN type LIKE 'custom:%' THEN 'custom'
    WHEN failure_origin = 'auth' THEN 'auth'
    WHEN type IN {REQUEST_TYPES} THEN 'requests'
    ELSE 'capabilities' END"""
_IN_WINDOW = "project = $project AND ts >= $start AND ts < $end AND kind <> 'client'"
"""Panels describe the server side: client spans of an instrumented agent in the same process are not counted twice."""
_TOOL_CALLS = f"{_IN_WINDOW} AND type = 'mcp:tools/call' AND resource IS NOT NULL"

_SESSIONED = f"""
WITH scoped AS (SELECT * FROM events WHERE project = $project AND kind <> 'client'),
grouped AS (
    SELECT *,
        sum(CASE WHEN previous IS NULL OR ts - previous > INTERVAL {int(SESSION_GAP.total_seconds())} SECOND
                 THEN 1 ELSE 0 END) OVER (PARTITION BY user_id, client_name ORDER BY ts, event_id) AS run
    FROM (
        SELECT event_id, ts, user_id, client_name,
               lag(ts) OVER (PARTITION BY user_id, client_name ORDER BY ts, event_id) AS previous
        FROM scoped WHERE session_id IS NULL AND user_id IS NOT NULL
    )
),
runs AS (
    SELECT event_id, ts,
        'u-' || substr(md5(user_id || chr(0) || coalesce(client_name, '') || chr(0)
            || CAST(min(ts) OVER (PARTITION BY user_id, client_name, run) AS VARCHAR)), 1, 20) AS key
    FROM grouped
),
sessioned AS (
    SELECT scoped.*, coalesce(scoped.session_id, runs.key, 'e-' || scoped.event_id) AS session_key
    FROM scoped LEFT JOIN runs ON runs.event_id = scoped.event_id AND runs.ts = scoped.ts
)
"""
"""Every event with its session: the session id; else identified user + client + inactivity gap; else its own."""

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
            count(DISTINCT session_key) AS sessions,
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
            count(DISTINCT session_key) AS sessions, count(DISTINCT user_id) AS users
        FROM sessioned WHERE ts >= $start AND ts < $end
        GROUP BY ALL ORDER BY events DESC, client LIMIT $limit""",
    "users": f"""
        {_SESSIONED}
        SELECT user_id AS user, any_value(user_name) AS name, count(*) AS events,
            count(*) FILTER (WHERE type = 'mcp:tools/call') AS tool_calls,
            count(*) FILTER (WHERE is_error) AS failures,
            count(DISTINCT session_key) AS sessions, max(ts) AS last_seen
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
        SELECT session_key AS session, bool_or(session_id IS NULL) AS stateless,
            CASE WHEN bool_or(session_id IS NOT NULL) THEN 'session id'
                 WHEN session_key LIKE 'u-%' THEN 'user + client' ELSE 'single event' END AS grouping,
            any_value(user_id) AS user, any_value(client_name) AS client,
            min(ts) AS started, max(ts) AS ended,
            round(date_diff('millisecond', min(ts), max(ts)) / 1000.0, 3) AS duration_s,
            count(*) AS events, count(*) FILTER (WHERE type = 'mcp:tools/call') AS tool_calls,
            count(*) FILTER (WHERE is_error) AS failures, count(intent) AS intents
        FROM sessioned WHERE ts >= $start AND ts < $end
        GROUP BY session_key ORDER BY started DESC, session LIMIT $limit""",
    "session": f"""
        {_SESSIONED}
        SELECT ts, event_id, type, resource, intent, duration_ms, upstream_ms, response_size, argument_keys,
            is_error, error_type, error_message, failure_origin, failure_reason, user_id AS user,
            client_name AS client, json_extract_string(custom, '$.message') AS message, custom, trace_id, span_id
        FROM sessioned WHERE session_key = $session ORDER BY ts, event_id LIMIT $limit""",
}
_FIRST_EVENT = f"SELECT min(ts) FROM events WHERE {_IN_WINDOW}"
_DEFAULTS: dict[str, Any] = {"limit": 100, "by": "method", "bucket": None, "session": None}
_BUCKETS = [timedelta(minutes=m) for m in (1, 5, 15, 60, 360, 1440, 10080)]


def bucket_for(window: Window, most: int = 120) -> timedelta:
    """The smallest bucket that cuts the window into at most ``most`` pieces."""
    length = window.end - window.start
    return next((bucket for bucket in _BUCKETS if length / bucket <= most), _BUCKETS[-1])


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment


def _aware(value: Any) -> Any:
    """Stored timestamps are UTC; answers say so."""
    return value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) else value


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _row(project: str, event: Event) -> tuple[Any, ...]:
    error, failure = event.error, event.failure
    return (
        project, event.event_id, event.timestamp_ns // 1000, event.type, event.kind, event.resource,
        event.session_id, event.stateless, event.duration_ms, event.upstream_ms, event.intent, event.user_id,
        event.user_name, event.client_name, event.client_version, event.server_name, event.server_version,
        event.protocol_version, event.transport, event.is_error, error and error.type, error and error.message,
        error and error.code, failure and failure.origin, failure and failure.reason, list(event.argument_keys),
        event.response_size, event.trace_id, event.span_id, _json(event.content), _json(event.custom),
    )  # fmt: skip


class SchemaTooNew(RuntimeError):
    pass


class DuckDBStore:
    """``Store`` on an embedded DuckDB file (or ``:memory:``)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._connection = duckdb.connect(self.path)
        self._write = threading.Lock()
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
        unique = {event.event_id: event for event in events}
        if not unique:
            return IngestResult(accepted=0, duplicates=0)
        rows = [_row(project, event) for event in unique.values()]
        columns = [list(column) for column in zip(*rows)]
        stamps = columns[2]
        with self._write:
            inserted = self._connection.execute(_INSERT, [*columns, min(stamps), max(stamps)]).fetchone()[0]
        return IngestResult(accepted=inserted, duplicates=len(events) - inserted)

    def panel(self, project: str, name: str, window: Window, **params: Any) -> list[dict[str, Any]]:
        sql = _PANELS.get(name)
        if sql is None:
            raise UnknownPanel(name)
        values = {**_DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
        values |= {"project": project, "start": _utc(window.start), "end": _utc(window.end)}
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

"""The embedded default store: one DuckDB file, a versioned schema, the panels as SQL.

Writes are serialised by one lock (DuckDB appends are fast; the lock keeps the
duplicate check and the insert one step). Reads use their own cursors and run
beside writes. Sessions are derived at query time, so they do not depend on the
order in which events arrived.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from mcp_analytics import store
from mcp_analytics.alerts import MAX_DELIVERY_ATTEMPTS, Alert, Rules, Transition
from mcp_analytics.event_columns import to_arrow
from mcp_analytics.models import Event, IngestResult
from mcp_analytics.recent_ids import DEFAULT_CAPACITY, RecentIds
from mcp_analytics.store import (
    BUCKET_GROWTH,
    BYTES_PER_TOKEN,
    EPOCH,
    LEAST_MS,
    SESSION_GAP,
    Prices,
    Slice,
    Slos,
    Window,
)

logger = logging.getLogger(__name__)

REQUEST_TYPES = ("mcp:tools/call", "mcp:resources/read", "mcp:prompts/get", "mcp:completion/complete")
_GROUPED = "coalesce(session_id, user_id, caller_id) IS NOT NULL"
"""An event of some session group (``_GROUP``); the others are sessions of their own."""


_ORIGINS = ("client", "auth", "upstream", "server")
_ERRORS_BY_ORIGIN = ", ".join(
    f"count(*) FILTER (WHERE failure_origin = '{origin}') AS {origin}_errors" for origin in _ORIGINS
)


def _counts(source: str) -> str:
    """The rows of ``rollup_counts`` for the events of ``source``: per hour, method and tool (or prompt, resource),
    how many events, failures (of each origin), the first and last. A table holds a key's rows of several catch-ups
    until its hours are merged (``DuckDBStore._recount``); readers sum them."""
    return f"""
    SELECT project, date_trunc('hour', ts) AS hour, type, resource, count(*) AS events,
        count(*) FILTER (WHERE is_error) AS failures, {_ERRORS_BY_ORIGIN}, min(ts) AS first_ts, max(ts) AS last_ts
    FROM {source} WHERE kind <> 'client' GROUP BY ALL"""


def _listings(source: str) -> str:
    """The rows of ``rollup_listings`` for the events of ``source``: per hour, each distinct list of tools (or
    prompts) a listing returned, once, and when it was last returned (what the ``unused_*`` panels read of the
    listings, which hashing every listing's names made their most expensive part)."""
    return f"""
    SELECT project, date_trunc('hour', ts) AS hour, type, hash(names) AS listing, any_value(names) AS names,
        max(ts) AS last_ts
    FROM (
        SELECT project, ts, type, CASE type WHEN 'mcp:tools/list' THEN tools_listed ELSE prompts_listed END AS names
        FROM {source} WHERE kind <> 'client' AND type IN ('mcp:tools/list', 'mcp:prompts/list')
    )
    GROUP BY project, hour, type, listing"""


_SHAPED = "type IN ('mcp:tools/call', 'mcp:prompts/get') AND resource IS NOT NULL"


def _shapes(source: str) -> str:
    """The rows of ``rollup_shapes`` for the events of ``source``: per hour, tool or prompt and list of argument keys
    as sent (by its hash), how many calls and failures (the ``arguments`` panel, whose cost was hashing every
    call's list)."""
    return f"""
    SELECT project, date_trunc('hour', ts) AS hour, type, resource, hash(argument_keys) AS shape,
        any_value(argument_keys) AS keys, count(*) AS calls, count(*) FILTER (WHERE is_error) AS failures
    FROM {source} WHERE kind <> 'client' AND {_SHAPED}
    GROUP BY project, hour, type, resource, shape"""


def _people(source: str) -> str:
    """The rows of ``rollup_people`` for the events of ``source``: per hour, client, user, whether the events
    belong to a session group, and server (name and version), how many events, failures and tool calls, the first
    and last (what ``summary``, ``clients``, ``users``, ``new_clients`` and ``servers`` count)."""
    return f"""
    SELECT project, date_trunc('hour', ts) AS hour, client_name, user_id, {_GROUPED} AS grouped, server_name,
        server_version, count(*) AS events,
        count(*) FILTER (WHERE is_error) AS failures, count(*) FILTER (WHERE type = 'mcp:tools/call') AS tool_calls,
        min(ts) AS first_ts, max(ts) AS last_ts, any_value(user_name) AS user_name
    FROM {source} WHERE kind <> 'client' GROUP BY ALL"""


def _costs(source: str) -> str:
    """The rows of ``rollup_costs`` for the events of ``source``: per hour, tool and user, the calls, the bytes
    answered, how many answers had a size, the time spent (the ``cost`` panel)."""
    return f"""
    SELECT project, date_trunc('hour', ts) AS hour, resource, user_id, count(*) AS calls,
        coalesce(sum(response_size), 0) AS response_bytes, count(response_size) AS responses, sum(duration_ms) AS total_ms
    FROM {source} WHERE kind <> 'client' AND type = 'mcp:tools/call' AND resource IS NOT NULL
    GROUP BY ALL"""


_MEASURES = {"d": "duration_ms", "o": "duration_ms - coalesce(upstream_ms, 0)", "u": "coalesce(upstream_ms, 0)"}
"""The timings of a request kept as histograms (``store.BUCKET_GROWTH``): its duration, the server's own part of it
and the upstream part."""


def _bucket(ms: str) -> str:
    """The histogram bucket (``store.BUCKET_GROWTH``) of the value ``ms`` (the ClickHouse store's ``_bucket``)."""
    per_log = repr(1 / math.log(BUCKET_GROWTH))
    sign = f"(CASE WHEN ({ms}) >= {LEAST_MS} THEN 1 WHEN ({ms}) <= -{LEAST_MS} THEN -1 ELSE 0 END)"
    return f"{sign} * (CAST(floor(ln(greatest(abs({ms}), {LEAST_MS}) / {LEAST_MS}) * {per_log}) AS INTEGER) + 1)"


_MIDDLE = f"""(CASE WHEN key > 0 THEN {LEAST_MS * (1 + BUCKET_GROWTH) / 2!r} * pow({BUCKET_GROWTH}, key - 1)
    WHEN key < 0 THEN -{LEAST_MS * (1 + BUCKET_GROWTH) / 2!r} * pow({BUCKET_GROWTH}, -key - 1) ELSE 0.0 END)"""
"""The middle of bucket ``key``."""
_VALUE = f"least(greatest({_MIDDLE}, lo_ms), hi_ms)"
"""What a value of a histogram row is read as: its bucket's middle, within the least and greatest value there."""


def _timed(source: str, where: str, by: str = "resource", measures: str = "d", *, shared: bool = True) -> str:
    """The histograms of the requests of ``source`` that match ``where``, per value of ``by`` (a select list of
    their columns) and measure of ``measures`` (keys of ``_MEASURES``): rows of ``by``'s columns, ``measure``,
    ``key`` (the bucket), ``n``, ``ms`` (the sum), ``lo_ms`` and ``hi_ms`` (the least and greatest value). One
    grouped pass per measure (cheaper than one over rows unnested into the three), over the requests read once
    and kept (``shared``: what a panel reads) or read again each time (a catch-up's few, or every event once)."""
    picked = f"SELECT {by}, duration_ms, upstream_ms FROM {source} WHERE {where} AND type IN {REQUEST_TYPES}"
    requests = "requests" if shared and len(measures) > 1 else f"({picked})"
    grouped = "\nUNION ALL\n".join(
        f"""SELECT * EXCLUDE (duration_ms, upstream_ms), '{name}' AS measure, {_bucket(value)} AS key, count(*) AS n,
            sum({value}) AS ms, min({value}) AS lo_ms, max({value}) AS hi_ms
        FROM {requests} GROUP BY ALL"""
        for name, value in _MEASURES.items()
        if name in measures
    )
    return f"WITH requests AS MATERIALIZED ({picked}) {grouped}" if requests == "requests" else grouped


def _timings(source: str) -> str:
    """The rows of ``rollup_timings`` for the events of ``source``: the histograms of the requests' timings per hour,
    method, tool (or prompt, resource) and server (the percentiles of ``latency``, ``trends``, ``tools``,
    ``servers``, ``slo``, the alerts)."""
    hours = "project, date_trunc('hour', ts) AS hour, type, resource, server_name"
    return _timed(source, "kind <> 'client'", hours, "".join(_MEASURES), shared=False)


def _histograms(timings: str, by: str = "") -> str:
    """The histograms of ``timings`` (rows as ``_timed``'s, with any ``n``) per value of ``by`` (its columns; none:
    one) and measure: a row per bucket with ``upto`` (how many values up to its end) and ``total``, which
    ``_percentile`` reads."""
    keys = f"{by}, measure" if by else "measure"
    return f"""(
    SELECT *, sum(n) OVER (PARTITION BY {keys} ORDER BY key) AS upto, sum(n) OVER (PARTITION BY {keys}) AS total
    FROM (
        SELECT {keys}, key, sum(n) AS n, sum(ms) AS ms, min(lo_ms) AS lo_ms, max(hi_ms) AS hi_ms
        FROM ({timings}) GROUP BY ALL
    ))"""


def _percentile(measure: str, level: float) -> str:
    """An aggregate of ``_histograms`` rows: the ``level`` quantile of ``measure`` as ``quantile_cont`` would
    interpolate it, each value read as its bucket's middle within the bucket's least and greatest (within 1%;
    the ClickHouse store's ``_quantile``)."""
    mine = f"measure = '{measure}'"
    at = f"((max(total) FILTER (WHERE {mine}) - 1) * {level})"

    def value(rank: str) -> str:
        return f"arg_min({_VALUE}, key) FILTER (WHERE {mine} AND upto > {rank})"

    lo, hi = value(f"floor((total - 1) * {level})"), value(f"ceil((total - 1) * {level})")
    return f"({lo} + ({at} - floor({at})) * ({hi} - {lo}))"


def _p(measure: str, level: float) -> str:
    """``_percentile`` rounded to the microsecond, as the panels show it."""
    return f"round({_percentile(measure, level)}, 3)"


_ROLLUPS = {
    "rollup_counts": (
        _counts,
        f"""type, resource, CAST(sum(events) AS BIGINT) AS events, CAST(sum(failures) AS BIGINT) AS failures,
        {", ".join(f"CAST(sum({o}_errors) AS BIGINT) AS {o}_errors" for o in _ORIGINS)},
        min(first_ts) AS first_ts, max(last_ts) AS last_ts""",
    ),
    "rollup_listings": (_listings, "type, listing, any_value(names) AS names, max(last_ts) AS last_ts"),
    "rollup_shapes": (
        _shapes,
        """type, resource, shape, any_value(keys) AS keys, CAST(sum(calls) AS BIGINT) AS calls,
        CAST(sum(failures) AS BIGINT) AS failures""",
    ),
    "rollup_people": (
        _people,
        """client_name, user_id, grouped, server_name, server_version, CAST(sum(events) AS BIGINT) AS events,
        CAST(sum(failures) AS BIGINT) AS failures, CAST(sum(tool_calls) AS BIGINT) AS tool_calls,
        min(first_ts) AS first_ts, max(last_ts) AS last_ts, any_value(user_name) AS user_name""",
    ),
    "rollup_costs": (
        _costs,
        """resource, user_id, CAST(sum(calls) AS BIGINT) AS calls, CAST(sum(response_bytes) AS BIGINT) AS response_bytes,
        CAST(sum(responses) AS BIGINT) AS responses, sum(total_ms) AS total_ms""",
    ),
    "rollup_timings": (
        _timings,
        """type, resource, server_name, measure, key, CAST(sum(n) AS BIGINT) AS n, sum(ms) AS ms,
        min(lo_ms) AS lo_ms, max(hi_ms) AS hi_ms""",
    ),
}
"""The rollups counted per hour: the query of a table's rows for some events, and its rows merged (one per key)."""


def _by_day(rows: str, ts: str = "hour") -> str:
    """The rows of ``rollup_timings_days`` for the ``rows`` (a query of ``rollup_timings``' columns but its hour, which
    is ``ts``): one per key and day. The panels read a window's whole days from them, a tenth of the hours' rows."""
    return f"SELECT project, date_trunc('day', {ts}) AS day, {_ROLLUPS['rollup_timings'][1]} FROM ({rows}) GROUP BY ALL"


_HISTOGRAM = """type VARCHAR NOT NULL, resource VARCHAR, server_name VARCHAR, measure VARCHAR NOT NULL, key INTEGER NOT NULL,
    n BIGINT NOT NULL, ms DOUBLE NOT NULL, lo_ms DOUBLE NOT NULL, hi_ms DOUBLE NOT NULL"""
"""The columns of ``rollup_timings`` and ``rollup_timings_days`` but the project and the hour or day."""


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
    (2, "ALTER TABLE events ADD COLUMN tools_listed VARCHAR[]"),
    (3, "ALTER TABLE events ADD COLUMN caller_id VARCHAR"),
    (4, "ALTER TABLE events ADD COLUMN user_data JSON"),
    (
        5,
        "ALTER TABLE events ADD COLUMN destructive_tools VARCHAR[]; ALTER TABLE events ADD COLUMN prompts_listed VARCHAR[]",
    ),
    (
        6,
        """
        CREATE SEQUENCE alert_ids;
        CREATE TABLE alerts (
            id BIGINT PRIMARY KEY DEFAULT nextval('alert_ids'),
            project VARCHAR NOT NULL, rule VARCHAR NOT NULL, subject VARCHAR NOT NULL, state VARCHAR NOT NULL,
            since TIMESTAMP NOT NULL, resolved_at TIMESTAMP, observed DOUBLE, threshold DOUBLE, "window" VARCHAR,
            text VARCHAR
        );
        CREATE TABLE alert_deliveries (
            alert_id BIGINT NOT NULL, state VARCHAR NOT NULL, url VARCHAR NOT NULL, delivered BOOLEAN NOT NULL,
            attempts INTEGER NOT NULL, PRIMARY KEY (alert_id, state, url)
        );
        """,
    ),
    (
        7,
        """
        CREATE TABLE rollup_counts (
            project VARCHAR NOT NULL, hour TIMESTAMP NOT NULL, type VARCHAR NOT NULL, resource VARCHAR,
            client_name VARCHAR, user_id VARCHAR, server_name VARCHAR, failure_origin VARCHAR, grouped BOOLEAN NOT NULL,
            events BIGINT NOT NULL, failures BIGINT NOT NULL, first_ts TIMESTAMP NOT NULL, last_ts TIMESTAMP NOT NULL,
            user_name VARCHAR
        );  -- filled by version 8, which keys it by method and tool only
        CREATE TABLE rollup_runs (
            project VARCHAR NOT NULL, grp UBIGINT NOT NULL, run_start TIMESTAMP NOT NULL, run_end TIMESTAMP NOT NULL,
            hour TIMESTAMP NOT NULL, user_id VARCHAR, client_name VARCHAR, first_ts TIMESTAMP NOT NULL,
            last_ts TIMESTAMP NOT NULL
        );
        CREATE TABLE rollup_state (gap_us BIGINT NOT NULL);
        CREATE TABLE rollup_behind (project VARCHAR NOT NULL, hour TIMESTAMP NOT NULL);
        """,
    ),
    (
        8,
        f"""
        DROP TABLE rollup_counts;
        CREATE TABLE rollup_counts (
            project VARCHAR NOT NULL, hour TIMESTAMP NOT NULL, type VARCHAR NOT NULL, resource VARCHAR,
            events BIGINT NOT NULL, failures BIGINT NOT NULL, first_ts TIMESTAMP NOT NULL, last_ts TIMESTAMP NOT NULL
        );  -- filled by version 9, which adds the failures of each origin
        CREATE TABLE rollup_listings (
            project VARCHAR NOT NULL, hour TIMESTAMP NOT NULL, type VARCHAR NOT NULL, listing UBIGINT NOT NULL,
            names VARCHAR[], last_ts TIMESTAMP NOT NULL
        );
        INSERT INTO rollup_listings BY NAME {_listings("events")};
        CREATE TABLE rollup_shapes (
            project VARCHAR NOT NULL, hour TIMESTAMP NOT NULL, type VARCHAR NOT NULL, resource VARCHAR NOT NULL,
            shape UBIGINT NOT NULL, keys VARCHAR[], calls BIGINT NOT NULL, failures BIGINT NOT NULL
        );
        INSERT INTO rollup_shapes BY NAME {_shapes("events")};
        CREATE TABLE rollup_costs (
            project VARCHAR NOT NULL, hour TIMESTAMP NOT NULL, resource VARCHAR NOT NULL, user_id VARCHAR,
            calls BIGINT NOT NULL, response_bytes BIGINT NOT NULL, responses BIGINT NOT NULL, total_ms DOUBLE
        );
        INSERT INTO rollup_costs BY NAME {_costs("events")};
        CREATE TABLE rollup_people (
            project VARCHAR NOT NULL, hour TIMESTAMP NOT NULL, client_name VARCHAR, user_id VARCHAR,
            grouped BOOLEAN NOT NULL, events BIGINT NOT NULL, failures BIGINT NOT NULL, tool_calls BIGINT NOT NULL,
            first_ts TIMESTAMP NOT NULL, last_ts TIMESTAMP NOT NULL, user_name VARCHAR
        );  -- filled by version 9, which adds the server
        """,
    ),
    (
        9,
        f"""
        CREATE TABLE rollup_timings (project VARCHAR NOT NULL, hour TIMESTAMP NOT NULL, {_HISTOGRAM});
        INSERT INTO rollup_timings BY NAME {_timings("events")};
        DROP TABLE rollup_counts;
        CREATE TABLE rollup_counts (
            project VARCHAR NOT NULL, hour TIMESTAMP NOT NULL, type VARCHAR NOT NULL, resource VARCHAR,
            events BIGINT NOT NULL, failures BIGINT NOT NULL, client_errors BIGINT NOT NULL, auth_errors BIGINT NOT NULL,
            upstream_errors BIGINT NOT NULL, server_errors BIGINT NOT NULL, first_ts TIMESTAMP NOT NULL,
            last_ts TIMESTAMP NOT NULL
        );
        INSERT INTO rollup_counts BY NAME {_counts("events")};
        ALTER TABLE rollup_people ADD COLUMN server_name VARCHAR;
        ALTER TABLE rollup_people ADD COLUMN server_version VARCHAR;
        DELETE FROM rollup_people;
        INSERT INTO rollup_people BY NAME {_people("events")};
        """,
    ),
    (
        10,
        f"""
        CREATE TABLE rollup_timings_days (project VARCHAR NOT NULL, day TIMESTAMP NOT NULL, {_HISTOGRAM});
        INSERT INTO rollup_timings_days BY NAME {_by_day("FROM rollup_timings")};
        """,
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]

_INSERT = "INSERT INTO events BY NAME SELECT * FROM incoming"
_ALREADY_STORED = """
SELECT candidates.project, candidates.event_id FROM candidates JOIN events AS stored
    ON stored.project = candidates.project AND stored.ts = candidates.ts AND stored.event_id = candidates.event_id
WHERE stored.ts BETWEEN (SELECT min(ts) FROM candidates) AND (SELECT max(ts) FROM candidates)
"""
"""Which candidate events are stored already. An event's id fixes its timestamp, so only their time range is read."""

_FAMILY = f"""CASE
    WHEN type LIKE 'custom:%' THEN 'custom'
    WHEN failure_origin = 'auth' THEN 'auth'
    WHEN type IN {REQUEST_TYPES} THEN 'requests'
    ELSE 'capabilities' END"""
_IN_WINDOW = "project = $project AND ts >= $start AND ts < $end AND kind <> 'client'"
"""Panels describe the server side: client spans of an instrumented agent in the same process are not counted twice."""
_TOOL_CALLS = f"{_IN_WINDOW} AND type = 'mcp:tools/call' AND resource IS NOT NULL"

_GROUP = """CASE WHEN session_id IS NOT NULL THEN hash('s', session_id)
    WHEN user_id IS NOT NULL THEN hash('u', user_id, client_name)
    WHEN caller_id IS NOT NULL THEN hash('c', caller_id, client_name) END"""
"""Which sessions an event belongs to (None: a session of its own), hashed (64 bits are exact in practice and far
cheaper to partition by than strings): its session id; else (stateless) its identified user and client; else its
caller (stateless HTTP, ``mcp.caller.id``) and client. Each group is cut into sessions wherever ``$gap`` (the
session inactivity timeout) passes without an event."""
_TAG = "CASE WHEN session_id IS NOT NULL THEN 's' WHEN user_id IS NOT NULL THEN 'u' ELSE 'c' END"
"""The kind of group of a grouped event: ``s`` session id, ``u`` user + client, ``c`` caller + client."""


def _sessions(source: str, columns: str, by: str = "") -> str:
    """One row per session with an event since ``$start`` among the grouped events of ``source`` (and per value of
    the ``by`` columns among its events): ``grp``, ``run`` (its number in the group, runs being cut where more than
    ``$gap`` passes without an event), ``last_run`` (the group's last run with an event since ``$start``, runs being
    numbered from the start of ``source``) and ``columns`` (aggregates over those events).

    Only a group longer than ``$gap`` can hold more than one run: the others are one session each, aggregated
    without sorting their events. Events at the same instant are always in one run, so ordering by time alone is
    exact (the running sum takes them together)."""
    keys = f", {by}" if by else ""
    return f"""(
    WITH grouped AS MATERIALIZED (
        SELECT *, {_GROUP} AS grp FROM {source} WHERE coalesce(session_id, user_id, caller_id) IS NOT NULL
    ),
    spans AS (SELECT grp, max(ts) - min(ts) > $gap AS long FROM grouped GROUP BY grp),
    numbered AS ({_numbered("grouped WHERE grp IN (SELECT grp FROM spans WHERE long)")})
    SELECT grp, 1 AS run, 1 AS last_run{keys}, {columns}
    FROM grouped WHERE ts >= $start AND grp IN (SELECT grp FROM spans WHERE NOT long) GROUP BY grp{keys}
    UNION ALL
    SELECT grp, run, max(run) OVER (PARTITION BY grp) AS last_run{keys}, {columns}
    FROM numbered WHERE ts >= $start GROUP BY grp, run{keys}
    )"""


_SLICED_COLUMNS = {
    "tool": "resource",
    "client": "coalesce(client_name, '(unknown)')",
    "user": "user_id",
    "server": "server_name",
    "method": "type",
    "origin": "failure_origin",
}


def _sliced(sql: str, slice: Slice) -> tuple[str, dict[str, str]]:
    """``sql`` reading only the events of ``slice``, and its values: a CTE named ``events`` shadows the table for
    the whole query, so every panel (and every part of one: runs cut before the window, earlier listings) reads
    the same slice, and DuckDB pushes the conditions into the scan."""
    if not slice:
        return sql, {}
    conditions: list[str] = []
    values: dict[str, str] = {}
    for name, accepted in slice.stored().items():
        keys = [f"s{index}_{name}" for index in range(len(accepted))]  # no key is a prefix of another's $name
        values.update(zip(keys, accepted, strict=True))
        conditions.append(f"{_SLICED_COLUMNS[name]} IN ({', '.join('$' + key for key in keys)})")
        if name == "tool":
            conditions.append("type = 'mcp:tools/call'")
    shadow = f"events AS NOT MATERIALIZED (SELECT * FROM main.events WHERE {' AND '.join(conditions)})"
    body = sql.lstrip()
    if body[:5].upper() == "WITH ":
        return f"WITH {shadow}, {body[5:]}", values
    return f"WITH {shadow} {body}", values


def _unused(item: str, used: str, listing: str, column: str, last: str, before: str, *, rolled: bool = False) -> str:
    """Tools (or prompts) listed by the server or used before the window, and not used in it: ``item``, when each was
    last used (``last``) and how often before the window (``before``), and when last listed. ``rolled``: the uses
    and the listings of whole hours read from ``rollup_counts`` and ``rollup_listings``, the rest from events."""
    uses = f"project = $project AND kind <> 'client' AND type = '{used}' AND resource IS NOT NULL"
    listings = f"project = $project AND kind <> 'client' AND type = '{listing}'"
    if rolled:
        rolled_uses = f"project = $project AND type = '{used}' AND resource IS NOT NULL"
        earlier = f"""SELECT resource, last_ts AS ts, events FROM rollup_counts WHERE {rolled_uses} AND hour < $start_hour
            UNION ALL SELECT resource, ts, 1 FROM events WHERE {uses} AND ts >= $start_hour AND ts < $start"""
        listed = f"""SELECT listing, names, last_ts AS ts FROM rollup_listings
                WHERE project = $project AND type = '{listing}' AND hour < $whole_end
            UNION ALL SELECT hash({column}), {column}, ts FROM events WHERE {listings} AND ts >= $whole_end AND ts < $end"""
        during = f"""SELECT resource FROM rollup_counts
                WHERE {rolled_uses} AND hour >= $whole_start AND hour < $whole_end
            UNION ALL SELECT resource FROM events
                WHERE {_IN_WINDOW} AND type = '{used}' AND resource IS NOT NULL AND (ts < $whole_start OR ts >= $whole_end)"""
    else:
        earlier = f"SELECT resource, ts, 1 AS events FROM events WHERE {uses} AND ts < $start"
        listed = f"SELECT hash({column}) AS listing, {column} AS names, ts FROM events WHERE {listings} AND ts < $end"
        during = f"SELECT resource FROM events WHERE {_IN_WINDOW} AND type = '{used}' AND resource IS NOT NULL"
    return f"""
        WITH used AS (
            SELECT resource AS {item}, max(ts) AS {last}, CAST(sum(events) AS BIGINT) AS {before}
            FROM ({earlier}) GROUP BY resource
        ),
        listings AS (  -- each distinct listing once; grouped by hash, as lists repeat and hashing is cheaper
            SELECT listing, any_value(names) AS names, max(ts) AS last_listed FROM ({listed}) GROUP BY listing
        ),
        listed AS (
            SELECT {item}, max(last_listed) AS last_listed
            FROM (SELECT unnest(names) AS {item}, last_listed FROM listings) GROUP BY {item}
        )
        SELECT {item}, {last}, coalesce({before}, 0) AS {before}, last_listed
        FROM used FULL JOIN listed USING ({item})
        WHERE {item} NOT IN ({during})
        ORDER BY {last} DESC NULLS LAST, {item} LIMIT $limit"""


def _new_clients(earlier: str) -> str:
    """The clients first seen in the window, with their figures there (all their events until the window's end);
    ``earlier``: a query of the clients with an event before the window (any null among them is ignored)."""
    return f"""
        SELECT client_name AS client, min(ts) AS first_seen,
            string_agg(DISTINCT client_version, ', ' ORDER BY client_version) AS versions,
            count(*) AS events, count(DISTINCT user_id) AS users, count(*) FILTER (WHERE is_error) AS failures
        FROM events WHERE {_IN_WINDOW} AND client_name IS NOT NULL
            AND client_name NOT IN (SELECT client_name FROM ({earlier}) WHERE client_name IS NOT NULL)
        GROUP BY client_name ORDER BY first_seen DESC, client LIMIT $limit"""


def _cost(calls: str) -> str:
    """The ``cost`` panel over ``calls`` (``_costs``' columns but the project and hour): per tool and user."""
    price = "CAST($tool_prices AS DOUBLE[])[list_position(CAST($priced_tools AS VARCHAR[]), any_value(resource))]"
    return f"""
        SELECT resource AS tool, coalesce(user_id, '(anonymous)') AS user, CAST(sum(calls) AS BIGINT) AS calls,
            CAST(sum(response_bytes) AS BIGINT) AS response_bytes,
            round(sum(response_bytes) / nullif(sum(responses), 0), 1) AS avg_response_bytes,
            round(sum(total_ms), 3) AS total_ms,
            CAST(round(sum(response_bytes) / $token_bytes) AS BIGINT) AS est_tokens,
            round(sum(response_bytes) / $token_bytes / 1e6 * coalesce({price}, $token_price), 6) AS est_cost
        FROM ({calls}) GROUP BY ALL ORDER BY response_bytes DESC, calls DESC, tool, user LIMIT $limit"""


def _arguments(calls: str) -> str:
    """The ``arguments`` panel over ``calls`` (``type``, ``resource``, ``shape``: the hash of the list of keys as
    sent, ``keys``, ``calls``, ``failures``): each list once, then merged by the keys sorted (a shape is a set)."""
    return f"""
        WITH shapes AS (
            SELECT type, resource, list_sort(any_value(keys)) AS keys, sum(calls) AS calls, sum(failures) AS failures
            FROM ({calls}) GROUP BY type, resource, shape
        )
        SELECT CASE type WHEN 'mcp:tools/call' THEN 'tool' ELSE 'prompt' END AS kind, resource AS name,
            array_to_string(keys, ', ') AS argument_keys, CAST(sum(calls) AS BIGINT) AS calls,
            CAST(sum(failures) AS BIGINT) AS failures,
            round(sum(calls) / sum(sum(calls)) OVER (PARTITION BY type, resource), 4) AS share
        FROM shapes GROUP BY type, resource, keys ORDER BY calls DESC, kind, name, argument_keys LIMIT $limit"""


_UNUSED = {
    "unused_tools": ("tool", "mcp:tools/call", "mcp:tools/list", "tools_listed", "last_called", "calls_before"),
    "unused_prompts": ("prompt", "mcp:prompts/get", "mcp:prompts/list", "prompts_listed", "last_used", "uses_before"),
}


_CODE_NAME = """CASE error_code WHEN -32700 THEN 'parse error' WHEN -32600 THEN 'invalid request'
    WHEN -32601 THEN 'method not found' WHEN -32602 THEN 'invalid params' WHEN -32603 THEN 'internal error'
    WHEN -32002 THEN 'resource not found' WHEN -32042 THEN 'URL elicitation required'
    WHEN 0 THEN 'handler exception (SDK)' ELSE NULL END"""
"""The names the JSON-RPC and MCP specifications (and the SDKs' habit for a handler's exception) give codes."""
_EXAMPLE = "arg_max(error_message, (ts, event_id)) FILTER (WHERE error_message IS NOT NULL) AS example"
"""A group's example message: the newest one, ties by event id (the same on every store, and every read)."""


def _numbered(grouped: str, by: str = "grp") -> str:
    """The events of ``grouped`` (which have ``grp``), each with ``run``: the number of its run in its group (the
    ``by`` columns)."""
    return f"""
    SELECT * EXCLUDE (starts), sum(starts) OVER (PARTITION BY {by} ORDER BY ts) AS run
    FROM (
        SELECT *, CASE WHEN ts - lag(ts) OVER (PARTITION BY {by} ORDER BY ts) <= $gap THEN 0 ELSE 1 END AS starts
        FROM {grouped}
    )"""


_SESSION_COLUMNS = "event_id, ts, type, is_error, intent, session_id, user_id, client_name, caller_id"
_RUNS = f"""scoped AS MATERIALIZED (  -- narrow: when, who, and the group
    SELECT ts, user_id, client_name, {_GROUP} AS grp FROM events
    WHERE project = $project AND kind <> 'client' AND ts >= CAST($start AS TIMESTAMP) - $gap AND ts < $end
        AND coalesce(session_id, user_id, caller_id) IS NOT NULL
),
spans AS (SELECT grp, max(ts) - min(ts) > $gap AS long FROM scoped GROUP BY grp),
runs AS (
    SELECT DISTINCT grp, 1 AS run, user_id, client_name FROM scoped
    WHERE ts >= $start AND grp IN (SELECT grp FROM spans WHERE NOT long)
    UNION ALL
    SELECT DISTINCT grp, run, user_id, client_name FROM ({_numbered("scoped WHERE grp IN (SELECT grp FROM spans WHERE long)")})
    WHERE ts >= $start
)"""
"""How a window's sessions are counted: its events of no group (one session each) plus the runs
(``_RUNS``: one row per user and client seen in a run, so a run counts once for each) of every group with an
event in the window. Runs are cut from the events since ``$gap`` before the window
(``scoped``, narrow columns), which cuts the window's events exactly as the whole history would."""

_SESSION_FIGURES = """min(ts) AS started, max(ts) AS ended,
    round(date_diff('millisecond', min(ts), max(ts)) / 1000.0, 3) AS duration_s,
    count(*) AS events, count(*) FILTER (WHERE type = 'mcp:tools/call') AS tool_calls,
    count(*) FILTER (WHERE is_error) AS failures, count(intent) AS intents"""

# ---------------------------------------------------------------- rollups: what the panels read, kept up at ingest
# ``_ROLLUPS``: counts per hour (``rollup_counts`` by method and tool, ``rollup_people`` by client and user, the
# listings, argument lists and costs of the panels that read them, ``rollup_timings``: the histograms the percentiles
# are read from, which add up exactly as counts do; also per day, ``rollup_timings_days``). ``rollup_runs``: the
# sessions cut from each group's whole history, one row per run, user, client and hour with its first and last event
# there. A panel over an hour or more (and no slice: a slice cuts sessions of its own) reads the rollups' whole hours in
# the window and the raw events of the partial hours at its edges, which answers exactly what the raw events do: a run's
# row of one hour spans less than an hour, so it has an event in a window of an hour or more iff it overlaps the window.
# A commit of events only records their hours in ``rollup_behind``; the rollups catch up with what it stored in one pass
# over many commits (``DuckDBStore._catch_up``): every ``_ROLL_AFTER`` events, before a panel reads them (in a snapshot
# with nothing behind), before a deletion and on close. A store opened with hours behind (its process ended first)
# counts them anew and cuts their groups' runs anew (``DuckDBStore._recover``).

_ROLLED_RUNS = """runs AS (
    SELECT grp, run_start AS run, user_id, client_name FROM rollup_runs  -- a row per hour: counted DISTINCT
    WHERE project = $project AND hour >= date_trunc('hour', CAST($start AS TIMESTAMP)) AND hour < $end
        AND first_ts < $end AND last_ts >= $start
)"""
_EVENT_COUNTS = f"""SELECT client_name, user_id, {_GROUPED} AS grouped, 1 AS events, CAST(is_error AS INTEGER) AS failures,
    CAST(type = 'mcp:tools/call' AS INTEGER) AS tool_calls, ts AS first_ts, ts AS last_ts, user_name
FROM events WHERE {_IN_WINDOW}"""
_RAW_COUNTED = f"counted AS ({_EVENT_COUNTS})"
_ROLLED_COUNTED = f"""counted AS (
    SELECT client_name, user_id, grouped, events, failures, tool_calls, first_ts, last_ts, user_name
    FROM rollup_people WHERE project = $project AND hour >= $whole_start AND hour < $whole_end
    UNION ALL
    {_EVENT_COUNTS} AND (ts < $whole_start OR ts >= $whole_end)
)"""
"""The window's events as counts: the rollup's whole hours (``[$whole_start, $whole_end)``), the edges' events."""

_TOUCHED = f"""
SELECT t.project, t.grp, least(t.lo, min(r.run_start)) AS lo, greatest(t.hi, max(r.run_end)) AS hi
FROM (
    SELECT project, {_GROUP} AS grp, min(ts) AS lo, max(ts) AS hi FROM {{source}}
    WHERE kind <> 'client' AND {_GROUPED} GROUP BY ALL
) AS t
LEFT JOIN (  -- the runs near the events (a filter the scan skips row groups by)
    SELECT * FROM rollup_runs WHERE run_end >= CAST($lo AS TIMESTAMP) - $gap AND run_start <= CAST($hi AS TIMESTAMP) + $gap
) AS r
    ON r.project = t.project AND r.grp = t.grp AND r.run_end >= t.lo - $gap AND r.run_start <= t.hi + $gap
GROUP BY t.project, t.grp, t.lo, t.hi"""
"""The groups of the events of ``{source}`` (added or deleted), each with the time range ``[lo, hi]`` whose runs these
events change: theirs, and the stored runs they join (within ``$gap``). Runs outside it stay as they are: they are
more than ``$gap`` away from every event in it. ``[$lo, $hi]``: when the first and last of the events happened."""
_DROP_RUNS = """DELETE FROM rollup_runs USING affected AS a
WHERE rollup_runs.project = a.project AND rollup_runs.grp = a.grp AND run_start >= a.lo AND run_end <= a.hi
    AND run_start >= $lo AND run_end <= $hi"""
_CUT_RUNS = f"""INSERT INTO rollup_runs BY NAME
WITH near AS (
    SELECT project, ts, user_id, client_name, {_GROUP} AS grp FROM events
    WHERE kind <> 'client' AND {_GROUPED}
        AND ts BETWEEN $lo AND $hi
),
scoped AS (
    SELECT near.* FROM near JOIN affected AS a ON near.project = a.project AND near.grp = a.grp
        AND near.ts BETWEEN a.lo AND a.hi
),
numbered AS ({_numbered("scoped", "project, grp")}),
cut AS (SELECT project, grp, run, min(ts) AS run_start, max(ts) AS run_end FROM numbered GROUP BY ALL)
SELECT project, grp, run_start, run_end, date_trunc('hour', ts) AS hour, user_id, client_name, min(ts) AS first_ts,
    max(ts) AS last_ts
FROM numbered JOIN cut USING (project, grp, run) GROUP BY ALL"""
"""The runs of the ``affected`` groups in their ranges (all between ``$lo`` and ``$hi``), cut anew from the stored
events."""
_DIRTY_EVENTS = """(
    SELECT events.* FROM events SEMI JOIN dirty
        ON events.project = dirty.project AND date_trunc('hour', events.ts) = dirty.hour
    WHERE ts >= (SELECT min(hour) FROM dirty) AND ts < (SELECT max(hour) FROM dirty) + INTERVAL 1 HOUR
)"""


def _dirty_hours(table: str) -> str:
    """The ``dirty`` hours' range, which the scans of a rollup ``table`` skip the rest of it by."""
    return f"{table}.hour BETWEEN (SELECT min(hour) FROM dirty) AND (SELECT max(hour) FROM dirty)"


def _drop_dirty(table: str) -> str:
    """The rows of the ``dirty`` hours deleted from a rollup ``table``."""
    return f"""DELETE FROM {table} USING dirty
WHERE {table}.project = dirty.project AND {table}.hour = dirty.hour AND {_dirty_hours(table)};"""


_DIRTY_DAYS = """CREATE OR REPLACE TEMP TABLE dirty_days AS SELECT DISTINCT project, date_trunc('day', hour) AS day
FROM dirty"""


def _days_anew(table: str, ts: str) -> str:
    """The ``dirty`` hours' days of ``rollup_timings_days`` made anew from their rows in ``table`` (``ts``: its hour
    or day), once the hours' rows are."""
    rows = f"""FROM {table} SEMI JOIN dirty_days ON {table}.project = dirty_days.project
        AND date_trunc('day', {table}.{ts}) = dirty_days.day
    WHERE {table}.{ts} >= (SELECT min(day) FROM dirty_days)
        AND {table}.{ts} < (SELECT max(day) FROM dirty_days) + INTERVAL 1 DAY"""
    return f"""{_DIRTY_DAYS};
    CREATE OR REPLACE TEMP TABLE merged AS {_by_day(rows, ts)};
    DELETE FROM rollup_timings_days USING dirty_days
    WHERE rollup_timings_days.project = dirty_days.project AND rollup_timings_days.day = dirty_days.day;
    INSERT INTO rollup_timings_days BY NAME SELECT * FROM merged"""


_RECOUNT = ";\n".join(
    [f"{_drop_dirty(table)} INSERT INTO {table} BY NAME {rows(_DIRTY_EVENTS)}" for table, (rows, _) in _ROLLUPS.items()]
    + [_days_anew("rollup_timings", "hour")]
)
"""The ``dirty`` hours (``project``, ``hour``) counted anew from the stored events: one row per key; their days
anew from their hours."""
_MERGE = ";\n".join(
    [
        f"""CREATE OR REPLACE TEMP TABLE merged AS SELECT project, hour, {merged}
    FROM {table} SEMI JOIN dirty ON {table}.project = dirty.project AND {table}.hour = dirty.hour
    WHERE {_dirty_hours(table)} GROUP BY ALL;
    {_drop_dirty(table)} INSERT INTO {table} BY NAME SELECT * FROM merged"""
        for table, (_, merged) in _ROLLUPS.items()
    ]
    + [_days_anew("rollup_timings_days", "day")]
)
"""The rows of the ``dirty`` hours and of their days merged: one row per key, as ``_RECOUNT`` counts them (far fewer
rows to read)."""
_ADD_DAYS = f"INSERT INTO rollup_timings_days BY NAME {_by_day('FROM timed')}"
"""The hours' timings just added (``timed``) added to their days' too."""


def _counted_panels(runs: str, counted: str) -> dict[str, str]:
    """The panels that count events and sessions (``summary``, ``clients``, ``users``) over ``runs`` (``grp``,
    ``run``, ``user_id``, ``client_name``: each run with an event in the window, with each user and client seen in
    it there, counted DISTINCT) and ``counted`` (the window's events as ``_EVENT_COUNTS`` rows): raw, or from the rollups."""
    singles = "coalesce(sum(events) FILTER (WHERE NOT grouped), 0)"
    tool_calls = "coalesce(sum(tool_calls), 0)"
    return {
        "summary": f"""
            WITH {runs}, {counted}
            SELECT coalesce(sum(events), 0) AS events, coalesce(sum(failures), 0) AS failures,
                round(1 - sum(failures) / nullif(sum(events), 0), 4) AS success_rate, {tool_calls} AS tool_calls,
                {singles} + (SELECT count(DISTINCT (grp, run)) FROM runs) AS sessions,
                count(DISTINCT user_id) AS users, count(DISTINCT client_name) AS clients
            FROM counted""",
        "clients": f"""
            WITH {runs}, {counted},
            per_client AS (
                SELECT coalesce(client_name, '(unknown)') AS client, sum(events) AS events, {tool_calls} AS tool_calls,
                    sum(failures) AS failures, {singles} AS other_sessions, count(DISTINCT user_id) AS users
                FROM counted GROUP BY 1
            ),
            runs_per_client AS (
                SELECT coalesce(client_name, '(unknown)') AS client, count(DISTINCT (grp, run)) AS runs
                FROM runs GROUP BY 1
            )
            SELECT client, events, tool_calls, failures, other_sessions + coalesce(runs, 0) AS sessions, users
            FROM per_client LEFT JOIN runs_per_client USING (client)
            ORDER BY events DESC, client LIMIT $limit""",
        "users": f"""
            WITH {runs}, {counted},
            per_user AS (
                SELECT user_id AS user, any_value(user_name) AS name, sum(events) AS events,
                    {tool_calls} AS tool_calls, sum(failures) AS failures, {singles} AS other_sessions,
                    max(last_ts) AS last_seen
                FROM counted WHERE user_id IS NOT NULL GROUP BY user_id
            ),
            runs_per_user AS (
                SELECT user_id AS user, count(DISTINCT (grp, run)) AS runs FROM runs WHERE user_id IS NOT NULL GROUP BY 1
            )
            SELECT user, name, events, tool_calls, failures, other_sessions + coalesce(runs, 0) AS sessions, last_seen
            FROM per_user LEFT JOIN runs_per_user USING (user)
            ORDER BY events DESC, user LIMIT $limit""",
    }


_RAW_CHOSEN = f"""moments AS (  -- narrow: when each grouped event happened, and its group
    SELECT ts, {_GROUP} AS grp FROM events
    WHERE project = $project AND kind <> 'client' AND ts >= CAST($start AS TIMESTAMP) - $gap AND ts < $end
        AND {_GROUPED}
),
spans AS (
    SELECT grp, min(ts) FILTER (WHERE ts >= $start) AS started, max(ts) AS ended,
        max(ts) - min(ts) > $gap AS long
    FROM moments GROUP BY grp
),
cuts AS (  -- every run with an event in the window: one per short group, long groups cut at each $gap
    SELECT grp, 1 AS run, 1 AS last_run, started, ended FROM spans WHERE NOT long AND ended >= $start
    UNION ALL
    SELECT grp, run, max(run) OVER (PARTITION BY grp) AS last_run, started, ended FROM (
        SELECT grp, run, min(ts) FILTER (WHERE ts >= $start) AS started, max(ts) AS ended
        FROM ({_numbered("moments WHERE grp IN (SELECT grp FROM spans WHERE long)")})
        GROUP BY grp, run HAVING max(ts) >= $start
    )
),
chosen AS (SELECT * FROM cuts ORDER BY started DESC, grp, run LIMIT $limit)"""
"""The sessions panel's runs from the raw events: ``chosen``, the newest ``$limit`` runs with an event in the window
(``grp``, ``run``, ``started`` and ``ended``: their first and last event there, ``last_run``: how many runs their
group has from ``$gap`` before the window to its end)."""
_RAW_EARLIER = """SELECT DISTINCT session_id FROM events
    WHERE project = $project AND kind <> 'client' AND ts < CAST($start AS TIMESTAMP) - $gap
        AND session_id IN (SELECT session_id FROM runs WHERE tag = 's')"""
"""The session ids of the chosen ``runs`` with events before those the window's runs are cut from."""
_ROLLED_CHOSEN = f"""touching AS (
    SELECT grp, run_start, any_value(run_end) AS run_end,
        min(first_ts) FILTER (WHERE first_ts >= $start AND first_ts < $end) AS first_ts,
        max(last_ts) FILTER (WHERE last_ts >= $start AND last_ts < $end) AS last_ts
    FROM rollup_runs
    WHERE project = $project AND hour >= date_trunc('hour', CAST($start AS TIMESTAMP)) AND hour < $end
        AND first_ts < $end AND last_ts >= $start
    GROUP BY grp, run_start
),
edges AS (  -- the events of the partial hours at the window's edges, to the runs they are in
    SELECT touching.grp, run_start, min(ts) AS first_ts, max(ts) AS last_ts
    FROM (SELECT ts, {_GROUP} AS grp FROM events WHERE {_IN_WINDOW} AND {_GROUPED}
          AND (ts < $whole_start OR ts >= $whole_end)) AS edge
    JOIN touching ON edge.grp = touching.grp AND edge.ts BETWEEN touching.run_start AND touching.run_end
    GROUP BY touching.grp, run_start
),
picked AS (
    SELECT grp, run_start AS run, least(touching.first_ts, edges.first_ts) AS started,
        greatest(touching.last_ts, edges.last_ts) AS ended
    FROM touching LEFT JOIN edges USING (grp, run_start) ORDER BY started DESC, grp, run LIMIT $limit
),
chosen AS (
    SELECT picked.*, (
        SELECT count(*) FROM (SELECT DISTINCT run_start FROM rollup_runs AS r WHERE r.project = $project
            AND r.grp = picked.grp AND run_end >= CAST($start AS TIMESTAMP) - $gap AND run_start < $end)
    ) AS last_run
    FROM picked
)"""
_ROLLED_EARLIER = """SELECT session_id FROM runs WHERE tag = 's' AND grp IN (
    SELECT grp FROM rollup_runs
    WHERE project = $project AND grp IN (SELECT grp FROM chosen) AND run_start < CAST($start AS TIMESTAMP) - $gap
)"""
"""``_RAW_CHOSEN`` from the rollups: a run's first and last event in the window are those of its hours' rows there,
or at the partial hours of the edges, among the raw events."""


def _sessions_panel(chosen: str, earlier: str) -> str:
    """The sessions panel, its runs ``chosen`` and ``earlier`` (``_RAW_CHOSEN`` and ``_RAW_EARLIER``, or the
    ``_ROLLED_`` ones)."""
    return f"""
        WITH {chosen},
        runs AS MATERIALIZED (  -- only now the chosen runs' own events, for their figures
            SELECT chosen.grp, chosen.run, any_value(chosen.last_run) AS last_run, any_value({_TAG}) AS tag,
                any_value(session_id) AS session_id, min(event_id) AS first_event, min(user_id) AS user,
                min(client_name) AS client, {_SESSION_FIGURES}
            FROM chosen JOIN (
                SELECT {_SESSION_COLUMNS}, {_GROUP} AS grp FROM events
                WHERE {_IN_WINDOW} AND {_GROUPED} AND ts >= (SELECT min(started) FROM chosen)
            ) AS own ON own.grp = chosen.grp AND own.ts BETWEEN chosen.started AND chosen.ended
            GROUP BY chosen.grp, chosen.run
        ),
        earlier AS ({earlier}),
        grouped AS (
            SELECT CASE WHEN tag <> 's' THEN tag || '-' || first_event
                    WHEN last_run = 1 AND session_id NOT IN (SELECT session_id FROM earlier) THEN session_id
                    ELSE session_id || '@' || first_event END AS session,
                tag <> 's' AS stateless,
                CASE tag WHEN 's' THEN 'session id' WHEN 'u' THEN 'user + client' ELSE 'caller + client' END AS grouping,
                user, client, started, ended, duration_s, events, tool_calls, failures, intents
            FROM runs
        ),
        singles AS (  -- an event of no group: a session of its own
            SELECT 'e-' || event_id AS session, true AS stateless, 'single event' AS grouping, NULL AS user,
                client_name AS client, ts AS started, ts AS ended, 0.0 AS duration_s, 1 AS events,
                CAST(type = 'mcp:tools/call' AS INTEGER) AS tool_calls, CAST(is_error AS INTEGER) AS failures,
                CAST(intent IS NOT NULL AS INTEGER) AS intents
            FROM events WHERE {_IN_WINDOW} AND session_id IS NULL AND user_id IS NULL AND caller_id IS NULL
            ORDER BY started DESC, session LIMIT $limit
        )
        SELECT *, CASE WHEN ended > CAST($now AS TIMESTAMP) - $gap THEN 'active' ELSE 'ended' END AS state
        FROM (FROM grouped UNION ALL FROM singles)
        ORDER BY started DESC, session LIMIT $limit"""


_TIMING_COLUMNS = f"""{_p("d", 0.5)} AS p50_ms, {_p("d", 0.95)} AS p95_ms, {_p("d", 0.99)} AS p99_ms,
    {_p("o", 0.95)} AS own_p95_ms, {_p("u", 0.95)} AS upstream_p95_ms,
    round(sum(ms) FILTER (WHERE measure = 'u') / nullif(sum(ms) FILTER (WHERE measure = 'd'), 0), 4) AS upstream_share"""
"""The ``latency`` and ``trends`` panels' timings, aggregates of ``_histograms`` rows."""


_TIME_BUCKET = "time_bucket(CAST($bucket AS INTERVAL), ts, CAST($origin AS TIMESTAMP))"
"""An event's time bucket (``store.time_buckets``)."""
_ORIGIN_FLAGS = ", ".join(f"CAST(failure_origin IS NOT DISTINCT FROM '{o}' AS INTEGER) AS {o}_errors" for o in _ORIGINS)


def _trends(counts: str, timings: str) -> str:
    """The ``trends`` panel over ``counts`` (``ts``, ``calls``, ``errors`` and ``<origin>_errors`` of the window's
    requests) and ``timings`` (their ``_timed`` rows), per bucket."""
    errors = ", ".join(f"CAST(sum({o}_errors) AS BIGINT) AS {o}_errors" for o in _ORIGINS)
    return f"""
        WITH counts AS (
            SELECT {_TIME_BUCKET} AS bucket, CAST(sum(calls) AS BIGINT) AS calls, CAST(sum(errors) AS BIGINT) AS errors,
                {errors}
            FROM ({counts}) GROUP BY bucket
        ),
        timings AS (
            SELECT bucket, {_TIMING_COLUMNS}
            FROM {_histograms(timings, "bucket")} GROUP BY bucket
        )
        SELECT bucket, CAST(date_part('epoch', CAST($bucket AS INTERVAL)) AS INTEGER) AS bucket_seconds,
            COLUMNS(* EXCLUDE (bucket))
        FROM counts JOIN timings USING (bucket) ORDER BY bucket"""


_SERVER = "coalesce(server_name, '(unknown)') AS server"
_PERSON_COUNTS = """1 AS events, CAST(type = 'mcp:tools/call' AS INTEGER) AS tool_calls, CAST(is_error AS INTEGER) AS failures,
    ts AS last_ts"""
"""An event as ``rollup_people``'s counts."""


def _servers(people: str, timings: str) -> str:
    """The ``servers`` panel over ``people`` (``server``, ``server_version``, ``client_name``, ``user_id`` and
    ``rollup_people``'s counts) and ``timings`` (``_timed``'s rows per ``server``)."""
    return f"""
        WITH people AS ({people}),
        versions AS (
            SELECT server, string_agg(server_version, ', ' ORDER BY server_version) AS versions
            FROM (SELECT DISTINCT server, server_version FROM people WHERE server_version IS NOT NULL) GROUP BY server
        ),
        p95 AS (SELECT server, {_p("d", 0.95)} AS p95_ms FROM {_histograms(timings, "server")} GROUP BY server)
        SELECT server, versions, events, tool_calls, failures, p95_ms, clients, users, last_seen
        FROM (
            SELECT server, CAST(sum(events) AS BIGINT) AS events, CAST(sum(tool_calls) AS BIGINT) AS tool_calls,
                CAST(sum(failures) AS BIGINT) AS failures, count(DISTINCT client_name) AS clients,
                count(DISTINCT user_id) AS users, max(last_ts) AS last_seen
            FROM people GROUP BY server
        ) LEFT JOIN versions USING (server) LEFT JOIN p95 USING (server)
        ORDER BY events DESC, server LIMIT $limit"""


def _latency(timings: str) -> str:
    """The ``latency`` panel over ``timings`` (``_timed`` rows): all requests, then each tool."""
    columns = f"CAST(coalesce(sum(n) FILTER (WHERE measure = 'd'), 0) AS BIGINT) AS calls, {_TIMING_COLUMNS}"
    return f"""
        WITH timings AS ({timings})
        SELECT NULL AS tool, {columns} FROM {_histograms("FROM timings")}
        UNION ALL (
            SELECT resource AS tool, {columns}
            FROM {_histograms("FROM timings WHERE type = 'mcp:tools/call' AND resource IS NOT NULL", "resource")}
            GROUP BY resource ORDER BY p95_ms DESC, tool LIMIT $limit
        )"""


def _tools(calls: str, users: str, timings: str) -> str:
    """The ``tools`` panel over ``calls`` (``resource``, ``events``, ``failures``, ``last_ts``), ``users``
    (``resource``, ``user_id``) and ``timings`` (``_timed`` rows of the tool calls)."""
    return f"""
        WITH per_tool AS (
            SELECT resource, CAST(sum(events) AS BIGINT) AS calls, CAST(sum(failures) AS BIGINT) AS errors,
                max(last_ts) AS last_called
            FROM ({calls}) GROUP BY resource
        ),
        per_user AS (SELECT resource, count(DISTINCT user_id) AS users FROM ({users}) GROUP BY resource),
        p95 AS (
            SELECT resource, {_p("d", 0.95)} AS p95_ms
            FROM {_histograms(timings, "resource")} GROUP BY resource
        )
        SELECT resource AS tool, calls, errors, round(errors / calls, 4) AS error_rate, p95_ms,
            coalesce(users, 0) AS users, last_called, round(calls / sum(calls) OVER (), 4) AS share
        FROM per_tool LEFT JOIN p95 USING (resource) LEFT JOIN per_user USING (resource)
        ORDER BY calls DESC, tool LIMIT $limit"""


_WHOLE_HOURS = "project = $project AND hour >= $whole_start AND hour < $whole_end"
_EDGES = "(ts < $whole_start OR ts >= $whole_end)"


def _rolled_timings(
    where: str,
    by: str = "resource",
    measures: str = "d",
    start: str = "$start",
    whole_start: str = "$whole_start",
    end: str = "$end",
    whole_end: str = "$whole_end",
    days: bool = True,
) -> str:
    """``_timed``'s rows for the requests from ``start`` to ``end`` (the window's) that match ``where`` (of events):
    the rollups' whole days (``rollup_timings_days``, unless ``days`` is false: ``by`` reads ``ts``, the hour) and the
    other whole hours (``whole_start`` to ``whole_end``; ``ts`` their day or hour), the edges' events."""
    edges = f"ts >= {start} AND ts < {end} AND (ts < {whole_start} OR ts >= {whole_end})"
    listed = ", ".join(f"'{name}'" for name in measures)
    kept = f"project = $project AND {where} AND measure IN ({listed})"
    hours = f"hour >= {whole_start} AND hour < {whole_end}"
    rolled = f"SELECT hour AS ts, * FROM rollup_timings WHERE {kept} AND {hours}"
    if days:  # the whole days among the whole hours, from [first, last)
        first = f"date_trunc('day', CAST({whole_start} AS TIMESTAMP) + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND)"
        last = f"greatest(date_trunc('day', CAST({whole_end} AS TIMESTAMP)), {first})"
        rolled = f"""SELECT day AS ts, * FROM rollup_timings_days WHERE {kept} AND day >= {first} AND day < {last}
            UNION ALL BY NAME
            {rolled} AND (hour < {first} OR hour >= {last})"""
    return f"""
        SELECT {by}, measure, key, n, ms, lo_ms, hi_ms FROM ({rolled})
        UNION ALL BY NAME
        SELECT * FROM ({_timed("events", f"project = $project AND kind <> 'client' AND {where} AND {edges}", by, measures)})"""


_ROLLED_CALLS = "type = 'mcp:tools/call' AND resource IS NOT NULL"
_ROLLED_PANELS = {
    "latency": _latency(_rolled_timings("true", "type, resource", "dou")),
    "servers": _servers(
        f"""SELECT {_SERVER}, server_version, client_name, user_id, events, tool_calls, failures, last_ts
        FROM rollup_people WHERE {_WHOLE_HOURS}
        UNION ALL SELECT {_SERVER}, server_version, client_name, user_id, {_PERSON_COUNTS}
        FROM events WHERE {_IN_WINDOW} AND {_EDGES}""",
        _rolled_timings("true", _SERVER),
    ),
    "trends": _trends(
        f"""SELECT hour AS ts, events AS calls, failures AS errors, {", ".join(f"{o}_errors" for o in _ORIGINS)}
        FROM rollup_counts WHERE {_WHOLE_HOURS} AND type IN {REQUEST_TYPES}
        UNION ALL SELECT ts, 1, CAST(is_error AS INTEGER), {_ORIGIN_FLAGS}
        FROM events WHERE {_IN_WINDOW} AND type IN {REQUEST_TYPES} AND {_EDGES}""",
        _rolled_timings("true", f"{_TIME_BUCKET} AS bucket", "dou", days=False),
    ),
    "tools": _tools(
        f"""SELECT resource, events, failures, last_ts FROM rollup_counts WHERE {_WHOLE_HOURS} AND {_ROLLED_CALLS}
        UNION ALL SELECT resource, 1, CAST(is_error AS INTEGER), ts FROM events WHERE {_TOOL_CALLS} AND {_EDGES}""",
        f"""SELECT resource, user_id FROM rollup_costs WHERE {_WHOLE_HOURS}
        UNION ALL SELECT resource, user_id FROM events WHERE {_TOOL_CALLS} AND {_EDGES}""",
        _rolled_timings(_ROLLED_CALLS),
    ),
    **_counted_panels(_ROLLED_RUNS, _ROLLED_COUNTED),
    "sessions": _sessions_panel(_ROLLED_CHOSEN, _ROLLED_EARLIER),
    **{name: _unused(*unused, rolled=True) for name, unused in _UNUSED.items()},
    "arguments": _arguments(f"""
        SELECT type, resource, shape, keys, calls, failures FROM rollup_shapes
            WHERE project = $project AND hour >= $whole_start AND hour < $whole_end
        UNION ALL SELECT type, resource, hash(argument_keys), argument_keys, 1, CAST(is_error AS INTEGER) FROM events
            WHERE {_IN_WINDOW} AND {_SHAPED} AND (ts < $whole_start OR ts >= $whole_end)"""),
    "cost": _cost(f"""
        SELECT resource, user_id, calls, response_bytes, responses, total_ms FROM rollup_costs
            WHERE project = $project AND hour >= $whole_start AND hour < $whole_end
        UNION ALL SELECT resource, user_id, 1, coalesce(response_size, 0), CAST(response_size IS NOT NULL AS INTEGER),
            duration_ms FROM events WHERE {_TOOL_CALLS} AND (ts < $whole_start OR ts >= $whole_end)"""),
    "new_clients": _new_clients("""
        SELECT client_name FROM rollup_people WHERE project = $project AND hour < $start_hour
        UNION ALL SELECT client_name FROM events
            WHERE project = $project AND kind <> 'client' AND ts >= $start_hour AND ts < $start"""),
}
"""The panels read from the rollups (``DuckDBStore._rolled``); ``_PANELS`` has the same read from the raw events."""
_PANELS: dict[str, str] = {
    **_counted_panels(_RUNS, _RAW_COUNTED),
    "timeseries": f"""
        SELECT {_TIME_BUCKET} AS bucket,
            CAST(date_part('epoch', CAST($bucket AS INTERVAL)) AS INTEGER) AS bucket_seconds,
            CASE $by WHEN 'family' THEN {_FAMILY} WHEN 'tool' THEN resource
                WHEN 'client' THEN coalesce(client_name, '(unknown)') ELSE type END AS series,
            count(*) AS events, count(*) FILTER (WHERE is_error) AS failures
        FROM events WHERE {_IN_WINDOW} AND ($by <> 'tool' OR (type = 'mcp:tools/call' AND resource IS NOT NULL))
        GROUP BY ALL ORDER BY bucket, series""",
    "trends": _trends(
        f"""SELECT ts, 1 AS calls, CAST(is_error AS INTEGER) AS errors, {_ORIGIN_FLAGS}
        FROM events WHERE {_IN_WINDOW} AND type IN {REQUEST_TYPES}""",
        _timed("events", _IN_WINDOW, f"{_TIME_BUCKET} AS bucket", "dou"),
    ),
    "extent": """
        SELECT min(ts) AS first_event, max(ts) AS last_event, count(*) AS events
        FROM events WHERE project = $project AND kind <> 'client'""",
    "latency": _latency(_timed("events", _IN_WINDOW, "type, resource", "dou")),
    "tools": _tools(
        f"SELECT resource, 1 AS events, CAST(is_error AS INTEGER) AS failures, ts AS last_ts FROM events WHERE {_TOOL_CALLS}",
        f"SELECT resource, user_id FROM events WHERE {_TOOL_CALLS}",
        _timed("events", _TOOL_CALLS),
    ),
    "failures": f"""
        SELECT coalesce(failure_origin, 'unknown') AS origin, coalesce(failure_reason, error_type) AS reason,
            count(*) AS failures, sum(count(*)) OVER (PARTITION BY coalesce(failure_origin, 'unknown')) AS origin_failures,
            {_EXAMPLE}, max(ts) AS last_seen
        FROM events WHERE {_IN_WINDOW} AND is_error
        GROUP BY 1, 2 ORDER BY origin_failures DESC, origin, failures DESC, reason""",
    "methods": f"""
        SELECT type AS method, count(*) AS events, round(count(*) / sum(count(*)) OVER (), 4) AS share,
            round(sum(count(*) FILTER (WHERE type = 'mcp:tools/call')) OVER ()
                  / nullif(sum(count(*) FILTER (WHERE type = 'mcp:tools/list')) OVER (), 0), 3) AS calls_per_list
        FROM events WHERE {_IN_WINDOW} GROUP BY type ORDER BY events DESC, method""",
    "prompts": f"""
        WITH per_user AS (  -- each list of keys as sent, by its hash (cheaper than sorting every event's list)
            SELECT resource, any_value(argument_keys) AS keys, user_id, count(*) AS uses,
                count(*) FILTER (WHERE is_error) AS failures
            FROM events WHERE {_IN_WINDOW} AND type = 'mcp:prompts/get'
            GROUP BY resource, hash(argument_keys), user_id
        )
        SELECT resource AS prompt, array_to_string(list_sort(keys), ', ') AS argument_keys,
            CAST(sum(uses) AS BIGINT) AS uses, CAST(sum(failures) AS BIGINT) AS failures,
            count(DISTINCT user_id) AS users
        FROM per_user GROUP BY ALL ORDER BY uses DESC, prompt, argument_keys LIMIT $limit""",
    "cost": _cost(f"""
        SELECT resource, user_id, 1 AS calls, coalesce(response_size, 0) AS response_bytes,
            CAST(response_size IS NOT NULL AS INTEGER) AS responses, duration_ms AS total_ms
        FROM events WHERE {_TOOL_CALLS}"""),
    **{name: _unused(*unused) for name, unused in _UNUSED.items()},
    "errors": f"""
        SELECT error_code AS code, {_CODE_NAME} AS name, count(*) AS errors,
            list_sort(list_distinct(list(replace(type, 'mcp:', '')))) AS methods,
            list_sort(list_distinct(list(failure_origin))) AS origins,
            {_EXAMPLE}, max(ts) AS last_seen
        FROM events WHERE {_IN_WINDOW} AND is_error AND error_code IS NOT NULL
        GROUP BY error_code ORDER BY errors DESC, code LIMIT $limit""",
    "arguments": _arguments(f"""
        SELECT type, resource, hash(argument_keys) AS shape, argument_keys AS keys, 1 AS calls,
            CAST(is_error AS INTEGER) AS failures
        FROM events WHERE {_IN_WINDOW} AND {_SHAPED}"""),
    "servers": _servers(
        f"SELECT {_SERVER}, server_version, client_name, user_id, {_PERSON_COUNTS} FROM events WHERE {_IN_WINDOW}",
        _timed("events", _IN_WINDOW, _SERVER),
    ),
    "new_clients": _new_clients(
        "SELECT client_name FROM events WHERE project = $project AND kind <> 'client' AND ts < $start"
    ),
    "intents": f"""
        SELECT ts, intent, resource AS tool, user_id AS user, client_name AS client, session_id, is_error, event_id
        FROM events WHERE {_IN_WINDOW} AND intent IS NOT NULL
            AND ($q IS NULL OR contains(lower(intent), lower($q)))
        ORDER BY ts DESC, event_id LIMIT $limit""",
    "sessions": _sessions_panel(_RAW_CHOSEN, _RAW_EARLIER),
}
_TIMELINE = """SELECT ts, event_id, type, resource, intent, duration_ms, upstream_ms, response_size, argument_keys,
    is_error, error_type, error_message, failure_origin, failure_reason, user_id AS user, client_name AS client,
    json_extract_string(custom, '$.message') AS message, custom, content, trace_id, span_id"""
_SESSION_TIMELINES = {
    "": f"""{_TIMELINE} FROM events WHERE project = $project AND kind <> 'client' AND session_id = $session
        ORDER BY ts, event_id LIMIT $limit""",
    "e-": f"""{_TIMELINE} FROM events WHERE project = $project AND kind <> 'client' AND session_id IS NULL
        AND event_id = $anchor LIMIT $limit""",
    "run": f"""WITH anchor AS (
            SELECT session_id, user_id, caller_id, client_name FROM events
            WHERE project = $project AND event_id = $anchor LIMIT 1
        ),
        same AS (
            SELECT events.* FROM events JOIN anchor ON CASE
                WHEN anchor.session_id IS NOT NULL THEN events.session_id = anchor.session_id
                WHEN anchor.user_id IS NOT NULL THEN events.session_id IS NULL AND events.user_id = anchor.user_id
                    AND events.client_name IS NOT DISTINCT FROM anchor.client_name
                ELSE events.session_id IS NULL AND events.user_id IS NULL AND events.caller_id = anchor.caller_id
                    AND events.client_name IS NOT DISTINCT FROM anchor.client_name END
            WHERE project = $project AND kind <> 'client'
        ),
        runs AS ({_numbered(f"(SELECT *, {_GROUP} AS grp FROM same)")}),
        mine AS (SELECT * FROM runs WHERE run = (SELECT run FROM runs WHERE event_id = $anchor))
        {_TIMELINE} FROM mine ORDER BY ts, event_id LIMIT $limit""",
}
"""One session's timeline, by the form of its key (``store.panel_query``): a session id (all its events); ``e-<event>``
an event of its own; ``<session id>@<event>``, ``u-<event>``, ``c-<event>``: the session (run) that holds that event,
cut from its session id's, user's and client's, or caller's and client's whole history."""


_FIRST_EVENT = f"SELECT min(ts) AS first FROM events WHERE {_IN_WINDOW}"
_SERVED = "project = $project AND kind <> 'client'"
_CALLS = f"{_SERVED} AND type = 'mcp:tools/call' AND resource IS NOT NULL"
_NOW = "CAST($now AS TIMESTAMP)"
_USUAL_START = f"{_NOW} - INTERVAL 24 HOUR - INTERVAL 15 MINUTE"
_USUAL_END = f"{_NOW} - INTERVAL 15 MINUTE"


def _latency_spike(usual: str) -> str:
    """The ``latency_spike`` rule over ``usual`` (``_timed`` rows of the tool calls of the 24 hours before the last
    15 minutes)."""

    def p95(timings: str, columns: str = "") -> str:
        return f"""SELECT resource AS subject, {_percentile("d", 0.95)} AS p95{columns}
            FROM {_histograms(timings, "resource")} GROUP BY resource"""

    recent = _timed("events", f"{_CALLS} AND ts >= {_NOW} - INTERVAL 15 MINUTE AND ts < {_NOW}")
    return f"""
        WITH recent AS ({p95(recent, ", sum(n) AS calls")}), usual AS ({p95(usual)})
        SELECT subject, round(recent.p95, 3) AS observed, round($latency_factor * usual.p95, 3) AS threshold
        FROM recent JOIN usual USING (subject)
        WHERE recent.calls >= $latency_min_calls AND recent.p95 > $latency_factor * usual.p95"""


def _destructive_new_client(seen: str) -> str:
    """The ``destructive_new_client`` rule, ``seen``: when clients were seen before now (``client_name``, ``ts``)."""
    return f"""
        WITH destructive AS (
            SELECT DISTINCT unnest(destructive_tools) AS tool FROM events
            WHERE {_SERVED} AND type = 'mcp:tools/list' AND ts >= {_NOW} - INTERVAL 7 DAY AND ts < {_NOW}
        ),
        newcomers AS (
            SELECT client_name FROM ({seen}) WHERE client_name IS NOT NULL
            GROUP BY 1 HAVING min(ts) >= {_NOW} - to_microseconds(CAST($new_client_hours * 3600e6 AS BIGINT))
        )
        SELECT resource || ' by ' || client_name AS subject, count(*) AS observed, 0 AS threshold FROM events
        WHERE {_CALLS} AND ts >= {_NOW} - INTERVAL 1 HOUR AND ts < {_NOW}
            AND resource IN (SELECT tool FROM destructive) AND client_name IN (SELECT client_name FROM newcomers)
        GROUP BY resource, client_name"""


_DEVIATIONS = {
    # subject, observed, threshold (a row is an alert), window: what each rule finds at $now.
    "volume_spike": (
        f"""
        WITH recent AS (
            SELECT resource AS subject, count(*) AS calls FROM events
            WHERE {_CALLS} AND ts >= {_NOW} - INTERVAL 1 HOUR AND ts < {_NOW} GROUP BY 1
        ),
        usual AS (  -- the same hour of each of the 7 days before, for tools called in that week at all
            SELECT resource AS subject, count(*) FILTER (
                WHERE (epoch_us({_NOW}) - epoch_us(ts)) % 86400000000 BETWEEN 1 AND 3600000000) / 7.0 AS calls
            FROM events
            WHERE {_CALLS} AND ts >= {_NOW} - INTERVAL 7 DAY - INTERVAL 1 HOUR AND ts < {_NOW} - INTERVAL 1 DAY
            GROUP BY 1
        )
        SELECT subject, recent.calls AS observed, $volume_factor * greatest(usual.calls, 1) AS threshold
        FROM recent JOIN usual USING (subject)
        WHERE recent.calls >= $volume_min_calls AND recent.calls >= $volume_factor * greatest(usual.calls, 1)""",
        "1h vs the same hour over 7 days",
        "{subject}: {observed:.0f} calls in the last hour, {ratio:.1f}x the usual {usual:.1f}",
    ),
    "latency_spike": (
        _latency_spike(_timed("events", f"{_CALLS} AND ts >= {_USUAL_START} AND ts < {_USUAL_END}")),
        "p95 over 15m vs the 24h before",
        "{subject}: p95 {observed:.0f} ms over 15 minutes, {ratio:.1f}x the usual {usual:.0f} ms",
    ),
    "error_ratio": (
        f"""
        SELECT resource AS subject,
            round(count(*) FILTER (WHERE failure_origin IN ('server', 'upstream')) / count(*), 4) AS observed,
            $error_ratio AS threshold
        FROM events WHERE {_CALLS} AND ts >= {_NOW} - INTERVAL 15 MINUTE AND ts < {_NOW}
        GROUP BY 1 HAVING count(*) >= $error_min_calls
            AND count(*) FILTER (WHERE failure_origin IN ('server', 'upstream')) > $error_ratio * count(*)""",
        "15m",
        "{subject}: {observed:.1%} of calls failed (server or upstream) over 15 minutes",
    ),
    "auth_spike": (
        f"""
        WITH recent AS (
            SELECT coalesce(failure_reason, '(unknown)') AS subject, count(*) AS failures FROM events
            WHERE {_SERVED} AND failure_origin = 'auth' AND ts >= {_NOW} - INTERVAL 15 MINUTE AND ts < {_NOW} GROUP BY 1
        ),
        usual AS (  -- per 15 minutes over the day before
            SELECT coalesce(failure_reason, '(unknown)') AS subject, count(*) / 96.0 AS failures FROM events
            WHERE {_SERVED} AND failure_origin = 'auth'
                AND ts >= {_NOW} - INTERVAL 24 HOUR - INTERVAL 15 MINUTE AND ts < {_NOW} - INTERVAL 15 MINUTE
            GROUP BY 1
        )
        SELECT subject, recent.failures AS observed, $auth_factor * greatest(coalesce(usual.failures, 0), 1) AS threshold
        FROM recent LEFT JOIN usual USING (subject)
        WHERE recent.failures >= $auth_min_failures
            AND recent.failures >= $auth_factor * greatest(coalesce(usual.failures, 0), 1)""",
        "15m vs the 24h before",
        "auth {subject}: {observed:.0f} refusals in 15 minutes, {ratio:.1f}x the usual {usual:.1f}",
    ),
    "destructive_new_client": (
        _destructive_new_client(f"SELECT client_name, ts FROM events WHERE {_SERVED} AND ts < {_NOW}"),
        "1h",
        "{subject}: a destructive tool called {observed:.0f} times by a client first seen in the last day",
    ),
}
"""The deviation rules as queries (``alerts.Rules`` names their thresholds); ``slo_burn`` reads the ``slo`` panel."""
_ROLLED_DEVIATIONS = {
    **_DEVIATIONS,
    "latency_spike": (
        _latency_spike(
            _rolled_timings(
                _ROLLED_CALLS,
                start=_USUAL_START,
                whole_start="$usual_whole_start",
                end=_USUAL_END,
                whole_end="$usual_whole_end",
            )
        ),
        *_DEVIATIONS["latency_spike"][1:],
    ),
    "destructive_new_client": (
        _destructive_new_client(f"""SELECT client_name, first_ts AS ts FROM rollup_people
            WHERE project = $project AND hour < $now_hour
            UNION ALL SELECT client_name, ts FROM events WHERE {_SERVED} AND ts >= $now_hour AND ts < {_NOW}"""),
        *_DEVIATIONS["destructive_new_client"][1:],
    ),
}
"""The rules reading the rollups where they can (``latency_spike``'s day, the clients seen before now)."""
_WEEK = "CAST($end AS TIMESTAMP) - INTERVAL 7 DAY"


def _slo_baseline(called: str, week: str) -> str:
    """The observed p95 of each tool called in the window (``called``: their ``resource``), over the 7 days up to
    the window's end (``week``: ``_timed`` rows of the tool calls then), the tier it is in; null for a tool called in
    a longer window but not in those 7 days (the fastest tier)."""
    return f"""
    SELECT tool, baseline_p95_ms FROM (SELECT DISTINCT resource AS tool FROM ({called}))
    LEFT JOIN (
        SELECT resource AS tool, {_p("d", 0.95)} AS baseline_p95_ms
        FROM {_histograms(week, "resource")} GROUP BY resource
    ) USING (tool)"""


def _slo_window(timings: str) -> str:
    """Per tool called in the window (``timings``: ``_timed`` rows of its calls): ``calls``, those ``within`` its
    target (in its bucket or below: to the histograms' resolution, as the percentiles) and ``p95_ms``."""
    target = "CAST($slo_targets AS DOUBLE[])[list_position(CAST($slo_tools AS VARCHAR[]), resource)]"
    return f"""
    SELECT resource AS tool, CAST(sum(n) AS BIGINT) AS calls,
        CAST(coalesce(sum(n) FILTER (WHERE key <= {_bucket(target)}), 0) AS BIGINT) AS within,
        {_p("d", 0.95)} AS p95_ms
    FROM {_histograms(timings, "resource")}
    GROUP BY resource ORDER BY calls DESC, tool"""


_SLO_BASELINE = _slo_baseline(
    f"SELECT resource FROM events WHERE {_TOOL_CALLS}", _timed("events", f"{_CALLS} AND ts >= {_WEEK} AND ts < $end")
)
_SLO_WINDOW = _slo_window(_timed("events", _TOOL_CALLS))
_ROLLED_SLO_WINDOW = _slo_window(_rolled_timings(_ROLLED_CALLS))
_ROLLED_PANELS["slo"] = _slo_baseline(
    f"""SELECT resource FROM rollup_counts WHERE {_WHOLE_HOURS} AND {_ROLLED_CALLS}
    UNION ALL SELECT resource FROM events WHERE {_TOOL_CALLS} AND {_EDGES}""",
    _rolled_timings(_ROLLED_CALLS, start=_WEEK, whole_start="$week_whole_start"),
)
_QUERIES = {**_PANELS, "slo": _SLO_BASELINE}
"""Every panel's query but the ``session`` timeline's; the ``slo`` panel's reads the tiers' baselines."""


_UNDELIVERED = """
    SELECT a.id, a.project, a.rule, a.subject, t.transition, a.observed, a.threshold, a."window", a.since,
        a.resolved_at, a.text, u.url
    FROM alerts AS a
    CROSS JOIN (SELECT unnest(CAST($urls AS VARCHAR[])) AS url) AS u
    CROSS JOIN (SELECT unnest(['firing', 'resolved']) AS transition) AS t
    LEFT JOIN alert_deliveries AS d ON d.alert_id = a.id AND d.state = t.transition AND d.url = u.url
    WHERE (t.transition = 'firing' OR a.state = 'resolved') AND NOT coalesce(d.delivered, false)
        AND coalesce(d.attempts, 0) < $attempts
        AND (d.alert_id IS NOT NULL OR CASE t.transition WHEN 'firing' THEN a.since ELSE a.resolved_at END >= $not_before)
    ORDER BY a.id, t.transition, u.url"""


def _run(cursor: Any, sql: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of ``sql`` with the ``values`` it names (``$name``), as dicts with aware timestamps."""
    used = {name: values[name] for name in set(re.findall(r"\$(\w+)", sql))}
    result = cursor.execute(sql, used)
    names = [column[0] for column in result.description]
    return [{name: _aware(value) for name, value in zip(names, row, strict=True)} for row in result.fetchall()]


def _scalar(result: duckdb.DuckDBPyConnection) -> Any:
    """The one value of a query that always returns a row (an aggregate, a DELETE's count)."""
    return _row(result)[0]


def _row(result: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    """The one row of a query that always returns one (aggregates)."""
    row = result.fetchone()
    if row is None:
        raise RuntimeError("the query returned no row")
    return row


_DEFAULTS: dict[str, Any] = {"limit": 100, "by": "method", "bucket": None, "session": None, "q": None}


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _aware(value: Any) -> Any:
    """Stored timestamps are UTC; answers say so."""
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) else value


class _Pending:
    """One ``add`` call waiting for a group commit, its batch deduplicated and already in columns (built outside
    the write lock, so that this work overlaps the commit in progress)."""

    def __init__(self, project: str, events: Sequence[Event]) -> None:
        self.project, self.received = project, len(events)
        unique = list({event["event_id"]: event for event in events}.values())
        self.table = to_arrow(project, unique)
        self.ids = [event["event_id"] for event in unique]
        self.keys = [RecentIds.key(project, event_id) for event_id in self.ids]
        self.stamps = [event["timestamp_ns"] // 1000 for event in unique]
        self.new: list[bool] = []
        self.result: IngestResult | None = None
        self.error: Exception | None = None


class SchemaTooNew(RuntimeError):
    pass


DEFAULT_MEMORY_LIMIT = "1GB"
_ROLL_AFTER = 20_000
"""Events stored (and kept in memory, ``_UNROLLED`` columns) before the rollups are brought up to date with them in
one pass; a panel that reads the rollups brings them up to date first."""
_UNROLLED = ("project", "ts", "kind", "type", "resource", "client_name", "user_id", "user_name", "server_name",
             "failure_origin", "is_error", "session_id", "caller_id", "tools_listed", "prompts_listed",
             "argument_keys", "response_size", "duration_ms", "upstream_ms", "server_version")  # fmt: skip
"""What the rollups are made of (``_ROLLUPS``, ``_TOUCHED``)."""
_HOUR_US = 3_600_000_000
_RECOUNT_AFTER = 20_000
"""Rows added to ``rollup_people`` (a catch-up adds one per key its events hold) before their hours are merged into one row
per key."""


class DuckDBStore:
    """``Store`` on an embedded DuckDB file (or ``:memory:``)."""

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        recent_ids: int = DEFAULT_CAPACITY,
        session_timeout: timedelta = SESSION_GAP,
        prices: Prices = Prices(),
        slos: Slos = Slos(),
        rollups: bool = True,
    ) -> None:
        """``recent_ids``: how many stored event ids are kept in memory to rule out duplicates without reading
        the table (``recent_ids.py``); ``session_timeout``: the inactivity that ends a session; ``prices``: what
        the cost panel's estimate charges per token; ``slos``: the latency tiers of the ``slo`` panel;
        ``rollups``: False reads every panel from the raw events (the reference the rollups are tested against;
        they are kept up to date all the same)."""
        self.session_timeout = session_timeout
        self.rollups = rollups
        self._dirty: set[tuple[str, datetime]] = set()  # hours with rows of several catch-ups, to merge
        self._uncounted = 0  # rows added to rollup_people since the last recount
        self._unrolled: list[pa.Table] = []  # events stored since the rollups were last brought up to date
        self._unrolled_events = 0
        self._failed = False  # a catch-up failed: the next recounts the hours behind from the events (_unrolled unused)
        self._behind: set[tuple[str, int]] = set()  # their hours (epoch microseconds) in rollup_behind
        self.prices = prices
        self.slos = slos
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
        self._recover()
        self._cut_all_runs()
        newest = _scalar(self._connection.execute("SELECT epoch_us(max(ts)) FROM events"))
        self._recent = RecentIds(floor_us=0 if newest is None else newest + 1, capacity=recent_ids)

    def _migrate(self) -> None:
        with self._write:
            db = self._connection
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP)")
            current = _scalar(db.execute("SELECT coalesce(max(version), 0) FROM schema_version"))
            if current > SCHEMA_VERSION:
                raise SchemaTooNew(f"{self.path} has schema version {current}; this release knows {SCHEMA_VERSION}")
            for version, ddl in MIGRATIONS:
                if version > current:
                    with self._transaction():
                        db.execute(ddl)
                        db.execute("INSERT INTO schema_version VALUES (?, now())", [version])

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """The block in one transaction on the store's connection: committed at its end, rolled back if it raises
        (under the write lock)."""
        db = self._connection
        db.execute("BEGIN TRANSACTION")
        try:
            yield
            db.execute("COMMIT")
        except Exception:
            db.execute("ROLLBACK")
            raise

    def _cut_all_runs(self) -> None:
        """Cut ``rollup_runs`` from every stored event unless they were cut with this store's session timeout (a
        new schema, another timeout)."""
        gap_us = self.session_timeout // timedelta(microseconds=1)
        with self._write:
            db = self._connection
            if _scalar(db.execute("SELECT max(gap_us) FROM rollup_state")) == gap_us:
                return
            with self._transaction():
                db.execute("DELETE FROM rollup_runs; DELETE FROM rollup_state")
                self._recut("events")
                db.execute("INSERT INTO rollup_state VALUES (?)", [gap_us])

    def _recover(self) -> None:
        """Roll up what a process stored and ended before it rolled up (its hours in ``rollup_behind``)."""
        db = self._connection
        with self._write:
            if _scalar(db.execute("SELECT count(*) FROM rollup_behind")):
                with self._transaction():
                    self._roll_behind()

    def _roll_behind(self) -> None:
        """Bring the rollups up to date with every hour in ``rollup_behind`` from the stored events (in a
        transaction): those hours counted anew, and the runs of the groups with events there cut anew."""
        db = self._connection
        self._recount("SELECT DISTINCT project, hour FROM rollup_behind")
        db.execute(f"CREATE OR REPLACE TEMP TABLE changed AS SELECT {', '.join(_UNROLLED)} FROM {_DIRTY_EVENTS}")
        self._recut("changed")
        db.execute("DELETE FROM rollup_behind")

    def _recut(self, source: str) -> None:
        """Cut anew the runs that the events of ``source`` (a table: events just added, about to be deleted, or all)
        change."""
        db = self._connection
        lo, hi = _row(db.execute(f"SELECT min(ts), max(ts) FROM {source}"))
        if lo is None:
            return
        values = {"gap": self.session_timeout, "lo": lo, "hi": hi}
        db.execute(f"CREATE OR REPLACE TEMP TABLE affected AS {_TOUCHED.format(source=source)}", values)
        lo, hi = _row(db.execute("SELECT min(lo), max(hi) FROM affected"))
        if lo is not None:
            db.execute(_DROP_RUNS, {"lo": lo, "hi": hi})
            db.execute(_CUT_RUNS, {"gap": self.session_timeout, "lo": lo, "hi": hi})

    def _recount(self, hours: str, how: str = _RECOUNT) -> None:
        """Count anew the hours (``project``, ``hour``) that the query ``hours`` returns: from the stored events
        (``_RECOUNT``) or by merging their rows (``_MERGE``)."""
        self._connection.execute(f"CREATE OR REPLACE TEMP TABLE dirty AS {hours}")
        self._connection.execute(how)

    def _catch_up(self) -> bool:
        """Bring the rollups up to date with the events stored since they last were (``_unrolled``), in one
        transaction that also empties ``rollup_behind``; whether they are. Under the write lock.

        A failure is logged (once, until a catch-up succeeds) and never reaches the caller: the events are stored,
        and the hours they fall in stay in ``rollup_behind``. The events kept in memory are dropped then (memory
        stays bounded however long it fails), and the next catch-up counts those hours anew from the stored events
        (``_roll_behind``, as when a process ended behind); panels read the raw events meanwhile."""
        if not self._unrolled and not self._failed:
            return True
        db = self._connection
        try:
            with self._transaction():
                if self._failed:
                    self._roll_behind()
                else:
                    self._roll(pa.concat_tables(self._unrolled))
                    db.execute("DELETE FROM rollup_behind")
        except Exception:  # logged; the rollups are recounted from the stored events instead
            if not self._failed:
                logger.exception("bringing the rollups up to date failed; panels read the raw events until a later "
                                 "catch-up counts the hours behind anew from the stored events")  # fmt: skip
            self._failed = True
            return False
        finally:
            self._unrolled, self._unrolled_events = [], 0
        self._failed, self._behind = False, set()
        return True

    def _roll(self, incoming: pa.Table) -> None:
        """Bring the rollups up to date with the events of ``incoming``, stored and not rolled up yet (in a
        transaction): add their counts, cut their groups' runs anew; now and then merge the rows of the hours that
        gathered many."""
        db = self._connection
        db.register("changed", incoming)
        try:
            for table, (rows, _) in _ROLLUPS.items():
                query = rows("changed")
                if table == "rollup_timings":  # its rows added to their days' too
                    db.execute(f"CREATE OR REPLACE TEMP TABLE timed AS {query}; {_ADD_DAYS}")
                    query = "FROM timed"
                added = _scalar(db.execute(f"INSERT INTO {table} BY NAME {query}"))
                self._uncounted += added if table == "rollup_people" else 0  # by far the largest
            self._recut("changed")
            self._dirty.update(db.execute("SELECT DISTINCT project, date_trunc('hour', ts) FROM changed").fetchall())
        finally:
            db.unregister("changed")
        if self._uncounted >= _RECOUNT_AFTER:
            projects, hours = zip(*self._dirty, strict=True)
            db.register("hours", pa.table({"project": pa.array(projects, pa.string()),
                                           "hour": pa.array(hours, pa.timestamp("us"))}))  # fmt: skip
            try:
                self._recount("SELECT * FROM hours", _MERGE)
            finally:
                db.unregister("hours")
            self._dirty, self._uncounted = set(), 0

    @property
    def schema_version(self) -> int:
        return _scalar(self._connection.cursor().execute("SELECT max(version) FROM schema_version"))

    def add(self, project: str, events: Sequence[Event]) -> IngestResult:
        """Group commit: the caller that takes the write lock stores every batch queued meanwhile, in one
        statement and one transaction, so concurrent requests share the cost of a commit."""
        pending = _Pending(project, events)
        if not pending.ids:
            return IngestResult(accepted=0, duplicates=0)
        with self._queued:
            self._queue.append(pending)
        with self._write:
            if pending.result is None and pending.error is None:
                with self._queued:
                    batches, self._queue = self._queue, []
                self._store(batches)
                if self._unrolled_events >= _ROLL_AFTER:
                    self._catch_up()
        if pending.error is not None:
            raise pending.error
        if pending.result is None:  # _store sets one of the two for every batch it takes
            raise RuntimeError("a batch left the write queue without a result")
        return pending.result

    def _store(self, batches: list[_Pending]) -> None:
        """Every batch in one commit; if that fails, each batch alone, so one request's bad batch can never
        fail another's that shared its commit (each waiting request gets its own outcome)."""
        try:
            self._commit(batches)
        except Exception as error:  # noqa: BLE001 - handed to the waiting requests, none is lost silently
            if len(batches) == 1:
                batches[0].error = error
                return
            for batch in batches:
                try:
                    self._commit([batch])
                except Exception as own:  # noqa: BLE001
                    batch.error = own

    def _commit(self, batches: list[_Pending]) -> None:
        db = self._connection
        with self._transaction():
            stored = self._already_stored(batches)
            seen: set[tuple[str, str]] = set()  # a retry racing its original in the same commit
            for batch in batches:
                batch.new = []
                for event_id in batch.ids:
                    key = (batch.project, event_id)
                    batch.new.append(key not in stored and key not in seen)
                    seen.add(key)
            tables = [batch.table if all(batch.new) else batch.table.filter(batch.new) for batch in batches]
            incoming = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            db.execute(_INSERT)
            behind = {(batch.project, ts - ts % _HOUR_US) for batch in batches
                      for ts, new in zip(batch.stamps, batch.new, strict=True) if new} - self._behind  # fmt: skip
            if behind:  # recorded with the events: what a process that ends before it rolls them up leaves behind
                projects, hours = zip(*behind, strict=True)
                db.execute("INSERT INTO rollup_behind SELECT unnest($projects), make_timestamp(unnest($hours))",
                           {"projects": projects, "hours": hours})  # fmt: skip
        if incoming.num_rows:
            self._behind |= behind
            self._unrolled_events += incoming.num_rows
            if not self._failed:  # else the next catch-up reads them from the table
                self._unrolled.append(incoming.select(_UNROLLED))
        for batch in batches:
            self._recent.remember(
                (k, ts) for k, ts, new in zip(batch.keys, batch.stamps, batch.new, strict=True) if new
            )
            accepted = sum(batch.new)
            batch.result = IngestResult(accepted=accepted, duplicates=batch.received - accepted)

    def _already_stored(self, batches: list[_Pending]) -> set[tuple[str, str]]:
        """The events of ``batches`` that the table holds: looked up there only for those the filter of recent ids
        cannot rule out (old events, retries)."""
        may_be_stored = self._recent.may_be_stored
        projects, ids, stamps = [], [], []
        for batch in batches:
            for event_id, key, ts in zip(batch.ids, batch.keys, batch.stamps, strict=True):
                if may_be_stored(key, ts):
                    projects.append(batch.project)
                    ids.append(event_id)
                    stamps.append(ts)
        if not ids:
            return set()
        stamps_us = pa.array(stamps, pa.timestamp("us"))
        candidates = pa.table({"project": projects, "event_id": ids, "ts": stamps_us})  # noqa: F841 - read by SQL
        return {(project, event_id) for project, event_id in self._connection.execute(_ALREADY_STORED).fetchall()}

    def panel(
        self, project: str, name: str, window: Window, slice: Slice = Slice(), **params: Any
    ) -> list[dict[str, Any]]:
        sql, anchor = store.panel_query(name, str(params.get("session") or ""), _QUERIES, _SESSION_TIMELINES)
        values = {**_DEFAULTS, **{k: v for k, v in params.items() if v is not None}}
        values |= {
            "project": project,
            "start": _naive_utc(window.start),
            "end": _naive_utc(window.end),
            "gap": self.session_timeout,
            "now": _naive_utc(datetime.now(UTC)),
            "anchor": anchor,
            "token_bytes": BYTES_PER_TOKEN,
            "token_price": self.prices.default,
            "priced_tools": list(self.prices.per_tool),
            "tool_prices": list(self.prices.per_tool.values()),
        }
        cursor = self._connection.cursor()
        try:
            if name in ("timeseries", "trends") and values["bucket"] is None and window.start <= EPOCH:
                # "All" starts in 1970: its buckets start at the project's first event instead.
                first_sql, sliced = _sliced(_FIRST_EVENT, slice)
                first = _run(cursor, first_sql, values | sliced)[0]["first"]
                values["start"] = _naive_utc(first).replace(second=0, microsecond=0) if first else values["start"]
            values["bucket"], values["origin"] = store.time_buckets(values["start"], values["end"], values["bucket"])
            rolled = self._rolled(name, window, slice, values["bucket"]) and self._rolled_snapshot(cursor)
            if rolled:
                sql = _ROLLED_PANELS[name]
                values |= {
                    "start_hour": _naive_utc(_floor_hour(window.start)),
                    "whole_start": _naive_utc(_ceil_hour(window.start)),
                    "whole_end": _naive_utc(_floor_hour(window.end)),
                    "week_whole_start": _naive_utc(_ceil_hour(window.end - timedelta(days=7))),
                }
            sql, sliced = _sliced(sql, slice)
            values |= sliced
            rows = _run(cursor, sql, values)
            if name == "slo":
                rows = self._attainment(cursor, rows, values, slice, rolled)
            return rows
        finally:
            cursor.close()  # which ends its transaction, if any

    def _rolled_snapshot(self, cursor: Any) -> bool:
        """Begin on ``cursor`` a transaction whose rollups are up to date with its events: one that finds nothing
        behind (every commit that stores events not rolled up records their hours in ``rollup_behind``, until the
        rollups catch up with them), else one begun under the write lock right after catching up; False (and no
        transaction) if catching up failed: the raw events answer."""
        cursor.execute("BEGIN TRANSACTION")
        if not _scalar(cursor.execute("SELECT count(*) FROM rollup_behind")):  # DuckDB snapshots at the first read
            return True
        cursor.execute("ROLLBACK")
        with self._write:
            if not self._catch_up():
                return False
            cursor.execute("BEGIN TRANSACTION")
            cursor.execute("SELECT count(*) FROM rollup_behind").fetchall()
            return True

    def _rolled(self, name: str, window: Window, slice: Slice, bucket: timedelta = store.HOUR) -> bool:
        """Whether the panel ``name`` reads the rollups: those it has, unsliced, over an hour or more (``slo``, whose
        edges' events are the whole of a shorter window, over any; ``trends`` in ``bucket`` of whole hours)."""
        long = window.end - window.start >= store.HOUR or name == "slo"
        hours = name != "trends" or not bucket % store.HOUR
        return self.rollups and name in _ROLLED_PANELS and not slice and long and hours

    def _attainment(
        self, cursor: Any, baselines: list[dict[str, Any]], values: dict[str, Any], slice: Slice, rolled: bool
    ) -> list[dict[str, Any]]:
        """The ``slo`` panel (``store.attainment``) from ``baselines``, the window's calls read by ``_SLO_WINDOW``
        (``rolled``: from the rollups)."""
        sql, _ = _sliced(_ROLLED_SLO_WINDOW if rolled else _SLO_WINDOW, slice)

        def calls(tools: list[str], targets: list[float]) -> list[dict[str, Any]]:
            return _run(cursor, sql, values | {"slo_tools": tools, "slo_targets": targets})

        return store.attainment(self.slos, baselines, calls, values["limit"])

    # ---------------------------------------------------------------- alerts (``alerts.Engine``)

    def deviations(self, project: str, now: datetime, rules: Rules) -> list[Alert]:
        """What the rules find in ``project`` at ``now``: one ``Alert`` per rule and subject."""
        values = {"project": project, "now": _naive_utc(now), **asdict(rules)}
        values |= {"usual_whole_start": _naive_utc(_ceil_hour(now - timedelta(hours=24, minutes=15))),
                   "usual_whole_end": _naive_utc(_floor_hour(now - timedelta(minutes=15))),
                   "now_hour": _naive_utc(_floor_hour(now))}  # fmt: skip
        found = []
        cursor = self._connection.cursor()
        try:
            rules_sql = _ROLLED_DEVIATIONS if self.rollups and self._rolled_snapshot(cursor) else _DEVIATIONS
            for rule, (sql, window, text) in rules_sql.items():
                alerts = store.rule_alerts(rules, rule, window, text, _run(cursor, sql, values))
                found += sorted(alerts, key=lambda alert: alert.subject)  # in one order, as ClickHouse's
        finally:
            cursor.close()
        return found + self._slo_burn(project, now, rules)

    def _slo_burn(self, project: str, now: datetime, rules: Rules) -> list[Alert]:
        """Tools spending their latency error budget ``rules.slo_burn`` times too fast (``store.slo_burn``)."""
        hour, recent = (self.panel(project, "slo", window, limit=1_000_000) for window in store.burn_windows(now))
        return store.slo_burn(hour, recent, rules)

    def record_alerts(self, project: str, found: Sequence[Alert], now: datetime) -> None:
        """Start an episode for each new rule and subject, refresh the firing ones, resolve those not found."""
        stamp = _naive_utc(now)
        with self._write:
            db = self._connection
            with self._transaction():
                firing = {
                    (rule, subject): alert_id
                    for alert_id, rule, subject in db.execute(
                        "SELECT id, rule, subject FROM alerts WHERE project = ? AND state = 'firing'", [project]
                    ).fetchall()
                }
                found_again, resolved = store.episodes(firing, found)
                for alert, known in found_again:
                    if known is None:
                        db.execute(
                            """INSERT INTO alerts (project, rule, subject, state, since, observed, threshold, "window", text)
                            VALUES (?, ?, ?, 'firing', ?, ?, ?, ?, ?)""",
                            [
                                project,
                                alert.rule,
                                alert.subject,
                                stamp,
                                alert.observed,
                                alert.threshold,
                                alert.window,
                                alert.text,
                            ],
                        )
                    else:
                        db.execute("UPDATE alerts SET observed = ?, threshold = ?, text = ? WHERE id = ?",
                                   [alert.observed, alert.threshold, alert.text, known])  # fmt: skip
                for alert_id in resolved:
                    db.execute("UPDATE alerts SET state = 'resolved', resolved_at = ? WHERE id = ?", [stamp, alert_id])

    def undelivered(self, webhooks: Sequence[str], not_before: datetime = EPOCH) -> list[tuple[int, Transition, str]]:
        """Transitions some webhook has not received: since ``not_before`` (a webhook added later is not sent the
        past), or tried before and failed fewer than ``MAX_DELIVERY_ATTEMPTS`` times."""
        rows = _run(self._connection.cursor(), _UNDELIVERED, {
            "urls": list(webhooks), "attempts": MAX_DELIVERY_ATTEMPTS, "not_before": _naive_utc(not_before)})  # fmt: skip
        return store.transitions(rows)

    def delivered(self, alert_id: int, state: str, url: str, ok: bool) -> None:
        with self._write:
            self._connection.execute(
                """INSERT INTO alert_deliveries VALUES (?, ?, ?, ?, 1) ON CONFLICT (alert_id, state, url)
                DO UPDATE SET delivered = excluded.delivered, attempts = alert_deliveries.attempts + 1""",
                [alert_id, state, url, ok],
            )

    def alerts(self, project: str, state: str = "all", limit: int = 1000) -> list[dict[str, Any]]:
        """The project's alerts, newest first: ``firing``, ``resolved`` or ``all``."""
        return _run(self._connection.cursor(), """
            SELECT rule, subject, state, since, resolved_at, observed, threshold, "window", text FROM alerts
            WHERE project = $project AND ($state = 'all' OR state = $state) ORDER BY since DESC, id DESC LIMIT $limit""",
            {"project": project, "state": state, "limit": limit})  # fmt: skip

    def delete(self, project: str | None, *, before: datetime | None = None, user_id: str | None = None) -> int:
        where, values = store.deletion(("project = $project", project),
                                       ("ts < $before", before and _naive_utc(before)),
                                       ("user_id = $user", user_id))  # fmt: skip
        with self._write:  # between group commits
            self._catch_up()  # the rollups then hold what is deleted, and lose it with the events
            db = self._connection
            with self._transaction():
                db.execute(f"""CREATE OR REPLACE TEMP TABLE doomed AS
                    SELECT project, ts, kind, session_id, user_id, caller_id, client_name FROM events WHERE {where}""",
                           values)  # fmt: skip
                deleted = _scalar(db.execute(f"DELETE FROM events WHERE {where}", values))
                self._recount("SELECT DISTINCT project, date_trunc('hour', ts) AS hour FROM doomed")
                self._recut("doomed")
            return deleted

    def check(self) -> None:
        """The file is in this process: it answers as long as the store is open (a closed one raises)."""
        self._connection.cursor().execute("SELECT 1")

    def projects(self) -> list[str]:
        """The projects with events in this store."""
        return [
            row[0]
            for row in self._connection.cursor().execute("SELECT DISTINCT project FROM events ORDER BY 1").fetchall()
        ]

    def close(self) -> None:
        with self._write:
            self._catch_up()
            self._connection.close()

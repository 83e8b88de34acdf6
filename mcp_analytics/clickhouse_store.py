"""The store for fleets: one ClickHouse database that any number of API instances share.

The SQL is ClickHouse's own, written for what both ClickHouse 18.16 (Debian's package) and current releases
run: no table CTEs (18.16 has only ``WITH expr AS name``), no window functions (session runs are cut with
arrays: ``groupArray``, ``arraySort``, ``arrayCumSum``), no ``DateTime64`` (times are ``Int64`` microseconds,
``ts_us``, beside a ``DateTime`` ``at`` for partitions and the sorting key).

Idempotency lives in the engine, not in the API process: ``events`` is a ``ReplacingMergeTree`` whose sorting
key ends with the event id (an event's id fixes its timestamp, hence its partition and key), and every read
says ``FINAL``, so a batch stored twice (a retry, two API instances racing, a crash between insert and answer)
is read once even before background merges have collapsed the copies. The recent-ids filter and a look-up
of the batch's ids only keep the copies rare and the ``duplicates`` count of an answer right in the usual case.

Alert state lives in ClickHouse too (``alerts`` and ``alert_deliveries``, ``ReplacingMergeTree`` keyed by
episode, a newer version of a row replacing the older), so a second instance sees the episodes of the first.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import random
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from clickhouse_driver import Client
from clickhouse_driver import errors as driver_errors

from mcp_analytics import store
from mcp_analytics.alerts import MAX_DELIVERY_ATTEMPTS, Alert, Rules, Transition
from mcp_analytics.duckdb_store import REQUEST_TYPES, SchemaTooNew
from mcp_analytics.event_columns import to_arrow
from mcp_analytics.models import Event, IngestResult
from mcp_analytics.recent_ids import DEFAULT_CAPACITY, RecentIds
from mcp_analytics.store import BYTES_PER_TOKEN, EPOCH, SESSION_GAP, Prices, Slice, Slos, StoreUnavailable, Window

ENV_USER = "MCP_ANALYTICS_CLICKHOUSE_USER"
ENV_PASSWORD = "MCP_ANALYTICS_CLICKHOUSE_PASSWORD"  # noqa: S105 - the variable's name, not a password
DEFAULT_PORT = 9000
"""ClickHouse's native protocol port."""
CHECK_TIMEOUT = 3.0
"""Seconds ``check`` (the API's ``/readyz``) waits for the server to connect and answer."""
LOOKUP_IDS = 1000
"""Event ids looked up per query when a batch may hold stored events (ids are at most 128 characters)."""

_COLUMNS = (
    ("event_id", "String"), ("ts_us", "Int64"), ("type", "String"), ("kind", "String"),
    ("resource", "Nullable(String)"), ("session_id", "Nullable(String)"), ("stateless", "UInt8"),
    ("duration_ms", "Float64"), ("upstream_ms", "Nullable(Float64)"), ("intent", "Nullable(String)"),
    ("user_id", "Nullable(String)"), ("user_name", "Nullable(String)"), ("client_name", "Nullable(String)"),
    ("client_version", "Nullable(String)"), ("server_name", "Nullable(String)"), ("server_version", "Nullable(String)"),
    ("protocol_version", "Nullable(String)"), ("transport", "Nullable(String)"), ("is_error", "UInt8"),
    ("error_type", "Nullable(String)"), ("error_message", "Nullable(String)"), ("error_code", "Nullable(Int32)"),
    ("failure_origin", "Nullable(String)"), ("failure_reason", "Nullable(String)"), ("argument_keys", "Array(String)"),
    ("response_size", "Nullable(Int64)"), ("trace_id", "Nullable(String)"), ("span_id", "Nullable(String)"),
    ("content", "Nullable(String)"), ("custom", "Nullable(String)"), ("tools_listed", "Array(String)"),
    ("caller_id", "Nullable(String)"), ("user_data", "Nullable(String)"), ("destructive_tools", "Array(String)"),
    ("prompts_listed", "Array(String)"),
)  # fmt: skip
"""The stored columns of an event after ``project``, as ``event_columns.to_arrow`` names them (``ts_us`` for
``ts``); lists are never null here (an absent list is empty, which every query reads the same way)."""
_LISTS = {"argument_keys", "tools_listed", "destructive_tools", "prompts_listed"}
_KEYS = ("resource", "client_name", "user_id", "server_name", "failure_origin")
"""The nullable dimensions of version 2's ``rollup_counts`` (besides ``type`` and ``grouped``). A sorting key
cannot hold a nullable column: it holds each as its value and whether it is null."""

MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            f"""CREATE TABLE IF NOT EXISTS events (
                project String,
                {", ".join(f"{name} {kind}" for name, kind in _COLUMNS)},
                at DateTime('UTC') DEFAULT toDateTime(intDiv(ts_us, 1000000), 'UTC')
            ) ENGINE = ReplacingMergeTree
            PARTITION BY toYYYYMMDD(at)
            ORDER BY (project, toStartOfHour(at), type, ts_us, event_id)""",
            """CREATE TABLE IF NOT EXISTS alerts (
                id UInt64, project String, rule String, subject String, state String, since Int64,
                resolved_at Nullable(Int64), observed Float64, threshold Float64, window_text String, text String,
                version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (project, id)""",
            """CREATE TABLE IF NOT EXISTS alert_deliveries (
                alert_id UInt64, state String, url String, delivered UInt8, attempts UInt32, version UInt64
            ) ENGINE = ReplacingMergeTree(version) ORDER BY (alert_id, state, url)""",
        ],
    ),
    (
        2,
        [
            f"""CREATE TABLE IF NOT EXISTS rollup_counts (
                project String, hour DateTime('UTC'), type String, {", ".join(f"{key} Nullable(String)" for key in _KEYS)},
                grouped UInt8, events UInt64, failures UInt64, first_ts Int64, last_ts Int64,
                user_name Nullable(String), version DateTime('UTC')
            ) ENGINE = ReplacingMergeTree(version)
            PARTITION BY toYYYYMMDD(hour)
            ORDER BY (project, hour, type, {", ".join(f"ifNull({key}, ''), isNull({key})" for key in _KEYS)}, grouped)""",
            """CREATE TABLE IF NOT EXISTS rollup_dirty (project String, hour DateTime('UTC'),
                marked DateTime('UTC') DEFAULT now()
            ) ENGINE = ReplacingMergeTree(marked) PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour)""",
            """CREATE TABLE IF NOT EXISTS rollup_rolled (project String, hour DateTime('UTC'), began DateTime('UTC'))
            ENGINE = ReplacingMergeTree(began) PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour)""",
            "INSERT INTO rollup_dirty (project, hour) SELECT DISTINCT project, toStartOfHour(at) FROM events",
        ],
    ),
    (
        3,
        [
            """CREATE TABLE IF NOT EXISTS rollup_single (project String, hour DateTime('UTC'), began DateTime('UTC'))
            ENGINE = ReplacingMergeTree(began) PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour)""",
            "INSERT INTO rollup_dirty (project, hour) SELECT DISTINCT project, toStartOfHour(at) FROM events",
        ],
    ),
    (
        4,
        [
            """CREATE TABLE IF NOT EXISTS rollup_people (
                project String, hour DateTime('UTC'), client_name Nullable(String), user_id Nullable(String),
                grouped UInt8, events UInt64, failures UInt64, tool_calls UInt64, last_ts Int64,
                user_name Nullable(String), roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            """CREATE TABLE IF NOT EXISTS rollup_rolls (project String, hour DateTime('UTC'), roll UInt64)
            ENGINE = ReplacingMergeTree(roll) PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour)""",
            "DROP TABLE IF EXISTS rollup_counts",
            "DROP TABLE IF EXISTS rollup_rolled",
            "INSERT INTO rollup_dirty (project, hour) SELECT DISTINCT project, toStartOfHour(at) FROM events",
        ],
    ),
    (
        5,
        [
            """CREATE TABLE IF NOT EXISTS rollup_runs (
                project String, hour DateTime('UTC'), grp UInt64, first_ts Int64, last_ts Int64,
                user_id Nullable(String), client_name Nullable(String), roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            "DROP TABLE IF EXISTS rollup_rolls",
            """CREATE TABLE IF NOT EXISTS rollup_rolls (project String, hour DateTime('UTC'), roll UInt64, gap UInt64)
            ENGINE = ReplacingMergeTree(roll) PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour)""",
            "INSERT INTO rollup_dirty (project, hour) SELECT DISTINCT project, toStartOfHour(at) FROM events",
        ],
    ),
    (
        6,
        [
            """CREATE TABLE IF NOT EXISTS rollup_timings (
                project String, hour DateTime('UTC'), view String, resource Nullable(String),
                server_name Nullable(String), measure String, key Int64, n UInt64, ms Float64, lo_ms Float64,
                hi_ms Float64, roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            """CREATE TABLE IF NOT EXISTS rollup_timings_days (
                project String, day DateTime('UTC'), view String, resource Nullable(String),
                server_name Nullable(String), measure String, key Int64, n UInt64, ms Float64, lo_ms Float64,
                hi_ms Float64, compaction UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(day) ORDER BY (project, day, compaction)""",
            """CREATE TABLE IF NOT EXISTS rollup_days (project String, day DateTime('UTC'), rolls UInt64,
                compaction UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(day) ORDER BY (project, day)""",
            """CREATE TABLE IF NOT EXISTS rollup_calls (
                project String, hour DateTime('UTC'), tool String, user_id Nullable(String), events UInt64,
                failures UInt64, last_ts Int64, roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            """CREATE TABLE IF NOT EXISTS rollup_types (
                project String, hour DateTime('UTC'), type String, failure_origin Nullable(String), events UInt64,
                failures UInt64, roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            "DROP TABLE IF EXISTS rollup_rolls",
            """CREATE TABLE IF NOT EXISTS rollup_rolls (project String, hour DateTime('UTC'), roll UInt64, gap UInt64,
                schema UInt16
            ) ENGINE = ReplacingMergeTree(roll) PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour)""",
            "DROP TABLE IF EXISTS rollup_people",
            """CREATE TABLE IF NOT EXISTS rollup_people (
                project String, hour DateTime('UTC'), client_name Nullable(String), user_id Nullable(String),
                grouped UInt8, server_name Nullable(String), server_version Nullable(String), events UInt64,
                failures UInt64, tool_calls UInt64, last_ts Int64, user_name Nullable(String), roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            "INSERT INTO rollup_dirty (project, hour) SELECT DISTINCT project, toStartOfHour(at) FROM events",
        ],
    ),
    (
        7,
        [
            """CREATE TABLE IF NOT EXISTS rollup_uses (
                project String, hour DateTime('UTC'), type String, resource Nullable(String), keys String,
                user_id Nullable(String), n UInt64, failed UInt64, last_ts Int64, bytes UInt64, sized UInt64,
                ms Float64, roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            "DROP TABLE IF EXISTS rollup_calls",
            "INSERT INTO rollup_dirty (project, hour) SELECT DISTINCT project, toStartOfHour(at) FROM events",
        ],
    ),
    (
        8,
        [
            """CREATE TABLE IF NOT EXISTS rollup_outcomes (
                project String, hour DateTime('UTC'), type String, failure_origin Nullable(String),
                reason Nullable(String), error_code Nullable(Int32), events UInt64, failures UInt64, last_failed Int64,
                example_ts Int64, example_id String, message Nullable(String), roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            """CREATE TABLE IF NOT EXISTS rollup_listings (
                project String, hour DateTime('UTC'), type String, names Array(String), last_ts Int64, roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            """CREATE TABLE IF NOT EXISTS rollup_clients (
                project String, hour DateTime('UTC'), client_name Nullable(String), client_version Nullable(String),
                user_id Nullable(String), n UInt64, failed UInt64, first_ts Int64, roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            "DROP TABLE IF EXISTS rollup_types",
            "INSERT INTO rollup_dirty (project, hour) SELECT DISTINCT project, toStartOfHour(at) FROM events",
        ],
    ),
    (
        9,
        [
            f"""CREATE TABLE IF NOT EXISTS rollup_failed (
                project String, hour DateTime('UTC'), {", ".join(f"{name} {kind}" for name, kind in _COLUMNS)},
                at DateTime('UTC'), roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll, type, ts_us)""",
            "INSERT INTO rollup_dirty (project, hour) SELECT DISTINCT project, toStartOfHour(at) FROM events",
        ],
    ),
    (
        10,
        [
            "DROP TABLE IF EXISTS rollup_runs",
            """CREATE TABLE IF NOT EXISTS rollup_runs (
                project String, hour DateTime('UTC'), grp UInt64, first_ts Int64, last_ts Int64,
                user_id Nullable(String), client_name Nullable(String), lone UInt8 DEFAULT 0, new_run UInt8 DEFAULT 0,
                new_client UInt8 DEFAULT 0, new_user UInt8 DEFAULT 0, roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            "INSERT INTO rollup_dirty (project, hour) SELECT DISTINCT project, toStartOfHour(at) FROM events",
        ],
    ),
    (
        11,
        [
            """CREATE TABLE IF NOT EXISTS rollup_quarters (
                project String, hour DateTime('UTC'), quarter UInt8, failure_origin Nullable(String), failed UInt8,
                measure String, key Int64, n UInt64, ms Float64, lo_ms Float64, hi_ms Float64, roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, hour, roll)""",
            "INSERT INTO rollup_dirty (project, hour) SELECT DISTINCT project, toStartOfHour(at) FROM events",
        ],
    ),
    (
        12,
        [
            "DROP TABLE IF EXISTS rollup_timings",
            """CREATE TABLE IF NOT EXISTS rollup_timings (
                project String, hour DateTime('UTC'), view String, resource Nullable(String),
                server_name Nullable(String), measure String, key Int64, n UInt64, ms Float64, lo_ms Float64,
                hi_ms Float64, roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour) ORDER BY (project, view, measure, hour, roll)""",
            "DROP TABLE IF EXISTS rollup_timings_days",
            """CREATE TABLE IF NOT EXISTS rollup_timings_days (
                project String, day DateTime('UTC'), view String, resource Nullable(String),
                server_name Nullable(String), measure String, key Int64, n UInt64, ms Float64, lo_ms Float64,
                hi_ms Float64, compaction UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(day) ORDER BY (project, view, measure, day, compaction)""",
            "DROP TABLE IF EXISTS rollup_days",
            """CREATE TABLE IF NOT EXISTS rollup_days (project String, day DateTime('UTC'), rolls UInt64,
                compaction UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(day) ORDER BY (project, day)""",
            "DROP TABLE IF EXISTS rollup_failed",
            f"""CREATE TABLE IF NOT EXISTS rollup_failed (
                project String, hour DateTime('UTC'), {", ".join(f"{name} {kind}" for name, kind in _COLUMNS)},
                at DateTime('UTC'), roll UInt64
            ) ENGINE = MergeTree PARTITION BY toYYYYMMDD(hour)
            ORDER BY (project, ifNull(failure_origin, ''), ifNull(client_name, '(unknown)'), hour, roll, type, ts_us)
            SETTINGS index_granularity = 1024""",
            "INSERT INTO rollup_dirty (project, hour) SELECT DISTINCT project, toStartOfHour(at) FROM events",
        ],
    ),
]
"""Each version's statements, idempotent (``IF NOT EXISTS``), so that two instances migrating at once, or one
stopped half way, leave the same schema. Events are partitioned by day (retention drops whole days' parts) and
sorted by project, hour, type, time and id: every panel reads one project's time range, most of them one type.
Version 2 adds the hourly rollups (``rollup_counts``) and their bookkeeping (``rollup_dirty``, ``rollup_rolled``;
see "rollups" below); the hours stored before it are marked dirty, so they are read raw until rolled. Version 3
records the hours a roll found without a second copy of any event (``rollup_single``), which are read without
``FINAL``, and marks every hour dirty again, so that the next roll checks them. Version 4 replaces ``rollup_counts``
(read ``FINAL``, nearly a row per event) by ``rollup_people`` (per client, user and whether grouped, as DuckDB's
without its server) read without ``FINAL`` (each row names the roll that wrote it, ``rollup_rolls`` the rolls that
completed), and marks every hour dirty, so that the next roll fills it. Version 5 adds ``rollup_runs`` (each hour's
pieces of the sessions' runs) and records with each roll the session timeout it cut them by (``rollup_rolls.gap``:
the table is made anew, so every hour is rolled again). Version 6 adds ``rollup_timings`` (each hour's histograms
of the requests' timings: of all, per tool and per server; summed per day once every hour of a day is clean,
``rollup_timings_days``, recorded in ``rollup_days``), ``rollup_calls`` (each hour's tool calls per tool and
user) and ``rollup_types`` (each hour's events per method and failure origin), makes ``rollup_rolls`` anew with
the schema of the instance that rolled (an earlier release's roll, which would leave these empty, fails to record
itself) and ``rollup_people`` anew with each row's server and its version, and marks every hour dirty, so that the
next roll fills them. Version 7 replaces ``rollup_calls`` by ``rollup_uses`` (each hour's tool calls and prompt
gets per name, argument keys and user, with their response bytes and time: ``tools``, ``cost``, ``arguments``,
``prompts``; an earlier release's roll, which writes ``rollup_calls``, fails) and marks every hour dirty. Version 8
replaces ``rollup_types`` by ``rollup_outcomes`` (each hour's events per method and failure origin, reason and code,
with the failures' newest message: ``failures``, ``errors`` beside ``trends``, ``timeseries`` and ``methods``; an
earlier release's roll, which writes ``rollup_types``, fails), adds ``rollup_listings`` (each hour's distinct lists
of tools and of prompts listed, when each was last listed: ``unused_tools``, ``unused_prompts``) and
``rollup_clients`` (each hour's events per client, client version and user, with the first: ``new_clients``), and
marks every hour dirty. Version 9 adds ``rollup_failed`` (each hour's events with a failure origin, copied whole: a
slice by origin reads its clean hours there, as many rows as failures (4.4% of the benchmark's events), not from
``events``) and marks every hour dirty; a roll recorded by an earlier release (``rollup_rolls.schema`` below ``ROLLS_SINCE``), which writes no
copies, leaves its hours dirty. Version 10 makes ``rollup_runs`` anew with, per piece, whether it is a whole run
(``lone``: no event of its group within the session timeout of it outside its hour) and, per row, whether it is its
piece's first, its client's first in the piece and its user's (``new_run``, ``new_client``, ``new_user``), so that
``summary``, ``clients`` and ``users`` count the whole runs without sorting them (an earlier release's roll writes
no piece as whole, the defaults, which is read as it was), and marks every hour dirty. Version 11 adds
``rollup_quarters`` (each quarter hour's requests' timings per failure origin and whether failed: ``trends`` in
buckets of 15 and 30 minutes), keeps in ``rollup_listings`` the tools that ``tools/list`` said were destructive
(``destructive_new_client``), and marks every hour dirty; an earlier release's roll, which writes neither, leaves its
hours dirty. Version 12 makes ``rollup_timings`` and ``rollup_timings_days`` anew sorted by view and measure before
the time (a read of one view, ``trends``' all requests or the tool calls' durations of ``slo`` and the alert rules,
read every view's rows of its hours: 3M rows for ``trends`` over 7 days of 10M events), ``rollup_days`` anew (no
compaction is left to read), and ``rollup_failed`` anew sorted by failure origin and client before the time, in
granules of 1,024 rows (a day of the benchmark's failures is 55k rows: a slice by origin and client read every
failure of its hours, now about 2/5 of them for the commonest client), and marks every hour dirty."""
SCHEMA_VERSION = MIGRATIONS[-1][0]
ROLLS_SINCE = 11
"""The oldest schema whose rolls write every rollup this release reads: an hour whose last recorded roll is older is
dirty (read raw, and rolled anew)."""
_UNREACHABLE = (OSError, EOFError, driver_errors.NetworkError, driver_errors.SocketTimeoutError)
"""What the driver raises when the server cannot be reached: a failed connection (its ``NetworkError`` and
``SocketTimeoutError``), a socket's own ``OSError``, the ``EOFError`` of its reader (the server gone in the middle
of an answer). Raised as ``StoreUnavailable``; a ``ServerException`` (the server refused a statement) is not."""

_SETTINGS = {"join_use_nulls": 1, "max_query_size": 16 << 20}
"""A row missing from the other side of an outer join reads as NULL, as in SQL (and DuckDB), not as a default; a
query's text may be long (a rolled-up panel names the clean hours of its window and the roll that counted each)."""

# ---------------------------------------------------------------------------------------------------- SQL parts

_SERVED = "project = %(project)s AND kind != 'client'"
_IN_WINDOW = (
    f"{_SERVED} AND ts_us >= %(start)s AND ts_us < %(end)s"
    " AND at >= toDateTime(%(start_s)s) AND at <= toDateTime(%(end_s)s)"
)
"""Panels describe the server side (client spans are not counted twice); ``at`` lets the engine skip partitions."""
_CALLED = "type = 'mcp:tools/call' AND resource IS NOT NULL"
"""A tool call (of a named tool)."""
_NONE = "CAST(NULL AS Nullable(String))"
_ALL_AND_EACH_TOOL = f"arrayJoin(if({_CALLED}, [{_NONE}, resource], [{_NONE}])) AS resource"
"""A request as the rows of ``rollup_timings``' views ``all`` and, a tool call, ``tool`` hold it (``resource`` null
in ``all``): the view ``all+tool`` of ``_rolled_timings``, read once (``latency``)."""
_TOOL_CALLS = f"{_IN_WINDOW} AND {_CALLED}"
_REQUESTS = f"type IN {REQUEST_TYPES}"
_FAMILY = f"""multiIf(startsWith(type, 'custom:'), 'custom', ifNull(failure_origin, '') = 'auth', 'auth',
    {_REQUESTS}, 'requests', 'capabilities')"""
_GROUPED = "(session_id IS NOT NULL OR user_id IS NOT NULL OR caller_id IS NOT NULL)"
_SESSION_GROUP = "cityHash64('s', ifNull(session_id, ''))"
"""The group of an event with a session id (``_GROUP``'s first case)."""
_GROUP = f"""multiIf(session_id IS NOT NULL, {_SESSION_GROUP},
    user_id IS NOT NULL, cityHash64('u', ifNull(user_id, ''), ifNull(client_name, ''), isNull(client_name)),
    caller_id IS NOT NULL, cityHash64('c', ifNull(caller_id, ''), ifNull(client_name, ''), isNull(client_name)),
    cityHash64('e', event_id))"""
"""Which sessions an event belongs to: its session id; else (stateless) its identified user and client; else its
caller and client; else (``e``) a session of its own. Each group is cut into runs wherever more than ``gap`` (the
session inactivity timeout) passes without an event."""
_TAG = "multiIf(session_id IS NOT NULL, 's', user_id IS NOT NULL, 'u', caller_id IS NOT NULL, 'c', 'e')"


def _clean_hours(prefix: str = "") -> str:
    """A rollup's rows of the window's clean whole hours (``clean_hours``, each with the roll that made it clean,
    ``clean_rolls``; the values' names after ``prefix``)."""
    return f"""hour >= toDateTime(%({prefix}whole_start_s)s) AND hour < toDateTime(%({prefix}whole_end_s)s)
    AND roll = transform(toUInt32(hour), %({prefix}clean_hours)s, %({prefix}clean_rolls)s, toUInt64(0))"""


def _not_clean(dirty: str, prefix: str = "") -> str:
    """The events of the partial hours at the window's edges and of its dirty hours (``dirty``: ``OR`` their ranges of
    ``at``; the values' names after ``prefix``): ``{edges}``, which a rolled-up panel reads beside the rollups (inside
    ``_events``' subquery, which 18.16 would otherwise read whole)."""
    return f"(at < toDateTime(%({prefix}whole_start_s)s) OR at >= toDateTime(%({prefix}whole_end_s)s){dirty})"


def _runs_of(sorted_array: str, first: str = "tupleElement(x, 1)", last: str | None = None) -> str:
    """The run number of each element ``x`` of ``sorted_array`` (sorted by its ``first`` instant, ``ts_us``: by default
    ``x`` is a tuple that begins with it; a piece of a run, ``rollup_runs``' row, also has a ``last``): a new run
    starts where more than ``gap`` passed since the previous element ended. Events at the same instant are always in
    one run. (From neighbours' differences: a lambda that read the array itself would capture it, which ClickHouse does
    by copying it once per element.)"""
    if last is None:
        gaps = f"arrayDifference(arrayMap(x -> {first}, {sorted_array}))"
    else:
        ends = f"arrayPushFront(arrayPopBack(arrayMap(x -> {last}, {sorted_array})), toInt64(0))"
        gaps = f"arrayMap((f, l) -> f - l, arrayMap(x -> {first}, {sorted_array}), {ends})"
    return f"arrayCumSum(arrayMap((d, i) -> i = 1 OR d > %(gap)s, {gaps}, arrayEnumerate({sorted_array})))"


def _pieces(source: str, where: str = "1") -> str:
    """The grouped events of ``source`` since ``gap`` before the window (that match ``where``), each as a piece of a
    run (its first and last instant)."""
    return f"""SELECT {_GROUP} AS grp, ts_us AS first_ts, ts_us AS last_ts, user_id, client_name FROM {source}
        WHERE {_SERVED} AND ts_us >= %(start)s - %(gap)s AND ts_us < %(end)s AND {_GROUPED} AND {where}"""


_PIECES = _pieces("{events}")


def _by_group(pieces: str, element: str) -> str:
    """Each group of the pieces of runs ``pieces`` with its ``element`` of each piece, sorted, as ``s``."""
    return f"SELECT grp, arraySort(groupArray({element})) AS s FROM ({pieces}) GROUP BY grp"


def _runs(pieces: str, points: bool = True, by: str | None = None) -> str:
    """The runs with an event since ``start`` of the pieces of runs ``pieces`` (``grp``, ``first_ts``, ``last_ts``,
    ``user_id``, ``client_name``: ``_PIECES``, the events; or with ``points=False`` also pieces of several events,
    ``_JOINED_PIECES``): how many (``by`` None), else one row per run and value of ``by`` (``user_id`` or
    ``client_name``) seen in it: ``grp``, ``run``, ``by``. Runs are cut from the events since ``gap`` before the window,
    which cuts the window's events exactly as the whole history would; each group's distinct runs (and values) are
    found within its arrays, not by a ``DISTINCT`` of them all."""
    runs = _runs_of("s") if points else _runs_of("s", last="tupleElement(x, 2)")
    element = "(first_ts, last_ts)" if by is None else f"(first_ts, last_ts, {by})"
    item = runs if by is None else f"arrayMap((x, r) -> (r, tupleElement(x, 3)), s, {runs})"
    kept = f"arrayDistinct(arrayFilter((r, x) -> tupleElement(x, 1) >= %(start)s, {item}, s))"
    grouped = _by_group(pieces, element)
    if by is None:
        return f"SELECT sum(length({kept})) FROM ({grouped})"
    return f"""SELECT grp, tupleElement(e, 1) AS run, tupleElement(e, 2) AS {by}
        FROM (SELECT grp, arrayJoin({kept}) AS e FROM ({grouped}))"""


def _bucket(ms: str) -> str:
    """The histogram bucket (``store.BUCKET_GROWTH``) of the value ``ms`` (the DuckDB store's ``_bucket``)."""
    per_log = repr(1 / math.log(store.BUCKET_GROWTH))
    least = store.LEAST_MS
    sign = f"multiIf(({ms}) >= {least}, 1, ({ms}) <= -{least}, -1, 0)"
    return f"{sign} * (toInt64(floor(log(greatest(abs({ms}), {least}) / {least}) * {per_log})) + 1)"


def _middle(key: str) -> str:
    """The middle of bucket ``key``."""
    middle = repr(store.LEAST_MS * (1 + store.BUCKET_GROWTH) / 2)
    growth = store.BUCKET_GROWTH
    return (
        f"multiIf({key} > 0, {middle} * pow({growth}, {key} - 1), {key} < 0, -{middle} * pow({growth}, -{key} - 1), 0.)"
    )


def _round(expr: str, digits: int) -> str:
    """Rounded half away from zero, as DuckDB rounds (ClickHouse's ``round`` rounds floats half to even); for the
    non-negative figures the panels round."""
    return f"(floor(({expr}) * 1e{digits} + 0.5) / 1e{digits})"


_MEASURES = {"d": "duration_ms", "o": "duration_ms - ifNull(upstream_ms, 0)", "u": "ifNull(upstream_ms, 0)"}
"""The timings of a request kept as histograms (the DuckDB store's ``_MEASURES``): its duration, the server's own
part of it and the upstream part."""


def _timed(events: str, where: str, by: str = "", measures: str = "d") -> str:
    """The histograms of the requests of ``events`` that match ``where``, per value of ``by`` (a column, or an
    expression ``AS`` a name; none: all) and measure of ``measures`` (keys of ``_MEASURES``): rows of ``by``'s column,
    ``measure``, ``key`` (the bucket), ``n``, ``ms`` (the sum), ``lo_ms`` and ``hi_ms`` (the least and greatest
    value), as the DuckDB store's ``_timed``. The events are read once, each as a row per measure."""
    value = "tupleElement(m, 2)"
    pairs = ", ".join(f"('{name}', {_MEASURES[name]})" for name in measures)
    name = f"{by.rsplit(' AS ', 1)[-1]}, " if by else ""
    return f"""
        SELECT {name}tupleElement(m, 1) AS measure, {_bucket(value)} AS key, count() AS n,
            sum({value}) AS ms, min({value}) AS lo_ms, max({value}) AS hi_ms
        FROM (SELECT {by + ", " if by else ""}arrayJoin([{pairs}]) AS m FROM {events} WHERE {where} AND {_REQUESTS})
        GROUP BY {name}measure, key"""


def _histograms(timings: str, by: str = "", measures: str = "d", extra: str = "") -> str:
    """``timings`` (``_timed``'s rows) as one row per value of ``by`` (a column; none: one row) with, for each
    measure ``m`` of ``measures``, ``h_m`` (its buckets' ``(key, n, lo_ms, hi_ms)``, sorted), ``c_m`` (the counts up
    to each), ``v_m`` (the value each bucket's values are read as: its middle within its least and greatest), ``n_m``
    and ``ms_m`` (count and sum), and the aggregates of ``extra`` (over rows per bucket: ``measure``, ``key``,
    ``bucket_n``), which ``_percentile`` reads (the DuckDB store's ``_histograms``)."""
    keyed = f"{by}, measure, key" if by else "measure, key"
    columns = [
        part
        for m in measures
        for part in (
            f"arraySort(groupArrayIf((key, bucket_n, bucket_lo, bucket_hi), measure = '{m}')) AS h_{m}",
            f"arrayCumSum(arrayMap(x -> tupleElement(x, 2), h_{m})) AS c_{m}",
            f"""arrayMap(x -> least(greatest({_middle("tupleElement(x, 1)")}, tupleElement(x, 3)), tupleElement(x, 4)),
                h_{m}) AS v_{m}""",
            f"sumIf(bucket_n, measure = '{m}') AS n_{m}",
            f"sumIf(bucket_ms, measure = '{m}') AS ms_{m}",
        )
    ]
    return f"""(
        SELECT {by + ", " if by else ""}{", ".join(columns)}{", " + extra if extra else ""}
        FROM (
            SELECT {keyed}, sum(n) AS bucket_n, sum(ms) AS bucket_ms, min(lo_ms) AS bucket_lo, max(hi_ms) AS bucket_hi
            FROM ({timings}) GROUP BY {keyed}
        ){" GROUP BY " + by if by else ""})"""


def _percentile(measure: str, level: float) -> str:
    """The ``level`` quantile of ``measure`` in a row of ``_histograms``: interpolated as ``quantile_cont`` between
    the values at the ranks around it, each read as its bucket's middle within the bucket's least and greatest value
    (the DuckDB store's ``_percentile``); NaN where there is none (read as null)."""
    v, c, n = f"v_{measure}", f"c_{measure}", f"toInt64(n_{measure})"
    at = f"(({n} - 1) * {level})"

    def value(rank: str) -> str:
        return f"{v}[arrayFirstIndex(x -> x > {rank}, {c})]"

    lo, hi = value(f"floor({at})"), value(f"ceil({at})")
    return f"if({n} = 0, nan, {lo} + ({at} - floor({at})) * ({hi} - {lo}))"


def _p(measure: str, level: float) -> str:
    """``_percentile`` rounded to the microsecond, as the panels show it."""
    return _round(_percentile(measure, level), 3)


_TIMING_COLUMNS = f"""{_p("d", 0.5)} AS p50_ms, {_p("d", 0.95)} AS p95_ms, {_p("d", 0.99)} AS p99_ms,
    {_p("o", 0.95)} AS own_p95_ms, {_p("u", 0.95)} AS upstream_p95_ms, {_round("ms_u / nullIf(ms_d, 0)", 4)} AS upstream_share"""
"""The ``latency`` and ``trends`` panels' timings, of a row of ``_histograms`` of the three measures."""


_ERRORS_BY_ORIGIN = ", ".join(
    f"sumIf(events, ifNull(failure_origin, '') = '{origin}') AS {origin}_errors"
    for origin in ("client", "auth", "upstream", "server")
)
_BUCKET = "%(origin)s + intDiv(ts_us - %(origin)s, %(bucket)s) * %(bucket)s"
"""The start of an event's time bucket (µs), buckets counted from ``store.time_buckets``' origin."""

_CODE_NAME = """multiIf(error_code = -32700, 'parse error', error_code = -32600, 'invalid request',
    error_code = -32601, 'method not found', error_code = -32602, 'invalid params', error_code = -32603, 'internal error',
    error_code = -32002, 'resource not found', error_code = -32042, 'URL elicitation required',
    error_code = 0, 'handler exception (SDK)', NULL)"""

_EXAMPLE = "argMax(message, (example_ts, example_id)) AS example"
"""A group's example message (of ``_failed`` rows): the newest one, ties by event id, as DuckDB's ``_EXAMPLE``; NULL
messages are passed over (a Nullable argument's aggregate), so a group shows one when any of its failures had one."""


def _failed(source: str) -> str:
    """The window's failures of ``source`` as ``rollup_outcomes`` counts them, one row each: ``type``,
    ``failure_origin``, ``reason``, ``error_code``, ``n``, ``last_failed`` and the message (``message``) with the
    instant and event id that order it (``example_ts``, ``example_id``)."""
    return f"""SELECT type, failure_origin, coalesce(failure_reason, error_type) AS reason, error_code, toUInt64(1) AS n,
            ts_us AS last_failed, ts_us AS example_ts, event_id AS example_id, error_message AS message
        FROM {source} WHERE {_IN_WINDOW} AND is_error = 1"""


def _failures(failed: str) -> str:
    """The ``failures`` panel over ``failed`` (``_failed``' rows): per origin, then reason."""
    return f"""
        SELECT origin, reason, failures, origin_failures, example, last_seen FROM (
            SELECT ifNull(failure_origin, 'unknown') AS origin, reason, sum(n) AS failures, {_EXAMPLE},
                max(last_failed) AS last_seen
            FROM ({failed}) GROUP BY origin, reason
        ) AS known ALL LEFT JOIN (
            SELECT ifNull(failure_origin, 'unknown') AS origin, sum(n) AS origin_failures FROM ({failed}) GROUP BY origin
        ) AS joined USING (origin)
        ORDER BY origin_failures DESC, origin, failures DESC, reason"""


def _errors(failed: str) -> str:
    """The ``errors`` panel over ``failed`` (``_failed``' rows): per JSON-RPC code."""
    return f"""
        SELECT error_code AS code, {_CODE_NAME} AS name, sum(n) AS errors,
            arraySort(groupUniqArray(replaceAll(type, 'mcp:', ''))) AS methods,
            arraySort(groupUniqArray(failure_origin)) AS origins, {_EXAMPLE}, max(last_failed) AS last_seen
        FROM ({failed}) WHERE error_code IS NOT NULL
        GROUP BY error_code ORDER BY errors DESC, code LIMIT %(limit)s"""


def _seen(source: str) -> str:
    """The events with a client in ``source`` before the window's end, as ``rollup_clients`` counts them, one row
    each: ``client_name``, ``client_version``, ``user_id``, ``n``, ``failed`` and ``first_ts``."""
    return f"""SELECT client_name, client_version, user_id, toUInt64(1) AS n, toUInt64(is_error) AS failed,
            ts_us AS first_ts
        FROM {source} WHERE {_SERVED} AND client_name IS NOT NULL AND ts_us < %(end)s"""


def _new_clients(seen: str) -> str:
    """The ``new_clients`` panel over ``seen`` (``_seen``' rows): the clients first seen in the window, with their
    versions, events, users and failures (all in the window, as they were first seen in it)."""
    return f"""
        SELECT client_name AS client, min(first_ts) AS first_seen,
            nullIf(arrayStringConcat(arraySort(groupUniqArray(client_version)), ', '), '') AS versions,
            sum(n) AS events, uniqExactIf(assumeNotNull(user_id), user_id IS NOT NULL) AS users, sum(failed) AS failures
        FROM ({seen}) GROUP BY client_name HAVING min(first_ts) >= %(start)s
        ORDER BY first_seen DESC, client LIMIT %(limit)s"""


def _earlier(source: str, used: str) -> str:
    """The uses (``used``: the method) of tools or prompts in ``source`` before the window, as ``rollup_uses`` counts
    them, one row each: ``resource``, ``last_ts``, ``n``."""
    return f"""SELECT resource, ts_us AS last_ts, toUInt64(1) AS n FROM {source}
        WHERE {_SERVED} AND type = '{used}' AND resource IS NOT NULL AND ts_us < %(start)s"""


def _during(source: str, used: str) -> str:
    """The names of the tools or prompts used (``used``: the method) in the window in ``source``."""
    return f"SELECT resource FROM {source} WHERE {_IN_WINDOW} AND type = '{used}' AND resource IS NOT NULL"


def _listed(source: str, listing: str, column: str) -> str:
    """The lists of tools or prompts (``column``) that the listings (``listing``: the method) of ``source`` before the
    window's end returned, as ``rollup_listings`` keeps them, one row each: ``names``, ``last_ts``."""
    return f"SELECT {column} AS names, ts_us AS last_ts FROM {source} WHERE {_SERVED} AND type = '{listing}' AND ts_us < %(end)s"


def _unused(item: str, last: str, before: str, earlier: str, listed: str, during: str) -> str:
    """Tools (or prompts) listed by the server or used before the window, and not used in it: ``item``, when each was
    last used (``last``) and how often before the window (``before``), and when last listed; over the uses before
    the window (``earlier``: ``_earlier``' rows), the listings (``_listed``') and the names used in it (``_during``)."""
    return f"""
        SELECT {item}, {last}, ifNull({before}, 0) AS {before}, last_listed FROM (
            SELECT assumeNotNull(resource) AS {item}, max(last_ts) AS {last}, sum(n) AS {before}
            FROM ({earlier}) GROUP BY {item}
        ) AS known ALL FULL OUTER JOIN (
            SELECT arrayJoin(names) AS {item}, max(last_ts) AS last_listed FROM ({listed}) GROUP BY {item}
        ) AS joined USING ({item})
        WHERE {item} NOT IN (SELECT assumeNotNull(resource) FROM ({during}))
        ORDER BY {last} IS NULL, {last} DESC, {item} LIMIT %(limit)s"""


def _raw_unused(item: str, used: str, listing: str, column: str, last: str, before: str) -> str:
    """``_unused`` over the events (``_UNUSED``' values)."""
    return _unused(
        item, last, before, _earlier("{events}", used), _listed("{events}", listing, column), _during("{events}", used)
    )


_UNUSED = {
    "unused_tools": ("tool", "mcp:tools/call", "mcp:tools/list", "tools_listed", "last_called", "calls_before"),
    "unused_prompts": ("prompt", "mcp:prompts/get", "mcp:prompts/list", "prompts_listed", "last_used", "uses_before"),
}
"""Per ``unused_*`` panel: its item, the method that uses one, the method that lists them, the column of the list,
and the names of its columns of the last use and of the uses before the window."""


_SESSION_FIGURES = """min(ts) AS started, max(ts) AS ended,
    (intDiv(max(ts), 1000) - intDiv(min(ts), 1000)) / 1000 AS duration_s,
    count() AS events, countIf(type = 'mcp:tools/call') AS tool_calls, countIf(is_error = 1) AS failures,
    count(intent) AS intents"""


def _counted_panels(counted: str, pieces: str, points: bool = True, lone: str | None = None) -> dict[str, str]:
    """``summary``, ``clients`` and ``users`` over ``counted`` and ``pieces``: the window's events as counts
    (``client_name``, ``user_id``, ``grouped``, ``n_events``, ``n_failures``, ``n_calls`` (tool calls), ``n_last``,
    ``user_name``) and the pieces of its sessions' runs (``_runs``), from the events (``_event_counts``, ``_PIECES``)
    or rolled up (``_COUNTED``, ``_JOINED_PIECES``, not ``points``, beside ``lone``: the rows of the whole runs,
    ``_LONE_RUNS``, counted without sorting them)."""
    singles, tool_calls = "sumIf(n_events, grouped = 0)", "sum(n_calls)"
    users = "uniqExactIf(assumeNotNull(user_id), user_id IS NOT NULL)"

    def runs_by(by: str, new: str) -> str:
        """The runs per value of ``by`` (``n``, a row per run and value): ``pieces``' and ``lone``'s (``new``: a row
        of a value's first in its run)."""
        cut = f"SELECT {by}, toUInt64(1) AS n FROM ({_runs(pieces, points, by)})"
        return cut if lone is None else f"{cut} UNION ALL SELECT {by}, toUInt64(1) FROM ({lone}) WHERE {new} = 1"

    whole = "" if lone is None else f" + (SELECT sum(new_run) FROM ({lone}))"
    return {
        "summary": f"""
            SELECT events, failures, {_round("1 - failures / nullIf(events, 0)", 4)} AS success_rate, tool_calls,
                singles + ({_runs(pieces, points)}){whole} AS sessions, users, clients
            FROM (
                SELECT sum(n_events) AS events, sum(n_failures) AS failures, {tool_calls} AS tool_calls,
                    {singles} AS singles, {users} AS users,
                    uniqExactIf(assumeNotNull(client_name), client_name IS NOT NULL) AS clients
                FROM {counted}
            )""",
        "clients": f"""
            SELECT client, events, tool_calls, failures, other_sessions + ifNull(runs, 0) AS sessions, users FROM (
                SELECT ifNull(client_name, '(unknown)') AS client, sum(n_events) AS events, {tool_calls} AS tool_calls,
                    sum(n_failures) AS failures, {singles} AS other_sessions, {users} AS users
                FROM {counted} GROUP BY client
            ) AS known ALL LEFT JOIN (
                SELECT ifNull(client_name, '(unknown)') AS client, sum(n) AS runs
                FROM ({runs_by("client_name", "new_client")}) GROUP BY client
            ) AS joined USING (client)
            ORDER BY events DESC, client LIMIT %(limit)s""",
        "users": f"""
            SELECT user, name, events, tool_calls, failures, other_sessions + ifNull(runs, 0) AS sessions, last_seen
            FROM (
                SELECT assumeNotNull(user_id) AS user, any(user_name) AS name, sum(n_events) AS events,
                    {tool_calls} AS tool_calls, sum(n_failures) AS failures, {singles} AS other_sessions,
                    max(n_last) AS last_seen
                FROM {counted} WHERE user_id IS NOT NULL GROUP BY user
            ) AS known ALL LEFT JOIN (
                SELECT assumeNotNull(user_id) AS user, sum(n) AS runs
                FROM ({runs_by("user_id", "new_user")}) WHERE user_id IS NOT NULL GROUP BY user
            ) AS joined USING (user)
            ORDER BY events DESC, user LIMIT %(limit)s""",
    }


_TOOL = "assumeNotNull(resource) AS tool"
_SUBJECT = "assumeNotNull(resource) AS subject"
_SERVER = "ifNull(server_name, '(unknown)') AS server"


def _chosen_runs(pieces: str, points: bool = True) -> str:
    """The first step of the ``sessions`` panel: the newest ``limit`` runs with an event in the window, by their first
    event there (at the same instant, by group and run, as DuckDB chooses them), cut from the instants alone of the
    pieces of runs ``pieces`` (as ``_runs`` reads them), and the window's events of no group (a run each): ``grp``,
    ``run``, ``run_from`` and ``run_to`` (its first event in the window and its last), ``last_run`` (its group's runs
    since ``gap`` before the window)."""
    if points:
        element, firsts, lasts, runs = "first_ts", "s", "s", _runs_of("s", "x")
    else:
        element, runs = "(first_ts, last_ts)", _runs_of("s", last="tupleElement(x, 2)")
        firsts, lasts = "arrayMap(x -> tupleElement(x, 1), s)", "arrayMap(x -> tupleElement(x, 2), s)"
    return f"""
        SELECT grp, run, run_from, run_to, last_run FROM (
            SELECT grp, tupleElement(c, 1) AS run, tupleElement(c, 2) AS run_from, tupleElement(c, 3) AS run_to,
                last_run
            FROM (
                SELECT grp, runs[-1] AS last_run, arrayJoin(arrayMap((r, f, t) -> (r, f, t),
                    arrayFilter((r, x, n) -> x >= %(start)s AND n > 0, runs, lasts, next_step),
                    arrayFilter((x, i, d, p) -> x >= %(start)s AND (i = 1 OR d > 0 OR p < %(start)s),
                        firsts, arrayEnumerate(s), step, previous),
                    arrayFilter((x, n) -> x >= %(start)s AND n > 0, lasts, next_step))) AS c
                FROM (
                    SELECT grp, s, {firsts} AS firsts, {lasts} AS lasts, {runs} AS runs, arrayDifference(runs) AS step,
                        arrayPushBack(arrayPopFront(step), 1) AS next_step,
                        arrayPushFront(arrayPopBack(lasts), toInt64(0)) AS previous
                    FROM ({_by_group(pieces, element)})
                )
            )
            UNION ALL
            SELECT grp, run, run_from, run_to, last_run FROM (
                SELECT cityHash64('e', event_id) AS grp, toUInt64(1) AS run, ts_us AS run_from, ts_us AS run_to,
                    toUInt64(1) AS last_run
                FROM {{recent}} WHERE {_IN_WINDOW} AND NOT {_GROUPED}
                ORDER BY run_from DESC, grp LIMIT %(limit)s
            )
        )
        ORDER BY run_from DESC, grp, run LIMIT %(limit)s"""


def _request_counts(source: str) -> str:
    """The window's requests of ``source`` as ``trends`` counts them, one row each."""
    return f"""SELECT {_BUCKET} AS bucket, toUInt64(1) AS events, toUInt64(is_error) AS failures, failure_origin
        FROM {source} WHERE {_IN_WINDOW} AND {_REQUESTS}"""


_SHAPE = "arrayStringConcat(arraySort(argument_keys), ', ')"
"""A call's argument keys, as the panels show them."""
_USED = "type IN ('mcp:tools/call', 'mcp:prompts/get')"
"""The tool calls and prompt gets."""


def _uses(source: str) -> str:
    """The window's tool calls and prompt gets of ``source`` as ``rollup_uses`` counts them, one row each: ``type``,
    ``resource``, ``keys`` (``_SHAPE``), ``user_id``, ``n``, ``failed``, ``last_ts``, ``bytes`` (of the response),
    ``sized`` (whether it has a size) and ``ms``."""
    return f"""SELECT type, resource, {_SHAPE} AS keys, user_id, toUInt64(1) AS n, toUInt64(is_error) AS failed,
            ts_us AS last_ts, toUInt64(ifNull(response_size, 0)) AS bytes, toUInt64(response_size IS NOT NULL) AS sized,
            duration_ms AS ms
        FROM {source} WHERE {_IN_WINDOW} AND {_USED}"""


def _call_counts(uses: str) -> str:
    """The tool calls of ``uses`` (``_uses``' rows) as ``tools`` counts them."""
    return f"""SELECT {_TOOL}, user_id, n AS events, failed AS failures, last_ts
        FROM ({uses}) WHERE {_CALLED}"""


def _cost(uses: str) -> str:
    """The ``cost`` panel over ``uses`` (``_uses``' rows): per tool and user, the calls' responses and time."""
    price = ("if(has(CAST(%(priced_tools)s AS Array(String)), tool), CAST(%(tool_prices)s AS Array(Float64))"
             "[indexOf(CAST(%(priced_tools)s AS Array(String)), tool)], %(token_price)s)")  # fmt: skip
    return f"""
        SELECT tool, ifNull(user_id, '(anonymous)') AS user, sum(events) AS calls, sum(bytes) AS response_bytes,
            {_round("sum(bytes) / sum(sized)", 1)} AS avg_response_bytes, {_round("sum(ms)", 3)} AS total_ms,
            toInt64({_round("response_bytes / %(token_bytes)s", 0)}) AS est_tokens,
            {_round(f"response_bytes / %(token_bytes)s / 1e6 * {price}", 6)} AS est_cost
        FROM (SELECT {_TOOL}, user_id, n AS events, bytes, sized, ms FROM ({uses})
              WHERE {_CALLED})
        GROUP BY tool, user ORDER BY response_bytes DESC, calls DESC, tool, user LIMIT %(limit)s"""


def _arguments(uses: str) -> str:
    """The ``arguments`` panel over ``uses`` (``_uses``' rows): per tool or prompt, each shape of its arguments."""
    named = f"SELECT type, assumeNotNull(resource) AS name, keys, n, failed FROM ({uses}) WHERE resource IS NOT NULL"
    return f"""
        SELECT if(type = 'mcp:tools/call', 'tool', 'prompt') AS kind, name, keys AS argument_keys, calls, failures,
            {_round("calls / total", 4)} AS share
        FROM (
            SELECT type, name, keys, sum(n) AS calls, sum(failed) AS failures FROM ({named}) GROUP BY type, name, keys
        ) AS known ALL LEFT JOIN (
            SELECT type, name, sum(n) AS total FROM ({named}) GROUP BY type, name
        ) AS joined USING (type, name)
        ORDER BY calls DESC, kind, name, keys LIMIT %(limit)s"""


def _prompts(uses: str) -> str:
    """The ``prompts`` panel over ``uses`` (``_uses``' rows): per prompt and shape of its arguments."""
    return f"""
        SELECT prompt, keys AS argument_keys, uses, failures, users FROM (
            SELECT resource AS prompt, keys, sum(n) AS uses, sum(failed) AS failures,
                uniqExactIf(assumeNotNull(user_id), user_id IS NOT NULL) AS users
            FROM ({uses}) WHERE type = 'mcp:prompts/get'
            GROUP BY prompt, keys ORDER BY uses DESC, prompt, keys LIMIT %(limit)s
        )"""


def _tool_p95(timings: str) -> str:
    """Each tool's ``p95_ms`` in ``timings`` (``_timed``'s rows per ``tool``): ``tools``' column, ``slo``'s tiers."""
    return f"SELECT tool, {_p('d', 0.95)} AS p95_ms FROM {_histograms(timings, 'tool')}"


def _latency(timings: str) -> str:
    """The ``latency`` panel over ``timings`` (``_timed``'s rows of the three measures per ``resource``: null for all
    requests, else a tool's calls, as ``_ALL_AND_EACH_TOOL`` reads them): all requests, then each tool. One read and
    one set of histograms for both (two reads side by side took ClickHouse 18.16 1.5 to 2 times as long at 10M
    events, mostly analysing them), and a bucket of no request for all requests (a row of them when there is none)."""
    none = f"SELECT {_NONE}, 'd', toInt64(0), toUInt64(0), 0., inf, -inf"
    return f"""
        SELECT resource AS tool, n_d AS calls, {_TIMING_COLUMNS}
        FROM {_histograms(f"{timings} UNION ALL {none}", "resource", "dou")}
        ORDER BY tool IS NOT NULL, p95_ms DESC, tool LIMIT %(limit)s BY tool IS NULL"""


def _tools(calls: str, timings: str) -> str:
    """The ``tools`` panel over ``calls`` (``tool``, ``user_id``, ``events``, ``failures``, ``last_ts``: the window's
    tool calls as counts, ``_call_counts``, read once: each tool's share of them from the tools' counts) and
    ``timings`` (``_timed``'s rows per ``tool``)."""
    return f"""
        SELECT tool, calls, errors, error_rate, p95_ms, users, last_called, share FROM (
            SELECT tupleElement(t, 1) AS tool, tupleElement(t, 2) AS calls, tupleElement(t, 3) AS errors,
                {_round("errors / calls", 4)} AS error_rate, tupleElement(t, 4) AS users,
                tupleElement(t, 5) AS last_called, {_round("calls / total", 4)} AS share
            FROM (  -- every tool's counts in an array beside their total: the calls read once
                SELECT groupArray((tool, n, failed, people, last)) AS per_tool, sum(n) AS total FROM (
                    SELECT tool, sum(events) AS n, sum(failures) AS failed, max(last_ts) AS last,
                        uniqExactIf(assumeNotNull(user_id), user_id IS NOT NULL) AS people
                    FROM ({calls}) GROUP BY tool
                )
            ) ARRAY JOIN per_tool AS t
            ORDER BY calls DESC, tool LIMIT %(limit)s
        ) AS known ALL LEFT JOIN (
            {_tool_p95(timings)}
        ) AS joined USING (tool)
        ORDER BY calls DESC, tool"""


def _trends(requests: str, timings: str) -> str:
    """The ``trends`` panel over ``requests`` (``bucket``, ``events``, ``failures`` and ``failure_origin``: the window's
    requests as counts, ``_request_counts``) and ``timings`` (``_timed``'s rows of the three measures per ``bucket``)."""
    return f"""
        SELECT bucket, intDiv(%(bucket)s, 1000000) AS bucket_seconds, calls, errors,
            client_errors, auth_errors, upstream_errors, server_errors,
            p50_ms, p95_ms, p99_ms, own_p95_ms, upstream_p95_ms, upstream_share
        FROM (
            SELECT bucket, sum(events) AS calls, sum(failures) AS errors, {_ERRORS_BY_ORIGIN}
            FROM ({requests}) GROUP BY bucket
        ) AS known ALL INNER JOIN (
            SELECT bucket, {_TIMING_COLUMNS} FROM {_histograms(timings, "bucket", "dou")}
        ) AS joined USING (bucket)
        ORDER BY bucket"""


def _servers(counted: str, timings: str) -> str:
    """The ``servers`` panel over ``counted`` (the window's events as counts, as ``_counted_panels`` reads them, with
    ``server_name`` and ``server_version``) and ``timings`` (``_timed``'s rows per ``server``)."""
    return f"""
        SELECT server, versions, events, tool_calls, failures, p95_ms, clients, users, last_seen FROM (
            SELECT {_SERVER}, nullIf(arrayStringConcat(arraySort(groupUniqArray(server_version)), ', '), '') AS versions,
                sum(n_events) AS events, sum(n_calls) AS tool_calls, sum(n_failures) AS failures,
                uniqExactIf(assumeNotNull(client_name), client_name IS NOT NULL) AS clients,
                uniqExactIf(assumeNotNull(user_id), user_id IS NOT NULL) AS users, max(n_last) AS last_seen
            FROM {counted} GROUP BY server ORDER BY events DESC, server LIMIT %(limit)s
        ) AS known ALL LEFT JOIN (
            SELECT server, {_p("d", 0.95)} AS p95_ms FROM {_histograms(timings, "server")}
        ) AS joined USING (server)
        ORDER BY events DESC, server"""


_SERIES = f"""multiIf(%(by)s = 'family', {_FAMILY}, %(by)s = 'tool', resource,
    %(by)s = 'client', ifNull(client_name, '(unknown)'), type)"""
"""The series of an event in ``timeseries``, by ``by``."""


def _series_counts(source: str) -> str:
    """The window's events of ``source`` as ``timeseries`` counts them (``ts_us``, ``series``, ``n_events``,
    ``n_failures``), one row each."""
    return f"""SELECT ts_us, {_SERIES} AS series, toUInt64(1) AS n_events, toUInt64(is_error) AS n_failures
        FROM {source} WHERE {_IN_WINDOW} AND (%(by)s != 'tool' OR ({_CALLED}))"""


def _timeseries(counted: str) -> str:
    """The ``timeseries`` panel over ``counted`` (the window's events as ``_series_counts`` counts them)."""
    return f"""
        SELECT {_BUCKET} AS bucket, intDiv(%(bucket)s, 1000000) AS bucket_seconds, series,
            sum(n_events) AS events, sum(n_failures) AS failures
        FROM ({counted}) GROUP BY bucket, series ORDER BY bucket, series"""


def _methods(counted: str) -> str:
    """The ``methods`` panel over ``counted`` (the window's events as counts: ``type``, ``n_events``)."""
    return f"""
        SELECT type AS method, sum(n_events) AS events,
            {_round(f"events / (SELECT sum(n_events) FROM ({counted}))", 4)} AS share,
            (SELECT {_round("sumIf(n_events, type = 'mcp:tools/call') / nullIf(sumIf(n_events, type = 'mcp:tools/list'), 0)", 3)}
             FROM ({counted})) AS calls_per_list
        FROM ({counted}) GROUP BY type ORDER BY events DESC, method"""


def _event_counts(source: str) -> str:
    """The window's events of ``source`` as ``_counted_panels`` and ``_servers`` count them, one row each."""
    return f"""
        SELECT client_name, user_id, toUInt8({_GROUPED}) AS grouped, server_name, server_version, toUInt64(1) AS n_events,
            toUInt64(is_error) AS n_failures, toUInt64(type = 'mcp:tools/call') AS n_calls, ts_us AS n_last, user_name
        FROM {source} WHERE {_IN_WINDOW}"""


_PANELS: dict[str, str] = {
    **_counted_panels(f"({_event_counts('{events}')})", _PIECES),
    "timeseries": _timeseries(_series_counts("{events}")),
    "trends": _trends(_request_counts("{events}"), _timed("{events}", _IN_WINDOW, f"{_BUCKET} AS bucket", "dou")),
    "extent": f"""
        SELECT if(count() = 0, NULL, min(ts_us)) AS first_event, if(count() = 0, NULL, max(ts_us)) AS last_event,
            count() AS events
        FROM {{events}} WHERE {_SERVED}""",
    "latency": _latency(_timed("{events}", _IN_WINDOW, _ALL_AND_EACH_TOOL, "dou")),
    "tools": _tools(_call_counts(_uses("{events}")), _timed("{events}", _TOOL_CALLS, _TOOL)),
    "failures": _failures(_failed("{events}")),
    "methods": _methods(f"SELECT type, toUInt64(1) AS n_events FROM {{events}} WHERE {_IN_WINDOW}"),
    "prompts": _prompts(_uses("{events}")),
    "cost": _cost(_uses("{events}")),
    **{name: _raw_unused(*unused) for name, unused in _UNUSED.items()},
    "errors": _errors(_failed("{events}")),
    "arguments": _arguments(_uses("{events}")),
    "servers": _servers(f"({_event_counts('{events}')})", _timed("{events}", _IN_WINDOW, _SERVER)),
    "new_clients": _new_clients(_seen("{events}")),
    "intents": f"""
        SELECT ts_us AS ts, intent, resource AS tool, user_id AS user, client_name AS client, session_id, is_error,
            event_id
        FROM {{events}} WHERE {_IN_WINDOW} AND intent IS NOT NULL
            AND (%(q)s = '' OR positionUTF8(lowerUTF8(ifNull(intent, '')), lowerUTF8(%(q)s)) > 0)
        ORDER BY ts DESC, event_id LIMIT %(limit)s""",
    "sessions": _chosen_runs(_PIECES),
}
_SESSIONS = f"""
    SELECT session, tag != 's' AS stateless,
        multiIf(tag = 's', 'session id', tag = 'u', 'user + client', tag = 'c', 'caller + client', 'single event')
            AS grouping,
        user, client, started, ended, duration_s, events, tool_calls, failures, intents,
        if(ended > %(now)s - %(gap)s, 'active', 'ended') AS state
    FROM (
        SELECT tag, multiIf(tag != 's', concat(tag, '-', first_event),
                last_run = 1 AND grp NOT IN ({{earlier}}),
                ifNull(session_id, ''), concat(ifNull(session_id, ''), '@', first_event)) AS session,
            user, client, started, ended, duration_s, events, tool_calls, failures, intents
        FROM (
            SELECT grp, run, any(last_run) AS last_run, any(tag_of) AS tag, any(session_id) AS session_id,
                min(event_id) AS first_event, min(user_id) AS user, min(client_name) AS client, {_SESSION_FIGURES}
            FROM (
                SELECT grp, run, last_run, ts, event_id, type, is_error, intent, session_id, user_id, client_name, tag_of
                FROM (
                    SELECT ts_us AS ts, event_id, type, is_error, intent, session_id, user_id, client_name,
                        {_TAG} AS tag_of, {_GROUP} AS grp
                    FROM {{events}}
                    WHERE {_SERVED} AND ts_us >= %(first_chosen)s AND ts_us < %(end)s AND grp IN %(chosen_set)s
                ) AS known ALL INNER JOIN (
                    SELECT toUInt64(tupleElement(c, 1)) AS grp, tupleElement(c, 2) AS run,
                        tupleElement(c, 3) AS run_from, tupleElement(c, 4) AS run_to, tupleElement(c, 5) AS last_run
                    FROM (SELECT arrayJoin(arrayMap((g, r, f, t, l) -> (g, r, f, t, l), %(chosen_groups)s,
                        %(chosen_runs)s, %(chosen_from)s, %(chosen_to)s, %(chosen_last)s)) AS c)
                ) AS joined USING grp
                WHERE ts >= run_from AND ts <= run_to
            )
            GROUP BY grp, run
        )
    )
    ORDER BY started DESC, session LIMIT %(limit)s"""
"""The ``sessions`` panel from its chosen runs (the ``sessions`` query's rows, a column each: ``chosen_groups``,
``chosen_runs``, ``chosen_from``, ``chosen_to``, ``chosen_last``; ``first_chosen``, the first instant): each run's figures
from its own events, its name (a session id alone when its group has one run in the window and no event before the
runs are cut from; whether it has is read from the table as it is, which duplicates cannot change: ``{earlier}``,
of ``_EARLIER_SESSIONS``)."""


def _earlier_sessions(within: str = "1") -> str:
    """The groups of the chosen sessions (``chosen_set``) by session id with an event before the runs are cut from
    (``gap`` before the window), of the events ``within``."""
    return f"""SELECT {_SESSION_GROUP} AS grp FROM events
        WHERE {_SERVED} AND session_id IS NOT NULL AND ts_us < %(start)s - %(gap)s AND at <= toDateTime(%(scope_s)s)
            AND {within} AND grp IN %(chosen_set)s"""


_EARLIER_SESSIONS = {
    False: _earlier_sessions(),
    True: f"""SELECT grp FROM rollup_runs WHERE project = %(project)s AND {_clean_hours("before_")}
        AND grp IN %(chosen_set)s
        UNION ALL {_earlier_sessions(_not_clean("{dirty}", "before_"))}""",
}
"""``_SESSIONS``' ``{earlier}``: from the events, or (``True``) from ``rollup_runs`` for the clean whole hours before
the runs are cut from (``before_``: their values) and from the events for the rest (``{dirty}``: the dirty hours)."""
_TIMELINE = """SELECT ts_us AS ts, event_id, type, resource, intent, duration_ms, upstream_ms, response_size,
    argument_keys, is_error, error_type, error_message, failure_origin, failure_reason, user_id AS user,
    client_name AS client, nullIf(visitParamExtractString(ifNull(custom, ''), 'message'), '') AS message, custom,
    content, trace_id, span_id"""
_ANCHOR_GROUP = f"(SELECT {_GROUP} FROM {{events}} WHERE project = %(project)s AND event_id = %(anchor)s LIMIT 1)"
_ANCHOR_RUN = f"""(
    SELECT (s[indexOf(runs, mine)], s[length(runs) + 1 - indexOf(arrayReverse(runs), mine)])
    FROM (
        SELECT s, runs, runs[indexOf(s, tuple((SELECT ts_us FROM {{events}}
                WHERE project = %(project)s AND event_id = %(anchor)s LIMIT 1)))] AS mine
        FROM (
            SELECT arraySort(groupArray(tuple(ts_us))) AS s, {_runs_of("s")} AS runs
            FROM {{events}} WHERE {_SERVED} AND {_GROUP} = {_ANCHOR_GROUP}
        )
    )
)"""
_SESSION_TIMELINES = {
    "": f"""{_TIMELINE} FROM {{events}} WHERE {_SERVED} AND session_id = %(session)s
        ORDER BY ts, event_id LIMIT %(limit)s""",
    "e-": f"""{_TIMELINE} FROM {{events}} WHERE {_SERVED} AND session_id IS NULL AND event_id = %(anchor)s
        LIMIT %(limit)s""",
    "run": f"""{_TIMELINE} FROM {{events}} WHERE {_SERVED} AND {_GROUP} = {_ANCHOR_GROUP}
        AND ts_us >= tupleElement({_ANCHOR_RUN}, 1).1 AND ts_us <= tupleElement({_ANCHOR_RUN}, 2).1
        ORDER BY ts, event_id LIMIT %(limit)s""",
}
"""One session's timeline, by the form of its key (``store.panel_query``): a session id; ``e-<event>``;
``<session id>@<event>``, ``u-<event>``, ``c-<event>``: the run of that event's group that holds it (runs are
contiguous in time within a group, so its first and last instants bound it)."""


_FIRST_EVENT = f"SELECT if(count() = 0, NULL, min(ts_us)) AS first FROM {{events}} WHERE {_IN_WINDOW}"
_FIRST_MARK = """SELECT if(count() = 0, NULL, toUInt32(min(hour))) AS hour FROM rollup_dirty
    WHERE project = %(project)s"""
"""The first hour ``project`` marked (seconds; null: none)."""
_CALLS = f"{_SERVED} AND {_CALLED}"
_HOUR, _DAY = 3_600_000_000, 86_400_000_000
_DEVIATIONS = {
    # subject, observed, threshold (a row is an alert), window: what each rule finds at %(now)s (µs).
    "volume_spike": (
        f"""
        SELECT subject, recent AS observed, %(volume_factor)s * greatest(usual, 1) AS threshold FROM (
            SELECT assumeNotNull(resource) AS subject, countIf(ts_us >= %(now)s - {_HOUR}) AS recent,
                -- the same hour of each of the 7 days before, for tools called in that week at all
                countIf(ts_us < %(now)s - {_DAY}) AS week,
                countIf(ts_us < %(now)s - {_DAY} AND modulo(%(now)s - ts_us, {_DAY}) BETWEEN 1 AND {_HOUR}) / 7 AS usual
            FROM {{events}} WHERE {_CALLS} AND ts_us >= %(now)s - 7 * {_DAY} - {_HOUR} AND ts_us < %(now)s
            GROUP BY subject
        )
        WHERE recent > 0 AND week > 0 AND recent >= %(volume_min_calls)s AND recent >= %(volume_factor)s * greatest(usual, 1)
        ORDER BY subject""",
        "1h vs the same hour over 7 days",
        "{subject}: {observed:.0f} calls in the last hour, {ratio:.1f}x the usual {usual:.1f}",
    ),
    "latency_spike": (
        f"""
        SELECT subject, {_round("recent_p95", 3)} AS observed, {_round("%(latency_factor)s * usual_p95", 3)} AS threshold
        FROM (
            SELECT subject, {_percentile("d", 0.95)} AS recent_p95, n_d AS calls,
                transform(subject, %(usual_tools)s, %(usual_p95)s, nan) AS usual_p95
            FROM {_histograms(_timed("{events}", f"{_CALLS} AND ts_us >= %(now)s - 15 * 60000000 AND ts_us < %(now)s", _SUBJECT), "subject")}
        )
        WHERE has(%(usual_tools)s, subject) AND calls >= %(latency_min_calls)s AND recent_p95 > %(latency_factor)s * usual_p95
        ORDER BY subject""",
        "p95 over 15m vs the 24h before",
        "{subject}: p95 {observed:.0f} ms over 15 minutes, {ratio:.1f}x the usual {usual:.0f} ms",
    ),
    "error_ratio": (
        f"""
        SELECT assumeNotNull(resource) AS subject,
            {_round("countIf(ifNull(failure_origin, '') IN ('server', 'upstream')) / count()", 4)} AS observed,
            %(error_ratio)s AS threshold
        FROM {{events}} WHERE {_CALLS} AND ts_us >= %(now)s - 15 * 60000000 AND ts_us < %(now)s
        GROUP BY subject HAVING count() >= %(error_min_calls)s
            AND countIf(ifNull(failure_origin, '') IN ('server', 'upstream')) > %(error_ratio)s * count()
        ORDER BY subject""",
        "15m",
        "{subject}: {observed:.1%} of calls failed (server or upstream) over 15 minutes",
    ),
    "auth_spike": (
        f"""
        SELECT subject, recent AS observed, %(auth_factor)s * greatest(usual, 1) AS threshold FROM (
            SELECT ifNull(failure_reason, '(unknown)') AS subject, countIf(ts_us >= %(now)s - 15 * 60000000) AS recent,
                countIf(ts_us < %(now)s - 15 * 60000000) / 96 AS usual  -- per 15 minutes over the day before
            FROM {{events}}
            WHERE {_SERVED} AND failure_origin = 'auth'
                AND ts_us >= %(now)s - 24 * {_HOUR} - 15 * 60000000 AND ts_us < %(now)s
            GROUP BY subject
        )
        WHERE recent > 0 AND recent >= %(auth_min_failures)s AND recent >= %(auth_factor)s * greatest(usual, 1)
        ORDER BY subject""",
        "15m vs the 24h before",
        "auth {subject}: {observed:.0f} refusals in 15 minutes, {ratio:.1f}x the usual {usual:.1f}",
    ),
    "destructive_new_client": (
        f"""
        SELECT concat(assumeNotNull(resource), ' by ', assumeNotNull(client_name)) AS subject, count() AS observed,
            0 AS threshold
        FROM {{events}}
        WHERE {_CALLS} AND ts_us >= %(now)s - {_HOUR} AND ts_us < %(now)s
            AND assumeNotNull(resource) IN ({{destructive}})
            AND ifNull(client_name, '') IN (
                SELECT assumeNotNull(client_name) AS client FROM ({{seen}})
                GROUP BY client HAVING min(first_ts) >= %(now)s - toInt64(%(new_client_hours)s * 3600e6))
        GROUP BY resource, client_name ORDER BY subject""",
        "1h",
        "{subject}: a destructive tool called {observed:.0f} times by a client first seen in the last day",
    ),
}
"""The deviation rules as queries (``alerts.Rules`` names their thresholds); ``slo_burn`` reads the ``slo`` panel.
Each reads ``{events}`` (``_events``; ``_FAILED_ONLY``: ``ClickHouseStore._source``) over the time before ``now`` its
``_LOOKBACK`` says; whether a tool was listed destructive from ``{destructive}`` (``_DESTRUCTIVE``, or
``_ROLLED_DESTRUCTIVE``); when each client was first seen from ``{seen}``
(``_seen``' rows up to ``now``: ``new_clients``' read, from ``rollup_clients`` where its hours are clean); each tool's
usual p95 (``usual_tools``, ``usual_p95``) as ``_USUAL_P95`` reads it over the 24 hours before the last 15 minutes."""
_DESTRUCTIVE = f"""SELECT arrayJoin(destructive_tools) FROM events
    WHERE {_SERVED} AND type = 'mcp:tools/list' AND ts_us >= %(now)s - 7 * {_DAY} AND ts_us < %(now)s"""
"""The tools that ``tools/list`` said were destructive over the 7 days before ``now`` (``destructive_new_client``),
from the events as they are (which duplicates cannot change)."""
_ROLLED_DESTRUCTIVE = f"""SELECT arrayJoin(names) FROM rollup_listings
    WHERE project = %(project)s AND {_clean_hours("listed_")} AND type = 'destructive'
    UNION ALL {_DESTRUCTIVE} AND {_not_clean("{dirty}", "listed_")}"""
"""``_DESTRUCTIVE`` with the clean whole hours' lists from ``rollup_listings`` (the values of ``_clean`` after
``listed_``; ``{dirty}``: its dirty hours' ranges)."""
_LOOKBACK = {
    "volume_spike": 7 * _DAY + _HOUR,
    "latency_spike": 15 * 60_000_000,
    "error_ratio": 15 * 60_000_000,
    "auth_spike": 24 * _HOUR + 15 * 60_000_000,
    "destructive_new_client": _HOUR,
}


_FAILED_ONLY = {"auth_spike": Slice(origin=("auth",))}
"""The rules that read only failures of an origin, as a slice by it (``ClickHouseStore._source``: the clean hours from
``rollup_failed``, a day of which holds 4% of its events in the benchmark)."""


def _same_hours(now: int) -> str:
    """The hours ``volume_spike`` reads at ``now`` (µs): the hour before it and the same hour of each of the 7 days
    before, as ranges of ``at`` (whole seconds around them), so that 18.16 reads their granules, not the week's."""
    return (
        "("
        + " OR ".join(
            _between((now - day * _DAY - _HOUR) // 1_000_000, (now - day * _DAY) // 1_000_000 + 1) for day in range(8)
        )
        + ")"
    )


_SLO_TARGETS = "CAST(%(slo_targets)s AS Array(Float64))"
"""The SLO tiers' targets (ms), each once (``ClickHouseStore._panel``)."""


def _slo_window(timings: str) -> str:
    """The ``slo`` panel's read: per tool called in the window (``timings``: ``_timed`` rows of its calls, ``tool``),
    ``calls``, those ``within`` each target of ``_SLO_TARGETS`` (in its bucket or below: to the histograms'
    resolution, as the percentiles) and ``p95_ms``, which are the tools' tiers when the window is the 7 days that set
    them (``ClickHouseStore._attainment``)."""
    bucket_n = "if(measure = 'd' AND key <= " + _bucket("target") + ", bucket_n, toUInt64(0))"
    within = f"sumForEach(arrayMap(target -> {bucket_n}, {_SLO_TARGETS})) AS within"
    return f"""
    SELECT tool, n_d AS calls, within, {_p("d", 0.95)} AS p95_ms FROM {_histograms(timings, "tool", extra=within)}
    ORDER BY calls DESC, tool"""


_SLO_CALLS = _timed("{events}", _TOOL_CALLS, _TOOL)
_QUERIES = {**_PANELS, "slo": _slo_window(_SLO_CALLS)}
"""Every panel's query but the ``session`` timeline's."""

# ---------------------------------------------------------------- rollups
# ``rollup_people``: per project, hour, client, user and whether grouped, the events, failures, tool calls and the
# last event; ``rollup_runs``: per project, hour and session group, the pieces of its runs in the hour (the events
# the session timeout does not separate: first and last instant, a row per user and client seen), which a read
# joins across hours into runs (``_runs``: fewer rows than events by a factor of 7 in the benchmark's store), but
# for those that are whole runs (``lone``: 89% of the benchmark's rows), which it counts as they are. Each
# hour's rows are written by one roll (``ClickHouseStore.roll``) and marked with its id (``roll``: the
# second it began, then 32 random bits). Every insert of events appends, after it returned, a row per hour it touched
# to ``rollup_dirty`` (the server's ``now()``, so after the events are visible); a roll takes the server's ``now()``
# (R) before it reads the events, counts its hours from ``events FINAL``, writes them with its id, then appends
# (hour, id, the session timeout it cut the runs by) to ``rollup_rolls``. An hour is clean while its last recorded roll
# began after its last mark, in whole seconds (``began > marked``: a mark in the second a roll began is dirty), and
# cut its runs by the reader's timeout (instances that share a database share their timeout; one with another reads
# the hours raw, and its rolls cut them anew): every insert marked before then was visible to that roll. Its rows
# are then exactly those of that roll: read by id, not ``FINAL`` (which costs ClickHouse 18.16 a merge of every
# part); rows of rolls never recorded (in progress, or stopped) are not read, and those of
# older rolls are deleted once a newer one has been recorded for ``SUPERSEDED_AFTER`` seconds. A roll counts only
# hours that have ended (the current hour is at a window's edge, read from the events, until it is over). A
# rolled-up panel reads the clean whole hours of its window from the rollups and the rest (its partial edge
# hours, the dirty hours) from the events, in one query, so that whatever the rolls have done, and whichever
# instances race, it answers what the raw events do.

_HOURS = """project = %(project)s AND at >= toDateTime(%(low_s)s) AND at < toDateTime(%(high_s)s)
    AND toUInt32(toStartOfHour(at)) IN %(hours)s"""
"""The events of the ``hours`` (seconds, in ``[low_s, high_s)``) of ``project`` that a roll counts."""
_MARK = "INSERT INTO rollup_dirty (project, hour) SELECT %(project)s, toDateTime(arrayJoin(%(hours)s), 'UTC')"
"""The ``hours`` (seconds) of ``project`` marked dirty now (``marked``'s default: the server's ``now()``)."""
_ROLL_BITS = 32
"""A roll's id: the second it began, shifted by this many bits, then as many random bits (two rolls that begin in
one second have distinct ids; the newest roll has the largest)."""
_STATE = f"""
    SELECT project, toUInt32(hour) AS hour, maxIf(t, kind = 1) AS roll, toUInt32(bitShiftRight(roll, {_ROLL_BITS})) AS began,
        argMaxIf(g, t, kind = 1) AS gap, argMaxIf(v, t, kind = 1) AS schema, toUInt32(maxIf(t, kind = 0)) AS marked,
        toUInt32(maxIf(t, kind = 2)) AS single
    FROM (
        SELECT project, hour, toUInt64(marked) AS t, toUInt64(0) AS g, toUInt16(0) AS v, 0 AS kind FROM rollup_dirty
        WHERE {{where}}
        UNION ALL
        SELECT project, hour, roll AS t, gap AS g, schema AS v, 1 AS kind FROM rollup_rolls WHERE {{where}}
        UNION ALL
        SELECT project, hour, toUInt64(began) AS t, toUInt64(0) AS g, toUInt16(0) AS v, 2 AS kind FROM rollup_single
        WHERE {{where}}
    ) GROUP BY project, hour"""
"""The last recorded roll (``roll``, 0: none), when it began, the session timeout it cut the runs by (µs) and the
schema of the release that rolled, the last mark, and the last roll that found every event of the hour stored once
(``single``) of each hour with any (``{where}``: which)."""
_ROLL = f"""
    INSERT INTO rollup_people (project, hour, client_name, user_id, grouped, server_name, server_version, events,
        failures, tool_calls, last_ts, user_name, roll)
    SELECT project, toStartOfHour(at) AS hour, client_name, user_id, toUInt8({_GROUPED}) AS grouped, server_name,
        server_version, count() AS events, countIf(is_error = 1) AS failures,
        countIf(type = 'mcp:tools/call') AS tool_calls, max(ts_us) AS last_ts, any(user_name) AS user_name,
        toUInt64(%(roll)s) AS roll
    FROM events FINAL WHERE {_HOURS} AND kind != 'client'
    GROUP BY project, hour, client_name, user_id, grouped, server_name, server_version"""
"""The ``hours`` of ``project`` counted anew by the roll ``roll``."""
_USE = f"""
    INSERT INTO rollup_uses (project, hour, type, resource, keys, user_id, n, failed, last_ts, bytes, sized, ms, roll)
    SELECT project, toStartOfHour(at) AS hour, type, resource, {_SHAPE} AS keys, user_id, count(), countIf(is_error = 1),
        max(ts_us), sum(ifNull(response_size, 0)), count(response_size), sum(duration_ms), toUInt64(%(roll)s)
    FROM events FINAL WHERE {_HOURS} AND kind != 'client' AND {_USED}
    GROUP BY project, hour, type, resource, keys, user_id"""
"""The tool calls and prompt gets in the ``hours`` of ``project`` per name, argument keys and user (``_uses``),
counted anew by the roll ``roll``."""
_NEAR = """project = %(project)s AND at >= toDateTime(%(near_low_s)s) AND at < toDateTime(%(near_high_s)s)
    AND toUInt32(toStartOfHour(at)) IN %(near_hours)s"""
"""The events of ``project`` in the hours within ``gap`` of the ``hours`` (``near_hours``, in ``[near_low_s,
near_high_s)``): every event that can be in a run with one of theirs (and others, which cut no run of theirs)."""
_CUT = f"""
    INSERT INTO rollup_runs (project, hour, grp, first_ts, last_ts, user_id, client_name, lone, new_run, new_client,
        new_user, roll)
    SELECT project, hour, grp, first_ts, last_ts, tupleElement(seen, 1), tupleElement(seen, 2), lone,
        tupleElement(seen, 3), tupleElement(seen, 4), tupleElement(seen, 5), toUInt64(%(roll)s)
    FROM (
        SELECT project, hour, grp, first_ts, last_ts, lone,
            arrayJoin(arrayMap((p, i, c, u) -> (tupleElement(p, 1), tupleElement(p, 2), toUInt8(i = 1), toUInt8(c = 1),
                toUInt8(u = 1)), pairs, arrayEnumerate(pairs), arrayEnumerateUniq(arrayMap(p -> tupleElement(p, 2), pairs)),
                arrayEnumerateUniq(arrayMap(p -> tupleElement(p, 1), pairs)))) AS seen
        FROM (
            SELECT project, toDateTime(tupleElement(e, 5), 'UTC') AS hour, grp, min(tupleElement(e, 1)) AS first_ts,
                max(tupleElement(e, 1)) AS last_ts, toUInt8(max(tupleElement(e, 6)) = 0) AS lone,
                arraySort(groupUniqArray((tupleElement(e, 3), tupleElement(e, 4)))) AS pairs
            FROM (
                SELECT project, grp, arrayJoin(arrayMap((x, r, b, f) -> (tupleElement(x, 1), r, tupleElement(x, 2),
                    tupleElement(x, 3), tupleElement(x, 4), b OR f), s, runs, crossed, arrayPushBack(arrayPopFront(crossed), 0))) AS e
                FROM (
                    SELECT project, grp, s, {_runs_of("s")} AS runs,
                        arrayMap((d, h) -> d <= %(gap)s AND h != 0, arrayDifference(arrayMap(x -> tupleElement(x, 1), s)),
                            arrayDifference(arrayMap(x -> tupleElement(x, 4), s))) AS crossed
                    FROM (
                        SELECT project, {_GROUP} AS grp, arraySort(x -> tupleElement(x, 1),
                            groupArray((ts_us, user_id, client_name, toUInt32(toStartOfHour(at))))) AS s
                        FROM events FINAL WHERE {_NEAR} AND kind != 'client' AND {_GROUPED}
                        GROUP BY project, grp
                    )
                )
            )
            WHERE tupleElement(e, 5) IN %(hours)s
            GROUP BY project, tupleElement(e, 5), grp, tupleElement(e, 2)
        )
    )"""
"""The pieces of the runs in the ``hours`` of ``project`` (the events of a group in an hour cut by ``gap``), cut anew
by the roll ``roll`` from the events near them (``_NEAR``): each piece as a row per user and client seen in it
(sorted: ``new_run`` on the first, ``new_client`` and ``new_user`` on the first of each), ``lone`` if it is a whole
run (its group's events within ``gap`` of it are all in its hour: ``crossed`` marks an event whose predecessor, in
the run, is in another hour)."""
_VIEWED = f"""(
    SELECT project, hour, type, tupleElement(v, 1) AS view, tupleElement(v, 2) AS resource,
        tupleElement(v, 3) AS server_name, duration_ms, upstream_ms
    FROM (
        SELECT project, toStartOfHour(at) AS hour, type, duration_ms, upstream_ms,
            arrayJoin(if({_CALLED}, [('all', {_NONE}, {_NONE}), ('tool', resource, {_NONE}), ('server', {_NONE}, server_name)],
                [('all', {_NONE}, {_NONE}), ('server', {_NONE}, server_name)])) AS v
        FROM events FINAL WHERE {_HOURS} AND kind != 'client'
    )
)"""
"""The events of the ``hours`` of ``project``, a row per view of ``rollup_timings`` (``_VIEWS``) each is in."""
_TIME = f"""
    INSERT INTO rollup_timings (project, hour, view, resource, server_name, measure, key, n, ms, lo_ms, hi_ms, roll)
    SELECT *, toUInt64(%(roll)s) FROM ({_timed(_VIEWED, "1", "project, hour, view, resource, server_name", "dou")})"""
"""The histograms of the requests' timings in the ``hours`` of ``project`` per view, counted anew by the roll
``roll``."""
_QUARTERED_EVENTS = f"""(
    SELECT project, toStartOfHour(at) AS hour, toUInt8(intDiv(toMinute(at), 15)) AS quarter, failure_origin,
        is_error AS failed, type, duration_ms, upstream_ms
    FROM events FINAL WHERE {_HOURS} AND kind != 'client'
)"""
"""The events of the ``hours`` of ``project``, each with its quarter hour and whether it failed."""
_QUARTER = f"""
    INSERT INTO rollup_quarters (project, hour, quarter, failure_origin, failed, measure, key, n, ms, lo_ms, hi_ms, roll)
    SELECT *, toUInt64(%(roll)s)
    FROM ({_timed(_QUARTERED_EVENTS, "1", "project, hour, quarter, failure_origin, failed", "dou")})"""
"""The histograms of the requests' timings in the ``hours`` of ``project`` per quarter hour, failure origin and
whether failed, counted anew by the roll ``roll``: ``trends`` in buckets of 15 and 30 minutes (``store.time_buckets``
begins them on the quarter hours), its counts those of the durations."""
_OUTCOME = f"""
    INSERT INTO rollup_outcomes (project, hour, type, failure_origin, reason, error_code, events, failures, last_failed,
        example_ts, example_id, message, roll)
    SELECT project, toStartOfHour(at) AS hour, type, failure_origin,
        if(is_error = 1, coalesce(failure_reason, error_type), NULL) AS why, if(is_error = 1, error_code, NULL) AS code,
        count(), countIf(is_error = 1), maxIf(ts_us, is_error = 1),
        argMaxIf(ts_us, (ts_us, event_id), is_error = 1 AND error_message IS NOT NULL),
        argMaxIf(event_id, (ts_us, event_id), is_error = 1 AND error_message IS NOT NULL),
        argMaxIf(error_message, (ts_us, event_id), is_error = 1), toUInt64(%(roll)s)
    FROM events FINAL WHERE {_HOURS} AND kind != 'client' GROUP BY project, hour, type, failure_origin, why, code"""
"""The events in the ``hours`` of ``project`` per method and failure origin, and the failures' per reason and code
(``_failed``) with their newest message, counted anew by the roll ``roll``."""
_LIST = f"""
    INSERT INTO rollup_listings (project, hour, type, names, last_ts, roll)
    SELECT project, hour, listing, listed, max(ts_us), toUInt64(%(roll)s) FROM (
        SELECT project, toStartOfHour(at) AS hour, ts_us, arrayJoin(if(type = 'mcp:tools/list',
                [(type, tools_listed), ('destructive', destructive_tools)], [(type, prompts_listed)])) AS l,
            tupleElement(l, 1) AS listing, tupleElement(l, 2) AS listed
        FROM events FINAL WHERE {_HOURS} AND kind != 'client' AND type IN ('mcp:tools/list', 'mcp:prompts/list')
    ) GROUP BY project, hour, listing, listed"""
"""The distinct lists of tools and of prompts that the listings in the ``hours`` of ``project`` returned (``_listed``),
and of the tools ``tools/list`` said were destructive (``type`` ``destructive``: ``destructive_new_client``), each
with when it was last returned, kept anew by the roll ``roll``."""
_SEE = f"""
    INSERT INTO rollup_clients (project, hour, client_name, client_version, user_id, n, failed, first_ts, roll)
    SELECT project, toStartOfHour(at) AS hour, client_name, client_version, user_id, count(), countIf(is_error = 1),
        min(ts_us), toUInt64(%(roll)s)
    FROM events FINAL WHERE {_HOURS} AND kind != 'client' AND client_name IS NOT NULL
    GROUP BY project, hour, client_name, client_version, user_id"""
"""The events with a client in the ``hours`` of ``project`` per client, version and user (``_seen``), counted anew by
the roll ``roll``."""
_EVENT_COLUMNS = f"project, {', '.join(name for name, _ in _COLUMNS)}, at"
"""Every column of ``events``, in its order (and of ``rollup_failed`` but its hour and roll)."""
_COPY = f"""
    INSERT INTO rollup_failed (hour, {_EVENT_COLUMNS}, roll)
    SELECT toStartOfHour(at), {_EVENT_COLUMNS}, toUInt64(%(roll)s) FROM events
    WHERE {_HOURS} AND failure_origin IS NOT NULL LIMIT 1 BY project, type, ts_us, event_id"""
"""The events with a failure origin (of every kind) in the ``hours`` of ``project``, copied whole by the roll ``roll``,
once each (a second copy has the sorting key of the first: ``LIMIT 1 BY`` it, as ``FINAL`` would, without 18.16's
merge of every part's every column, which took more than 1 GB where an hour had many parts): what a slice by origin
reads of its clean hours (``ClickHouseStore._source``)."""
_SINGLE = f"""
    INSERT INTO rollup_single (project, hour, began)
    SELECT project, toStartOfHour(at) AS hour, toDateTime(%(began)s, 'UTC') FROM events WHERE {_HOURS}
    GROUP BY project, hour HAVING count() = uniqExact(type, ts_us, event_id)"""
"""Which of the ``hours`` hold no second copy of a row (by the sorting key, which ``FINAL`` collapses rows by), as of
the roll that ``began``: read after it began, so an insert it did not see marked its hours at ``began`` or later."""
_ROLLED = f"""INSERT INTO rollup_rolls
    SELECT %(project)s, toDateTime(arrayJoin(%(hours)s), 'UTC'), toUInt64(%(roll)s), toUInt64(%(gap)s),
        toUInt16({SCHEMA_VERSION})"""
_ROLLUPS = (
    "rollup_people",
    "rollup_runs",
    "rollup_timings",
    "rollup_quarters",
    "rollup_uses",
    "rollup_outcomes",
    "rollup_listings",
    "rollup_clients",
    "rollup_failed",
)
"""The tables of rolled-up rows, each row marked with the roll that wrote it."""
_COMPACT = """
    INSERT INTO rollup_timings_days (project, day, view, resource, server_name, measure, key, n, ms, lo_ms, hi_ms,
        compaction)
    SELECT project, toDateTime(%(day)s, 'UTC'), view, resource, server_name, measure, key, sum(n), sum(ms), min(lo_ms),
        max(hi_ms), toUInt64(%(compaction)s)
    FROM rollup_timings
    WHERE project = %(project)s AND hour >= toDateTime(%(day)s) AND hour < toDateTime(%(day)s + 86400)
        AND roll = transform(toUInt32(hour), %(hours)s, %(rolls)s, toUInt64(0))
    GROUP BY project, view, resource, server_name, measure, key"""
"""The timings of the ``day`` of ``project`` summed from its hours' (``hours``, each by its clean roll of ``rolls``),
by the compaction ``compaction`` (an id as a roll's)."""
_COMPACTED = """INSERT INTO rollup_days
    SELECT %(project)s, toDateTime(%(day)s, 'UTC'), toUInt64(%(rolls_digest)s), toUInt64(%(compaction)s)"""
_COMPACTIONS = """SELECT toUInt32(day) AS day, rolls, max(compaction) AS newest FROM rollup_days
    WHERE project = %(project)s AND day >= toDateTime(%(start)s) AND day < toDateTime(%(end)s) GROUP BY day, rolls"""
"""The compactions recorded of the days of ``project`` from ``start`` to ``end`` (seconds): per day and digest of the
rolls compacted, the newest."""
_ROLLUP_TABLES = (*_ROLLUPS, "rollup_timings_days", "rollup_dirty", "rollup_rolls", "rollup_single", "rollup_days")
_SUPERSEDED = f"""
    SELECT project, toUInt32(hour) AS hour, max(roll) AS kept FROM rollup_rolls
    WHERE roll < bitShiftLeft(toUInt64(%(before)s), {_ROLL_BITS})
    GROUP BY project, hour"""
"""Per hour, the newest roll recorded before ``before`` (seconds): the rows of older rolls are no longer read."""
_COMPACTIONS_BEFORE = f"""
    SELECT project, toUInt32(day) AS day, rolls, max(compaction) AS newest FROM rollup_days
    WHERE compaction < bitShiftLeft(toUInt64(%(before)s), {_ROLL_BITS})
    GROUP BY project, day, rolls"""
"""Per day and digest of the rolls compacted, the newest compaction recorded before ``before`` (seconds)."""
_DROP_SUPERSEDED = """ALTER TABLE {table} DELETE
    WHERE project = %(project)s AND {id} < transform(toUInt32({at}), %(hours)s, %(kept)s, toUInt64(0))"""
"""The rows of ``project``'s ``hours`` (or days, ``at``) written by rolls (or compactions, ``id``) older than the one
``kept`` of each."""


_CLEAN = f"project = %(project)s AND {_clean_hours()}"
"""A rollup's rows of ``project``'s clean whole hours of the window (``_clean_hours``)."""
_COUNTED = f"""(
    SELECT client_name, user_id, grouped, server_name, server_version, events AS n_events, failures AS n_failures,
        tool_calls AS n_calls, last_ts AS n_last, user_name
    FROM rollup_people WHERE {_CLEAN}
    UNION ALL
    {_event_counts("{edges}")}
)"""
"""The window's events as counts: its clean whole hours from ``rollup_people``, the rest from the events."""
_CANDIDATE = "grp IN %(candidates)s"
_CANDIDATE_PIECES = f"""
    SELECT grp, first_ts, last_ts, user_id, client_name FROM rollup_runs WHERE {_CLEAN} AND {_CANDIDATE}
    UNION ALL
    {_pieces("{edges}", _CANDIDATE)}"""
"""The pieces of the runs since ``gap`` before the window of the groups ``candidates`` (``_CANDIDATES``): its clean
whole hours' from ``rollup_runs``, the rest (every other event, a piece of its own) from the events."""
_LONE = "lone = 1 AND toUInt32(hour) IN %(lone_hours)s"
"""``rollup_runs``' rows of pieces that are whole runs (of the hours where they are still, ``lone_hours``)."""
_JOINED_PIECES = f"""
    SELECT grp, first_ts, last_ts, user_id, client_name FROM rollup_runs
    WHERE {_CLEAN} AND (lone = 0 OR toUInt32(hour) NOT IN %(lone_hours)s)
    UNION ALL
    {_pieces("{edges}")}"""
"""The pieces of the runs since ``gap`` before the window but the whole runs (``_LONE``): its clean whole hours' from
``rollup_runs``, the rest (every other event, a piece of its own) from the events. A whole run is no other's
neighbour within ``gap``, so without them the others are cut as with them."""
_LONE_RUNS = f"SELECT user_id, client_name, new_run, new_client, new_user FROM rollup_runs WHERE {_CLEAN} AND {_LONE}"
"""The rows of the window's whole runs (``_LONE``)."""
_CANDIDATES = f"""
    SELECT grp FROM (
        SELECT grp, run_from FROM ({_chosen_runs(_JOINED_PIECES, points=False)})
        UNION ALL
        SELECT grp, run_from FROM (
            SELECT grp, first_ts AS run_from FROM rollup_runs WHERE {_CLEAN} AND {_LONE} AND new_run = 1
            ORDER BY run_from DESC, grp LIMIT %(limit)s
        )
    )
    ORDER BY run_from DESC, grp LIMIT %(limit)s"""
"""The groups of the ``sessions`` panel's runs (``_chosen_runs``), chosen without sorting the whole runs' pieces:
the newest ``limit`` of the runs cut from the others (as with them: ``_JOINED_PIECES``) and of the whole runs, by
their first event in the window (a run's in a group is its own)."""


def _hourly(table: str, where: str = "1", at: str = "0") -> str:
    """The rows of the rollup ``table`` of the window's clean whole hours that match ``where``, each at its hour's start
    (``ts_us``, which ``_BUCKET`` reads: an hour lies in one bucket of whole hours), plus ``at`` (µs: a quarter's)."""
    return f"(SELECT *, toInt64(toUInt32(hour)) * 1000000 + {at} AS ts_us FROM {table} WHERE {_CLEAN} AND {where})"


def _quartered(where: str) -> str:
    """``_hourly`` rows of ``rollup_quarters``, each at its quarter hour's start (in one bucket of 15 or 30 minutes)."""
    return _hourly("rollup_quarters", where, "toInt64(quarter) * 900000000")


_VIEWS = {"all": "1", "tool": _CALLED, "server": "1"}
"""The views of the requests' timings that ``rollup_timings`` keeps, and which requests each holds: all (``latency``,
``trends``), the tool calls per tool (``resource``: ``latency``, ``tools``) and all per server (``server_name``:
``servers``). (Per method, resource and server, an hour's histograms held nearly a row per value at 1M events.)"""


_DAILY = """(
    SELECT *, toInt64(toUInt32(day)) * 1000000 AS ts_us FROM rollup_timings_days
    WHERE project = %(project)s AND day >= toDateTime(%(whole_start_s)s) AND day < toDateTime(%(whole_end_s)s)
        AND compaction = transform(toUInt32(day), %(compacted_days)s, %(compactions)s, toUInt64(0)) AND {where}
)"""
"""The rows of ``rollup_timings_days`` of the window's compacted days (``compacted_days``, each by the compaction of
its clean hours' rolls, ``compactions``) that match ``{where}``."""


def _rolled_timings(view: str, by: str = "", measures: str = "d", daily: bool = True) -> str:
    """``_timed``'s rows of the window's requests of ``view`` (``_VIEWS``, or ``all+tool``: both, per ``resource``, as
    ``_ALL_AND_EACH_TOOL``), per ``by`` (of its columns): its compacted days' from ``rollup_timings_days`` (``daily``:
    not for buckets that a day may cut; consecutive days, ``[compacted_from_s, compacted_to_s)``), its other clean
    whole hours' from ``rollup_timings``, the rest from the events."""
    views, read = view.split("+"), (_ALL_AND_EACH_TOOL if "+" in view else by)
    kept = f"view IN ({', '.join(map(repr, views))}) AND measure IN ({', '.join(map(repr, measures))})"
    columns = f"{by + ', ' if by else ''}measure, key, n, ms, lo_ms, hi_ms"
    outside = "(hour < toDateTime(%(compacted_from_s)s) OR hour >= toDateTime(%(compacted_to_s)s))"
    hours = f"{kept} AND {outside}" if daily else kept
    days = f"SELECT {columns} FROM {_DAILY.format(where=kept)} UNION ALL " if daily else ""
    requests = " OR ".join(_VIEWS[name] for name in views)
    return f"""
        SELECT {by.rsplit(" AS ", 1)[-1] + ", " if by else ""}measure, key, n, ms, lo_ms, hi_ms FROM (
            {days}SELECT {columns} FROM {_hourly("rollup_timings", hours)}
        )
        UNION ALL
        {_timed("{edges}", f"{_IN_WINDOW} AND ({requests})", read, measures)}"""


_ROLLED_CALL_TIMINGS = _rolled_timings("tool", _TOOL)
"""The window's tool calls' timings per ``tool`` (``_timed``'s rows), from the rollups."""
_USUAL_P95 = {
    rolled: f"SELECT tool, {_percentile('d', 0.95)} AS p95 FROM {_histograms(timings, 'tool')}"
    for rolled, timings in ((False, _SLO_CALLS), (True, _ROLLED_CALL_TIMINGS))
}
"""Each tool's p95 over the window, unrounded, from the raw events or (``True``) the rollups: ``latency_spike``'s
usual."""
_ROLLED_USES = f"""
    SELECT type, resource, keys, user_id, n, failed, last_ts, bytes, sized, ms FROM rollup_uses WHERE {_CLEAN}
    UNION ALL {_uses("{edges}")}"""
"""The window's tool calls and prompt gets (``_uses``): its clean whole hours' from ``rollup_uses``, the rest from
the events."""
_ROLLED_FAILED = f"""
    SELECT type, failure_origin, reason, error_code, failures AS n, last_failed, example_ts, example_id, message
    FROM rollup_outcomes WHERE {_CLEAN} AND failures > 0
    UNION ALL {_failed("{edges}")}"""
"""The window's failures (``_failed``): its clean whole hours' from ``rollup_outcomes``, the rest from the events."""
_BEFORE_THE_START = "toInt64(toUInt32(hour)) * 1000000 < %(start)s"
"""A rollup's rows of the hours before the window (a history read's clean hours: the window's first, partial hour
is read from the events, ``ClickHouseStore._clean``'s ``cut``)."""


def _rolled_unused(item: str, used: str, listing: str, column: str, last: str, before: str) -> str:
    """``_unused`` over the history up to the window's end (``_UNUSED``' values): its clean whole hours' uses from
    ``rollup_uses`` and listings from ``rollup_listings``, the rest from the events."""
    uses = f"FROM rollup_uses WHERE {_CLEAN} AND type = '{used}' AND resource IS NOT NULL AND"
    return _unused(
        item, last, before,
        f"SELECT resource, last_ts, n {uses} {_BEFORE_THE_START} UNION ALL {_earlier('{edges}', used)}",
        f"""SELECT names, last_ts FROM rollup_listings WHERE {_CLEAN} AND type = '{listing}'
        UNION ALL {_listed("{edges}", listing, column)}""",
        f"SELECT resource {uses} NOT {_BEFORE_THE_START} UNION ALL {_during('{edges}', used)}",
    )  # fmt: skip


_SESSION_HOURS = f"""SELECT DISTINCT toUInt32(hour) AS held FROM rollup_runs
    WHERE {_CLEAN} AND grp = cityHash64('s', %(session)s) ORDER BY held"""
"""The clean whole hours whose runs hold the session ``session`` (``_SESSION_GROUP``'s): of the clean hours, the only
ones its timeline reads (``ClickHouseStore._timeline``)."""
_ROLLED_SEEN = f"""
    SELECT client_name, client_version, user_id, n, failed, first_ts FROM rollup_clients WHERE {_CLEAN}
    UNION ALL {_seen("{edges}")}"""
"""The events with a client before the window's end (``_seen``): the clean whole hours' from ``rollup_clients``, the
rest from the events."""
_ROLLED_PANELS = {
    **_counted_panels(_COUNTED, _JOINED_PIECES, points=False, lone=_LONE_RUNS),
    "sessions": _chosen_runs(_CANDIDATE_PIECES, points=False),
    "latency": _latency(_rolled_timings("all+tool", "resource", "dou")),
    "tools": _tools(_call_counts(_ROLLED_USES), _ROLLED_CALL_TIMINGS),
    "cost": _cost(_ROLLED_USES),
    "arguments": _arguments(_ROLLED_USES),
    "prompts": _prompts(_ROLLED_USES),
    "failures": _failures(_ROLLED_FAILED),
    **{name: _rolled_unused(*unused) for name, unused in _UNUSED.items()},
    "new_clients": _new_clients(_ROLLED_SEEN),
    "errors": _errors(_ROLLED_FAILED),
    "servers": _servers(_COUNTED, _rolled_timings("server", _SERVER)),
    "trends": _trends(
        f"""SELECT {_BUCKET} AS bucket, events, failures, failure_origin FROM {_hourly("rollup_outcomes", _REQUESTS)}
        UNION ALL {_request_counts("{edges}")}""",
        _rolled_timings("all", f"{_BUCKET} AS bucket", "dou", daily=False),
    ),
    "timeseries": _timeseries(f"""
        SELECT ts_us, toNullable(multiIf(%(by)s = 'family', {_FAMILY}, type)) AS series, events AS n_events,
            failures AS n_failures
        FROM {_hourly("rollup_outcomes", "%(by)s NOT IN ('tool', 'client')")}
        UNION ALL SELECT ts_us, resource, n, failed
        FROM {_hourly("rollup_uses", "%(by)s = 'tool' AND " + _CALLED)}
        UNION ALL SELECT ts_us, toNullable(ifNull(client_name, '(unknown)')), events, failures
        FROM {_hourly("rollup_people", "%(by)s = 'client'")}
        UNION ALL {_series_counts("{edges}")}"""),
    "methods": _methods(f"""SELECT type, events AS n_events FROM {_hourly("rollup_outcomes")}
        UNION ALL SELECT type, toUInt64(1) FROM {{edges}} WHERE {_IN_WINDOW}"""),
    "slo": _slo_window(_ROLLED_CALL_TIMINGS),
}
"""The panels read from the rollups (``ClickHouseStore._rolled``); ``_PANELS`` has the same read from the raw events."""
_QUARTERED_TRENDS = _trends(
    f"""SELECT {_BUCKET} AS bucket, n AS events, if(failed = 1, n, toUInt64(0)) AS failures, failure_origin
    FROM {_quartered("measure = 'd'")} UNION ALL {_request_counts("{edges}")}""",
    f"""SELECT {_BUCKET} AS bucket, measure, key, n, ms, lo_ms, hi_ms FROM {_quartered("1")}
    UNION ALL {_timed("{edges}", _IN_WINDOW, f"{_BUCKET} AS bucket", "dou")}""",
)
"""``trends`` in buckets of 15 or 30 minutes (``_QUARTERS``) from the rollups: the clean whole hours' quarters, counted
by their durations, the rest from the events."""
_QUARTERS = {15 * 60_000_000, 30 * 60_000_000}
"""The sizes (µs) of the ``trends`` buckets that ``rollup_quarters`` fill."""
_WEEK_P95 = {rolled: _tool_p95(timings) for rolled, timings in ((False, _SLO_CALLS), (True, _ROLLED_CALL_TIMINGS))}
"""Each tool's p95 over the 7 days up to a window's end, the ``slo`` panel's tiers (``ClickHouseStore._week_p95``), from
the raw events or (``True``) the rollups."""
_NEWEST = {"intents"}
"""The listings of the window's newest ``limit`` events (``ClickHouseStore._newest``)."""
_RAW_SPAN = 6 * _HOUR
"""The longest scope (µs) that a slice by failure origin reads from the events alone: beside its few whole hours'
copies, 18.16 analyses a second subquery, which costs more than the events the copies save (the ``sessions`` panel's
read of 4 hours sliced by client and origin at 10M events: 134-151 ms with them, 81-101 ms without; the whole panel
on schema 12, 241-345 ms with them, 183-227 without)."""
_BUCKETED = {"timeseries", "trends"}
"""The rolled-up panels in time buckets."""
_DAILY_READS = {"latency", "tools", "servers", "slo"}
"""The rolled-up panels that read the compacted days' timings (``_rolled_timings`` with ``daily``)."""
READERS = 2
"""Reads an evaluation of the alert rules runs at once (``ClickHouseStore._together``)."""
ROLL_AT_READ = 6
"""Dirty whole hours in a rolled-up panel's window above which the read rolls them up first (they are read raw)."""
SUPERSEDED_AFTER = 300
"""Seconds after a roll of an hour began before the rows of the hour's older rolls are deleted."""
ROLL_HOURS = 24
"""Hours counted and checked per roll statement: a day, so that a statement's memory (its groups, and the rows of
each hour it checks for second copies) stays that of a day's events (1M events over 7 days: 169 hours rolled in
2.2 s, 2.8 s 200 at a time)."""

_UNDELIVERED = """
    SELECT id, project, rule, subject, transition, observed, threshold, window_text AS window, since, resolved_at,
        text, url
    FROM (
        SELECT id AS alert_id, id, project, rule, subject, state, observed, threshold, window_text, since,
            resolved_at, text, arrayJoin(CAST(%(urls)s AS Array(String))) AS url,
            arrayJoin(['firing', 'resolved']) AS transition
        FROM alerts FINAL
    ) AS known ALL LEFT JOIN (
        SELECT alert_id, state AS transition, url, delivered, attempts, 1 AS known FROM alert_deliveries FINAL
    ) AS joined USING (alert_id, transition, url)
    WHERE (transition = 'firing' OR state = 'resolved') AND ifNull(delivered, 0) = 0
        AND ifNull(attempts, 0) < %(attempts)s
        AND (ifNull(known, 0) = 1 OR if(transition = 'firing', since, ifNull(resolved_at, 0)) >= %(not_before)s)
    ORDER BY id, transition, url"""

_TIMES = {"first_event", "last_event", "bucket", "last_called", "last_seen", "first_seen", "ts", "started", "ended",
          "last_listed", "last_used", "since", "resolved_at", "first"}  # fmt: skip
"""Columns holding an instant (µs since the epoch in the table): answered as aware datetimes."""
_FLAGS = {"is_error", "stateless"}
"""Columns holding a truth value (``UInt8`` in the table): answered as bools."""
_DEFAULTS: dict[str, Any] = {"limit": 100, "by": "method", "bucket": None, "session": None, "q": None}
_SLICED_COLUMNS = {
    "tool": "resource",
    "client": "ifNull(client_name, '(unknown)')",
    "user": "user_id",
    "server": "server_name",
    "method": "type",
    "origin": "ifNull(failure_origin, '')",
}


_HISTORY_BEFORE_THE_WINDOW = {"unused_tools", "unused_prompts", "new_clients"}
"""Panels that read events before their window (what was used or seen before it), up to its end."""
_WHOLE_HISTORY = {"extent", "session"}
"""Panels that read a project's events whatever the window: its extent, a session's timeline."""


def _scope(name: str, window: Window, gap: int) -> tuple[int | None, int | None]:
    """The time range (µs, ``[low, high)``; None: unbounded) of the events the panel ``name`` reads over ``window``:
    its window and the session timeout before it (sessions are cut from the events since then); the whole history
    before the window's end, or all of it, for the panels that read it. (The ``slo`` panel reads the 7 days before
    its window's end as a window of their own.)"""
    start, end = _us(window.start), _us(window.end)
    if name in _WHOLE_HISTORY:
        return None, None
    if name in _HISTORY_BEFORE_THE_WINDOW:
        return None, end
    return max(start - gap, 0), end


def _events(
    slice: Slice,
    project: str,
    scope: tuple[int | None, int | None],
    doubled: Sequence[int],
    within: str = "",
    bound: str = "scope",
    copies: str = "",
) -> tuple[str, dict[str, Any]]:
    """What the panels read as ``{events}``, and the values it names: the events of ``project`` in the time range
    ``scope`` (``_scope``) and of ``slice``, in a subquery, so that every part of a panel reads the same events; the
    project and range inside it (ClickHouse 18.16 does not push the outer conditions down), so that it reads only the
    partitions and the part of the sorting key the panel needs. The ``doubled`` hours (seconds: those a roll has not
    found free of second copies since their last insert, ``ClickHouseStore._doubled``) are read ``FINAL``, which
    collapses the copies; the others as they are, which costs a tenth as much (ClickHouse 18.16 merges every part of
    a ``FINAL`` read in one stream). A second copy is only stored when two instances store one batch at once (neither
    look-up finds the other's): a read while that insert runs, before its mark, may count the batch twice; a read
    after the batch was acknowledged (its hours marked) counts it once. ``within``: a further condition (``_not_clean``);
    ``bound``: the names of the range's values (another range in the same query names its own); ``copies``: a condition
    on the rows of ``rollup_failed`` read beside the events (those of the clean hours, ``within`` the rest)."""
    conditions = ["project = %(slice_project)s"]
    values: dict[str, Any] = {"slice_project": project}
    low, high = scope
    if low is not None:
        conditions.append(f"ts_us >= %({bound}_low)s AND at >= toDateTime(%({bound}_low_s)s)")
        values |= {f"{bound}_low": low, f"{bound}_low_s": low // 1_000_000}
    if high is not None:
        conditions.append(f"ts_us < %({bound}_high)s AND at <= toDateTime(%({bound}_high_s)s)")
        values |= {f"{bound}_high": high, f"{bound}_high_s": high // 1_000_000}
    for name, accepted in slice.stored().items():
        values[f"slice_{name}"] = tuple(accepted)  # a list would be an array; IN takes a tuple (the sorting key's)
        conditions.append(f"{_SLICED_COLUMNS[name]} IN %(slice_{name})s")
        if name == "tool":
            conditions.append("type = 'mcp:tools/call'")
    kept = " AND ".join(conditions)
    where = " AND ".join([*conditions, *([within] if within else [])])
    copied = f" UNION ALL SELECT {_EVENT_COLUMNS} FROM rollup_failed WHERE {kept} AND {copies}" if copies else ""
    if not doubled:
        return f"(SELECT {_EVENT_COLUMNS} FROM events WHERE {where}{copied})", values
    ranges = _ranges(doubled)
    inside = " OR ".join(_between(lo, hi) for lo, hi in ranges)
    # The hours outside as ranges too: 18.16 skips granules that hold rows on both sides of a range under NOT (range).
    bounds = [None, *(bound for pair in ranges for bound in pair), None]
    outside = " OR ".join(_between(lo, hi) for lo, hi in zip(bounds[0::2], bounds[1::2], strict=True))
    return (
        f"""(
        SELECT {_EVENT_COLUMNS} FROM events WHERE {where} AND ({outside})
        UNION ALL
        SELECT {_EVENT_COLUMNS} FROM events FINAL WHERE {where} AND ({inside}){copied}
    )""",
        values,
    )


def _between(low: int | None, high: int | None) -> str:
    """The rows of ``at`` in ``[low, high)`` (seconds; None: unbounded), in parentheses."""
    bounds = ([] if low is None else [f"at >= toDateTime({low})"]) + (
        [] if high is None else [f"at < toDateTime({high})"]
    )
    return f"({' AND '.join(bounds) or '1'})"


def _us(moment: datetime) -> int:
    """An instant as µs since the epoch (naive means UTC)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


def _at(us: int) -> datetime:
    """The instant ``us`` µs after the epoch."""
    return EPOCH + timedelta(microseconds=us)


def _floor_hour(us: int) -> int:
    """The start of the hour of an instant (µs), in seconds."""
    return us // _HOUR * 3600


def _ceil_hour(us: int) -> int:
    """The start of the first hour that begins at or after an instant (µs), in seconds."""
    return -(-us // _HOUR) * 3600


def _ranges(hours: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted hours (seconds) as ``[low, high)`` ranges of consecutive ones."""
    found: list[tuple[int, int]] = []
    for hour in hours:
        if found and found[-1][1] == hour:
            found[-1] = (found[-1][0], hour + 3600)
        else:
            found.append((hour, hour + 3600))
    return found


def _digest(hours: Sequence[int], rolls: Sequence[int]) -> int:
    """The rolls ``rolls`` of the ``hours`` of a day as one number (64 bits), the same in every process."""
    pairs = ",".join(f"{hour}:{roll}" for hour, roll in sorted(zip(hours, rolls, strict=True)))
    return int.from_bytes(hashlib.blake2b(pairs.encode(), digest_size=8).digest(), "big")


def _answer(name: str, value: Any) -> Any:
    """A value as the panels answer it: instants as aware datetimes, flags as bools, NaN (no value) as None."""
    if value is None:
        return None
    if name in _TIMES:
        return EPOCH + timedelta(microseconds=value)
    if name in _FLAGS:
        return bool(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


@dataclass(frozen=True)
class Address:
    """Where the database is: ``clickhouse://[user[:password]@]host[:port]/database``; user and password, when
    the URL has none, from ``MCP_ANALYTICS_CLICKHOUSE_USER`` and ``MCP_ANALYTICS_CLICKHOUSE_PASSWORD`` (else
    ClickHouse's ``default`` user without a password)."""

    host: str
    port: int
    database: str
    user: str
    password: str

    @classmethod
    def parse(cls, url: str) -> Address:
        parts = urllib.parse.urlsplit(url)
        database = parts.path.strip("/")
        if parts.scheme != "clickhouse" or not parts.hostname or not re.fullmatch(r"\w+", database):
            raise ValueError(f"a ClickHouse store is clickhouse://[user:password@]host:port/database, not {url!r}")
        return cls(
            host=parts.hostname,
            port=parts.port or DEFAULT_PORT,
            database=database,
            user=urllib.parse.unquote(parts.username or "") or os.environ.get(ENV_USER, "default"),
            password=urllib.parse.unquote(parts.password or "") or os.environ.get(ENV_PASSWORD, ""),
        )

    def __str__(self) -> str:
        return f"clickhouse://{self.host}:{self.port}/{self.database}"  # never the password


class _Held(NamedTuple):
    """The state of a project's hours in ``[low, high)`` (seconds; None: unbounded) that a thread's reads take
    (``ClickHouseStore._holding``)."""

    project: str
    low: int | None
    high: int | None
    rows: list[dict[str, Any]]

    def holds(self, project: str, low: int | None, high: int | None) -> bool:
        """Whether it holds the hours of ``project`` in ``[low, high)``."""
        return (
            project == self.project
            and (self.low is None or (low is not None and low >= self.low))
            and (self.high is None or (high is not None and high <= self.high))
        )


class _Read(NamedTuple):
    """What a panel reads over a window (``ClickHouseStore._read``)."""

    rolled: bool
    """Whether from the rollups (``_ROLLED_PANELS``) beside ``edges``."""
    source: str
    """Its events (``{events}``: ``_events``)."""
    edges: str
    """The events beside the rollups (``{edges}``: ``_not_clean``), if ``rolled``."""
    values: dict[str, Any]
    """What they, the window and its clean hours name."""
    scope: tuple[int | None, int | None]
    """The time range of its events (``_scope``)."""
    doubled: list[int]
    """The hours of ``scope`` read ``FINAL`` (``ClickHouseStore._doubled``)."""


class ClickHouseStore:
    """``Store`` (and ``alerts.AlertStore``) on a ClickHouse database, over the native protocol."""

    def __init__(
        self,
        url: str | Address,
        *,
        recent_ids: int = DEFAULT_CAPACITY,
        session_timeout: timedelta = SESSION_GAP,
        prices: Prices = Prices(),
        slos: Slos = Slos(),
        connect: bool = True,
        rollups: bool = True,
    ) -> None:
        """``url``: ``clickhouse://[user:password@]host:port/database`` (created if missing, then migrated);
        the other options as ``DuckDBStore``'s (``rollups=False``: every panel reads the raw events). ``connect=False``: nothing is done yet; the first call that reaches
        the server creates and migrates the schema (each call raises ``StoreUnavailable`` until one does), so that
        an API instance can start, and answer 503, while ClickHouse is down."""
        self.address = url if isinstance(url, Address) else Address.parse(url)
        self.path = str(self.address)
        self.session_timeout = session_timeout
        self.prices = prices
        self.slos = slos
        self.rollups = rollups
        self._local = threading.local()
        self._clients: list[Client] = []
        self._clients_lock = threading.Lock()
        self._write = threading.Lock()
        self._opening = threading.Lock()
        self._versions = 0
        self._dropped_at = 0
        self._capacity = recent_ids
        self._recent: RecentIds | None = None
        self._readers = ThreadPoolExecutor(READERS, "mcp-analytics-reader")
        if connect:
            self._open()

    def _open(self) -> RecentIds:
        """The schema created and migrated, once (by the first call that reaches the server), and the filter of
        recent ids, which starts after the newest stored event; ``StoreUnavailable`` while the server is down."""
        with self._opening:
            if self._recent is None:
                self._answers()  # a stalled server fails here, soon, not in a migration's statement
                self._migrate()
                with self._own(self.address.database) as client:
                    ((count, newest),) = client.execute("SELECT count(), max(ts_us) FROM events")
                self._recent = RecentIds(floor_us=newest + 1 if count else 0, capacity=self._capacity)
            return self._recent

    @property
    def _recent_ids(self) -> RecentIds:
        return self._open() if self._recent is None else self._recent

    def check(self) -> None:
        """Return when the server answers now, within ``CHECK_TIMEOUT`` (on a connection of its own, so that a
        stalled server fails a readiness probe soon instead of holding a worker thread); the schema is created or
        migrated first if it was not. ``StoreUnavailable`` if not."""
        if self._recent is None:
            self._open()
        else:
            self._answers()

    def _answers(self) -> None:
        """``SELECT 1`` within ``CHECK_TIMEOUT`` on a connection of its own, to the server's default database (which
        is there before the schema is); ``StoreUnavailable`` if the server does not answer."""
        with self._own(None, timeout=CHECK_TIMEOUT) as client:
            client.execute("SELECT 1")

    @contextmanager
    def _own(self, database: str | None, timeout: float | None = None) -> Iterator[Client]:
        """A connection of the block's own (``_connect``), closed after it; its connection-level failures raised
        as ``StoreUnavailable``."""
        client = self._connect(database, timeout)
        try:
            with self._reaching():
                yield client
        finally:
            client.disconnect()

    @contextmanager
    def _client(self) -> Iterator[Client]:
        """This thread's connection (a ``Client`` is not thread-safe; the API stores and reads from threads), once
        the schema is there (``_open``)."""
        if self._recent is None:
            self._open()
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._connect(self.address.database)
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        with self._reaching():
            yield client

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """A connection-level failure of the block (``_UNREACHABLE``) raised as ``StoreUnavailable``."""
        try:
            yield
        except _UNREACHABLE as error:
            raise StoreUnavailable(f"{self.path}: {type(error).__name__}: {error}") from error

    def _connect(self, database: str | None, timeout: float | None = None) -> Client:
        """A new connection (to ``database``, else to the server's default one); ``timeout``: seconds to connect and
        for each answer (else the driver's defaults: 10 s to connect, 300 s for an answer)."""
        address = self.address
        limits = {} if timeout is None else {"connect_timeout": timeout, "send_receive_timeout": timeout,
                                             "sync_request_timeout": timeout}  # fmt: skip
        return Client(host=address.host, port=address.port, user=address.user, password=address.password,
                      database=database or "default", settings=_SETTINGS, **limits)  # fmt: skip

    def _migrate(self) -> None:
        """The database and its tables created, or migrated to ``SCHEMA_VERSION`` (on connections of their own)."""
        with self._own(None) as client:
            client.execute(f"CREATE DATABASE IF NOT EXISTS {self.address.database}")
        with self._own(self.address.database) as client:
            self._migrate_tables(client)

    def _migrate_tables(self, client: Client) -> None:
        client.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version UInt32, applied_at DateTime) "
            "ENGINE = ReplacingMergeTree ORDER BY version"
        )
        current = self._schema_version(client)
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(f"{self.path} has schema version {current}; this release knows {SCHEMA_VERSION}")
        for version, statements in MIGRATIONS:
            if version > current:
                for statement in statements:
                    client.execute(statement)
                client.execute("INSERT INTO schema_version SELECT %(version)s, now()", {"version": version})

    @property
    def schema_version(self) -> int:
        with self._client() as client:
            return self._schema_version(client)

    @staticmethod
    def _schema_version(client: Client) -> int:
        return int(client.execute("SELECT max(version) FROM schema_version")[0][0])

    # ---------------------------------------------------------------- ingest

    def add(self, project: str, events: Sequence[Event]) -> IngestResult:
        """Store a batch once: events already stored (looked up where the recent-ids filter cannot rule them out)
        are left out; a copy inserted anyway by a racing instance is collapsed by ``FINAL`` on every read."""
        unique = list({event["event_id"]: event for event in events}.values())
        if not unique:
            return IngestResult(accepted=0, duplicates=0)
        keys = [RecentIds.key(project, event["event_id"]) for event in unique]
        stamps = [event["timestamp_ns"] // 1000 for event in unique]
        with self._write:
            stored = self._already_stored(project, unique, keys, stamps)
            new = [event["event_id"] not in stored for event in unique]
            fresh = [event for event, is_new in zip(unique, new, strict=True) if is_new]
            if fresh:
                with self._client() as client:
                    client.execute(
                        f"INSERT INTO events (project, {', '.join(name for name, _ in _COLUMNS)}) VALUES",
                        _columns(project, fresh),
                        columnar=True,
                    )
            self._mark(project, stamps)
            self._recent_ids.remember((k, ts) for k, ts, is_new in zip(keys, stamps, new, strict=True) if is_new)
        accepted = sum(new)
        return IngestResult(accepted=accepted, duplicates=len(events) - accepted)

    def _mark(self, project: str, stamps: Sequence[int]) -> None:
        """The hours of the events at ``stamps`` (µs) marked dirty, once they are stored: those of every event of a
        batch, stored now or before (a retry marks what an instance that stopped between its insert and its mark did
        not), so that an acknowledged event is never missing from a rolled-up panel."""
        hours = sorted({ts // _HOUR * 3600 for ts in stamps})
        with self._client() as client:
            client.execute(_MARK, {"project": project, "hours": hours})

    def _already_stored(self, project: str, events: list[Event], keys: list[int], stamps: list[int]) -> set[str]:
        """The ids of ``events`` the table holds, looked up only for those the filter of recent ids cannot rule out;
        an event's id fixes its timestamp, so only their time range is read. Looked up ``LOOKUP_IDS`` at a time:
        a query's text is bounded (``max_query_size``, 256 KiB by default)."""
        candidates = sorted(
            (ts, event["event_id"])
            for event, key, ts in zip(events, keys, stamps, strict=True)
            if self._recent_ids.may_be_stored(key, ts)
        )
        found: set[str] = set()
        for offset in range(0, len(candidates), LOOKUP_IDS):
            chunk = candidates[offset : offset + LOOKUP_IDS]
            low, high = chunk[0][0], chunk[-1][0]
            with self._client() as client:
                rows = client.execute(
                    "SELECT DISTINCT event_id FROM events WHERE project = %(project)s AND ts_us >= %(low)s"
                    " AND ts_us <= %(high)s AND at >= toDateTime(%(low_s)s) AND at <= toDateTime(%(high_s)s)"
                    " AND event_id IN %(ids)s",
                    {
                        "project": project,
                        "low": low,
                        "high": high,
                        "low_s": low // 1_000_000,
                        "high_s": high // 1_000_000,
                        "ids": tuple(event_id for _, event_id in chunk),
                    },
                )
            found.update(row[0] for row in rows)
        return found

    # ---------------------------------------------------------------- panels

    def panel(
        self, project: str, name: str, window: Window, slice: Slice = Slice(), **params: Any
    ) -> list[dict[str, Any]]:
        low, high = _scope(name, window, self._gap)
        if high is None:
            return self._panel(project, name, window, slice, params)
        # The state of the hours its reads take (and of the 7 days before its end: the slo panel's tiers), read once.
        low = None if low is None else max(_floor_hour(min(low, high - 7 * _DAY)) - self._reach, 0)
        with self._holding(project, low, _ceil_hour(high) + self._reach):
            if name == "sessions":
                return self._newest_sessions(project, window, slice, params)
            return self._panel(project, name, window, slice, params)

    def _newest_sessions(
        self, project: str, window: Window, slice: Slice, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The ``sessions`` panel, read as over the window's last hour first, then its last 4, then all of it: when
        the newest ``limit`` sessions of a try all began ``gap`` or more after its start, they are the window's newest,
        with the same figures and names. Each is a whole run (its events since ``gap`` before it were read, and none is
        within ``gap`` before its first); every run they do not hold began before the last of them; a stateful
        session's name is its id alone when its group has no event before its run, in either read. (Longer tries
        cost more, when they fail, than they save.)"""
        start = _us(window.start)
        for hours in (1, 4):
            low = _us(window.end) - hours * _HOUR
            if low <= start:
                break
            rows = self._panel(project, "sessions", Window(_at(low), window.end), slice, params, after=low + self._gap)
            if rows:
                return rows
        return self._panel(project, "sessions", window, slice, params)

    def _panel(
        self,
        project: str,
        name: str,
        window: Window,
        slice: Slice,
        params: dict[str, Any],
        p95: dict[str, float] | None = None,
        after: int | None = None,
    ) -> list[dict[str, Any]]:
        """``panel``; ``p95``: the ``slo`` panel's tools' p95 over the 7 days up to the window's end, if known;
        ``after`` (µs): none of the ``sessions`` panel unless its newest ``limit`` runs all began then or later."""
        sql, anchor = store.panel_query(name, str(params.get("session") or ""), _QUERIES, _SESSION_TIMELINES)
        read = self._read(project, name, window, slice)
        # The caller's values first: the project's, the window's and its clean hours' win over them.
        values = {**_DEFAULTS, **{k: v for k, v in params.items() if v is not None}} | read.values
        values |= {
            "now": _us(datetime.now(UTC)), "anchor": anchor or "", "token_bytes": BYTES_PER_TOKEN,
            "token_price": self.prices.default, "priced_tools": list(self.prices.per_tool),
            "tool_prices": list(self.prices.per_tool.values()), "q": values["q"] or "", "session": values["session"] or "",
            "slo_targets": sorted(set(self.slos.tiers.values())),
        }  # fmt: skip
        if name in ("timeseries", "trends") and values["bucket"] is None and window.start <= EPOCH:
            # "All" starts in 1970: its buckets start at the project's first event instead.
            first = self._first_event(project, slice, read, _bounded(values))
            if first is not None:
                values["start"] = _us(first.replace(second=0, microsecond=0))
        bucket, origin = store.time_buckets(_at(values["start"]), window.end, values["bucket"])
        values |= {"bucket": bucket // timedelta(microseconds=1), "origin": _us(origin)}
        quartered = name == "trends" and values["bucket"] in _QUARTERS
        # buckets of whole hours hold hours (``_BUCKETED``), those of 15 and 30 minutes quarter hours (``trends``)
        read = read._replace(rolled=read.rolled and (name not in _BUCKETED or not bucket % store.HOUR or quartered))
        values = _bounded(values)
        if read.rolled:
            sql = _QUARTERED_TRENDS if quartered else _ROLLED_PANELS[name]
        recent = read.source
        if read.rolled and name == "sessions":
            low = self._singles_from(values)
            recent, bounded = _events(slice, project, (low, read.scope[1]), read.doubled, bound="recent")
            values |= bounded
            chosen = self._run(_CANDIDATES.format(edges=read.edges, recent=recent), values)
            values["candidates"] = tuple(row["grp"] for row in chosen) or (0,)
        if name == "session" and not anchor and self.rollups:
            source, held = self._timeline(project, values["session"], slice, read.doubled)
            read, values = read._replace(source=source), values | held
        if name in _NEWEST:
            return self._newest(sql, project, slice, read, values)
        rows = self._run(sql.format(events=read.source, edges=read.edges, recent=recent), values)
        if name == "slo":
            rows = self._attainment(project, window, slice, rows, values, p95)
        elif name == "sessions":
            if after is not None and (len(rows) < values["limit"] or rows[-1]["run_from"] < after):
                return []
            rows = self._sessions(
                rows, values, lambda low: self._source(slice, project, (low, read.scope[1]), read.doubled)
            )
        return rows

    def _timeline(self, project: str, session: str, slice: Slice, doubled: list[int]) -> tuple[str, dict[str, Any]]:
        """The events a session's timeline (by its id) reads, and the values they name: not the project's whole
        history but the hours the session can be in: the clean whole hours whose runs (``rollup_runs``) hold it, and
        every hour that is not clean (dirty, not rolled yet, or not yet ended)."""
        dirty, clean = self._clean(project, Window(EPOCH, datetime.now(UTC)))
        values = clean | {"project": project, "session": session}
        held = [row["held"] for row in self._run(_SESSION_HOURS, values)]
        dirty += "".join(f" OR {_between(low, high)}" for low, high in _ranges(held))
        source, scoped = _events(slice, project, (None, None), doubled, _not_clean(dirty))
        return source, values | scoped

    def _first_event(self, project: str, slice: Slice, read: _Read, values: dict[str, Any]) -> datetime | None:
        """The first of the events ``read`` over its window (``_FIRST_EVENT``), looked for in the project's first hour
        with events first (the first it marked: every insert marks its hours), and only if none is there in them all."""
        (first,) = self._run(_FIRST_MARK, {"project": project})
        hour = [] if first["hour"] is None else [(first["hour"] * 1_000_000, first["hour"] * 1_000_000 + _HOUR)]
        for scope in (*hour, read.scope):
            source, bounded = self._source(slice, project, scope, read.doubled, bound="first")
            found = self._run(_FIRST_EVENT.format(events=source), values | bounded)[0]["first"]
            if found is not None:
                return found
        return None

    def _newest(
        self, sql: str, project: str, slice: Slice, read: _Read, values: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """The rows of a listing of the window's newest ``limit`` (``_NEWEST``'s ``sql``), read from the window's last
        hour first, then from its last 8 and 64, then from all of it: a range that holds ``limit`` of them up to the
        window's end holds its newest ``limit`` (those outside it are older than every one in it)."""
        for hours in (1, 8, 64):
            low = values["end"] - hours * _HOUR
            if low <= values["start"]:
                break
            source, bounded = self._source(slice, project, (low, read.scope[1]), read.doubled, bound="newest")
            rows = self._run(sql.format(events=source), values | bounded)
            if len(rows) >= values["limit"]:
                return rows
        return self._run(sql.format(events=read.source), values)

    def _read(self, project: str, name: str, window: Window, slice: Slice) -> _Read:
        """What the panel ``name`` reads over ``window`` (``_Read``): its clean hours first (``_clean``, which rolls
        first if many hours are dirty), then the hours of its scope that may hold second copies (``_doubled``)."""
        rolled = self._rolled(name, window, slice)
        reach = Window(EPOCH, window.end) if name in _HISTORY_BEFORE_THE_WINDOW else window
        dirty, clean = self._clean(project, reach, name in _DAILY_READS, _us(window.start)) if rolled else ("", {})
        scope = _scope(name, window, self._gap)
        doubled = self._doubled(project, scope)
        source, values = self._source(slice, project, scope, doubled)
        edges = _events(slice, project, scope, doubled, _not_clean(dirty))[0] if rolled else ""
        values |= clean | {"project": project, "start": _us(window.start), "end": _us(window.end), "gap": self._gap}
        return _Read(rolled, source, edges, values, scope, doubled)

    def _source(
        self, slice: Slice, project: str, scope: tuple[int | None, int | None], doubled: list[int], bound: str = "scope"
    ) -> tuple[str, dict[str, Any]]:
        """What a panel reads as its events (``_events``). Of a slice by failure origin, which only events with one
        match, the clean whole hours of ``scope`` from their copies in ``rollup_failed`` (as many rows as failures), the
        rest (the partial hours at its edges, the dirty hours) from the events; a scope of ``_RAW_SPAN`` or less all
        from the events."""
        low, high = scope
        if not (self.rollups and slice.origin) or (low is not None and high is not None and high - low <= _RAW_SPAN):
            return _events(slice, project, scope, doubled, bound=bound)
        reach = Window(_at(low or 0), datetime.now(UTC) if high is None else _at(high))
        dirty, clean = self._clean(project, reach)
        prefix = f"{bound}_"
        source, values = _events(
            slice, project, scope, doubled, _not_clean(dirty, prefix), bound, copies=_clean_hours(prefix)
        )
        return source, values | {prefix + name: value for name, value in clean.items()}

    def _singles_from(self, values: dict[str, Any]) -> int:
        """When (µs) the newest ``limit`` of the window's events of no group began at the latest, by the clean whole
        hours' counts (``rollup_people``): the start of the newest hour from which on they hold ``limit``; else the
        window's start. (The ``sessions`` panel reads its events of no group from then on, not over the window.)"""
        counts = self._run(
            f"""SELECT toUInt32(hour) AS hour, sum(events) AS n FROM rollup_people WHERE {_CLEAN} AND grouped = 0
            GROUP BY hour ORDER BY hour DESC""",
            values,
        )
        held = 0
        for row in counts:
            held += row["n"]
            if held >= values["limit"]:
                return row["hour"] * 1_000_000
        return values["start"]

    def _rolled(self, name: str, window: Window, slice: Slice) -> bool:
        """Whether the panel ``name`` reads the rollups: those it has, unsliced, over a window with a whole hour (and,
        ``_BUCKETED``, in time buckets of whole hours: ``panel`` checks)."""
        return (
            self.rollups
            and name in _ROLLED_PANELS
            and not slice
            and _floor_hour(_us(window.end)) > _ceil_hour(_us(window.start))
        )

    def _clean(
        self, project: str, window: Window, daily: bool = False, cut: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        """What ``_COUNTED`` reads over ``window``: its whole hours (``[whole_start_s, whole_end_s)``), the clean ones
        with the roll that made each clean, and ``OR`` the ranges of its dirty ones; rolled up first if there are more
        than ``ROLL_AT_READ`` dirty ones; ``daily`` (for ``_DAILY``), its days compacted from those rolls. Hours never
        marked have no events (every insert marks its hours). ``cut`` (µs): the panel's start, whose hour, unless it
        begins there, is read from the events as a dirty one: of a window from there, it is a partial hour anyway; a
        read of the history up to the window's end splits its hours there."""
        start, end = _ceil_hour(_us(window.start)), _floor_hour(_us(window.end))
        reach = (max(start - self._reach, 0), end + self._reach)
        near = self._hours(project, *reach)
        if sum(not self._is_clean(row) for row in near if start <= row["hour"] < end) > ROLL_AT_READ:
            self.roll(project)
            near = self._hours(project, *reach)
        state = [row for row in near if start <= row["hour"] < end]
        split = None if cut is None or cut % _HOUR == 0 else _floor_hour(cut)
        clean = sorted((row["hour"], row["roll"]) for row in state if self._is_clean(row) and row["hour"] != split)
        dirty = sorted(row["hour"] for row in state if not self._is_clean(row) or row["hour"] == split)
        compacted = self._compacted(project, state, start, end) if daily else []
        return "".join(f" OR (at >= toDateTime({low}) AND at < toDateTime({high}))" for low, high in _ranges(dirty)), {
            "whole_start_s": start,
            "whole_end_s": end,
            "clean_hours": [hour for hour, _ in clean] or [0],
            "clean_rolls": [roll for _, roll in clean] or [0],
            "lone_hours": self._lone(project, near, [hour for hour, _ in clean]) or (0,),
            "compacted_days": [day for day, _ in compacted] or [0],
            "compactions": [compaction for _, compaction in compacted] or [0],
            "compacted_from_s": compacted[0][0] if compacted else start,
            "compacted_to_s": compacted[-1][0] + 86400 if compacted else start,
        }

    def _lone(self, project: str, near: list[dict[str, Any]], clean: list[int]) -> tuple[int, ...]:
        """Of the ``clean`` hours of ``project``, those whose whole runs (``rollup_runs.lone``) are whole still (``_joinable``; ``near``:
        the ``_STATE`` rows of the hours within the session timeout of them)."""
        rows = {(row["project"], row["hour"]): row for row in near}
        return tuple(hour for hour in clean if not self._joinable(rows, rows[project, hour]))

    def _joinable(self, rows: dict[tuple[str, int], dict[str, Any]], state: dict[str, Any]) -> list[dict[str, Any]]:
        """The hours within the session timeout of a clean hour (its ``_STATE`` row ``state``; ``rows``: theirs, by
        project and hour) marked since its roll began: an event stored there since may have joined one of its whole
        runs to theirs (``roll`` cuts them anew once those hours are clean)."""
        hour, reach = state["hour"], self._reach
        others = range(hour - reach, hour + 3600 + reach, 3600)
        near = (rows.get((state["project"], other)) for other in others if other != hour)
        return [row for row in near if row is not None and row["marked"] >= state["began"]]

    def _compacted(self, project: str, state: list[dict[str, Any]], start: int, end: int) -> list[tuple[int, int]]:
        """The whole days from ``start`` to ``end`` (seconds) whose hours (``state``: their ``_STATE`` rows) are all clean
        and were compacted from the rolls that made them clean, each with its newest such compaction: the longest run
        of consecutive ones (the first), so that the other hours are two ranges of ``hour`` (``_rolled_timings``), which
        the table's key finds without reading the days' hours."""
        days = {
            day: _digest(*hours) for (_, day), hours in self._clean_days(state, end - 86400).items() if day >= start
        }
        if not days:
            return []
        recorded = self._run(_COMPACTIONS, {"project": project, "start": start, "end": end})
        found = sorted((row["day"], row["newest"]) for row in recorded if days.get(row["day"]) == row["rolls"])
        runs: list[list[tuple[int, int]]] = []
        for day in found:
            if runs and runs[-1][-1][0] + 86400 == day[0]:
                runs[-1].append(day)
            else:
                runs.append([day])
        return max(runs, key=len, default=[])

    def _is_clean(self, state: dict[str, Any]) -> bool:
        """Whether an hour's rollups (its ``_STATE`` row) answer for its events: its last recorded roll began after its
        last mark, cut the runs by this store's session timeout and wrote every rollup this release reads."""
        return state["began"] > state["marked"] and state["gap"] == self._gap and state["schema"] >= ROLLS_SINCE

    @property
    def _gap(self) -> int:
        """The session timeout, in µs."""
        return self.session_timeout // timedelta(microseconds=1)

    @property
    def _reach(self) -> int:
        """How far (seconds, whole hours) from an hour an event can be in a run with one of the hour's."""
        return _ceil_hour(self._gap)

    def _doubled(self, project: str, scope: tuple[int | None, int | None]) -> list[int]:
        """The hours (seconds, sorted) of ``project`` in ``scope`` (µs, ``_scope``) that may hold a second copy of an
        event: stored (marked) since the last roll that found none in them, or never so found. Hours never marked hold
        no events (every insert marks its hours)."""
        low, high = scope
        state = self._hours(
            project, None if low is None else _floor_hour(low), None if high is None else _ceil_hour(high)
        )
        return sorted(row["hour"] for row in state if row["single"] <= row["marked"])

    def _hours(self, project: str, low: int | None = None, high: int | None = None) -> list[dict[str, Any]]:
        """The ``_STATE`` rows of the hours of ``project`` in ``[low, high)`` (seconds; None: unbounded): of those this
        thread holds (``_holding``) if they hold them, else read."""
        held = getattr(self._local, "held", None)
        if held is not None and held.holds(project, low, high):
            return [
                row for row in held.rows if (low is None or row["hour"] >= low) and (high is None or row["hour"] < high)
            ]
        return self._read_hours(project, low, high)

    def _read_hours(self, project: str | None, low: int | None, high: int | None) -> list[dict[str, Any]]:
        """The ``_STATE`` rows of the hours of ``project`` (None: of every project) in ``[low, high)``, read."""
        where = "1" if project is None else "project = %(project)s"
        where += "" if low is None else f" AND hour >= toDateTime({low})"
        where += "" if high is None else f" AND hour < toDateTime({high})"
        return self._run(_STATE.format(where=where), {"project": project or ""})

    @contextmanager
    def _holding(self, project: str, low: int | None = None, high: int | None = None) -> Iterator[None]:
        """The block's reads of the state of ``project``'s hours in ``[low, high)`` (``_hours``) from one read of them,
        as of the block's start (as each read was as of its own): an evaluation of the alert rules reads a dozen
        windows', a panel two to five. A roll in the block (``_clean``'s) reads them anew."""
        outer = getattr(self._local, "held", None)
        if outer is not None and outer.holds(project, low, high):
            yield
            return
        self._local.held = _Held(project, low, high, self._read_hours(project, low, high))
        try:
            yield
        finally:
            self._local.held = outer

    def roll(self, project: str | None = None) -> int:
        """Count the dirty hours that have ended (of ``project``, else of every project; and those whose runs were cut
        by another session timeout) anew from the events, ``ROLL_HOURS`` at a time: each time the server's ``now()``
        first (R, in the roll's id), then the counts written with the roll's id, then their hours recorded as rolled by
        it. Any instance may roll any hour at any time, twice at once too: each roll writes complete counts of what it
        read, under its own id, and an insert it may have missed marked its hours at R or later (dirty). Then the clean
        hours whose whole runs an event stored since may have joined (``_joinable``) once those hours are clean too;
        then the ended days whose hours are all clean are compacted (``_compact``) and the rows of superseded rolls and
        compactions deleted (``_drop_superseded``). Returns how many hours were rolled."""
        ended = self._now() - 3600
        state = self._state(project)
        rolled = self._roll_hours(row for row in state if not self._is_clean(row) and row["hour"] <= ended)
        state = self._state(project) if rolled else state  # as the rolls left it
        rows = {(row["project"], row["hour"]): row for row in state}
        joined = [row for row in state if self._is_clean(row) and self._rejoin(rows, row)]
        rolled += self._roll_hours(joined)
        self._compact(project)
        self._drop_superseded()
        held = getattr(self._local, "held", None)
        if held is not None:  # a roll within ``_holding``: the hours as it left them
            self._local.held = held._replace(rows=self._read_hours(held.project, held.low, held.high))
        return rolled

    def _rejoin(self, rows: dict[tuple[str, int], dict[str, Any]], state: dict[str, Any]) -> bool:
        """Whether to roll a clean hour (``state``) anew: hours near it were marked since its roll (``_joinable``),
        and all of them are clean (rolled since)."""
        others = self._joinable(rows, state)
        return bool(others) and all(self._is_clean(other) for other in others)

    def _roll_hours(self, state: Iterable[dict[str, Any]]) -> int:
        """The hours of ``state`` (``_STATE`` rows) rolled, per project, ``ROLL_HOURS`` at a time; how many."""
        hours: dict[str, list[int]] = {}
        for row in state:
            hours.setdefault(row["project"], []).append(row["hour"])
        for owner, owned in hours.items():
            owned.sort()
            for offset in range(0, len(owned), ROLL_HOURS):
                chunk = owned[offset : offset + ROLL_HOURS]
                roll = self._new_roll()
                self._count(owner, chunk, roll)
                self._rolled_at(owner, chunk, roll)
        return sum(len(owned) for owned in hours.values())

    def _compact(self, project: str | None) -> None:
        """Every day that has ended (of ``project``, else of every project) whose hours with events are all clean, and
        that is not yet recorded as compacted from those hours' rolls: its hours' timings summed into the day's rows
        (``rollup_timings_days``) under a new id, then recorded (``rollup_days``: the id and the digest of the rolls
        they were summed from, which a read compares with the rolls it reads the hours by)."""
        days = self._clean_days(self._state(project), self._now() - 86400)
        if not days:
            return
        known = {
            (row["project"], row["day"], row["rolls"])
            for row in self._run(
                "SELECT DISTINCT project, toUInt32(day) AS day, rolls FROM rollup_days WHERE day >= toDateTime(%(low)s)",
                {"low": min(day for _, day in days)},
            )
        }
        for (owner, day), (hours, rolls) in sorted(days.items()):
            digest = _digest(hours, rolls)
            if (owner, day, digest) in known:
                continue
            compaction = self._new_roll()
            values = {"project": owner, "day": day, "hours": hours, "rolls": rolls, "compaction": compaction,
                      "rolls_digest": digest}  # fmt: skip
            with self._client() as client:
                client.execute(_COMPACT, values)
                client.execute(_COMPACTED, values)

    def _state(self, project: str | None = None) -> list[dict[str, Any]]:
        """The ``_STATE`` rows of every hour of ``project``, else of every project, read."""
        return self._read_hours(project, None, None)

    def _clean_days(
        self, state: list[dict[str, Any]], until: int
    ) -> dict[tuple[str, int], tuple[list[int], list[int]]]:
        """The days (seconds) that begin by ``until`` among the ``_STATE`` rows ``state`` whose every hour is clean, per
        project and day: its hours and the roll that made each clean. ``state`` holds every hour with events of a
        day it has any of."""
        hours: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in state:
            hours.setdefault((row["project"], row["hour"] - row["hour"] % 86400), []).append(row)
        return {
            key: ([row["hour"] for row in rows], [row["roll"] for row in rows])
            for key, rows in hours.items()
            if key[1] <= until and all(self._is_clean(row) for row in rows)
        }

    def _now(self) -> int:
        """The server's time, in seconds: what marks and rolls are compared by."""
        with self._client() as client:
            return int(client.execute("SELECT toUInt32(now())")[0][0])

    def _new_roll(self) -> int:
        """A new roll's id: the server's time (``_now``) and random bits (``_ROLL_BITS``)."""
        return self._now() << _ROLL_BITS | random.getrandbits(_ROLL_BITS)

    def _count(self, project: str, hours: Sequence[int], roll: int) -> None:
        """``hours`` (sorted, seconds) of ``project`` counted from the events by the roll ``roll``, their runs cut into
        pieces, and checked for second copies."""
        near = sorted({hour + step for hour in hours for step in range(-self._reach, self._reach + 1, 3600)})
        values = {"project": project, "hours": tuple(hours), "roll": roll, "began": roll >> _ROLL_BITS,
                  "low_s": hours[0], "high_s": hours[-1] + 3600, "gap": self._gap, "near_hours": tuple(near),
                  "near_low_s": near[0], "near_high_s": near[-1] + 3600}  # fmt: skip
        with self._client() as client:
            client.execute(_ROLL, values)
            client.execute(_CUT, values)
            client.execute(_TIME, values)
            client.execute(_QUARTER, values)
            client.execute(_USE, values)
            client.execute(_OUTCOME, values)
            client.execute(_LIST, values)
            client.execute(_SEE, values)
            client.execute(_COPY, values)
            client.execute(_SINGLE, values)

    def _rolled_at(self, project: str, hours: Sequence[int], roll: int) -> None:
        """``hours`` of ``project`` recorded as rolled by the roll ``roll``, once its counts are written."""
        with self._client() as client:
            client.execute(_ROLLED, {"project": project, "hours": list(hours), "roll": roll, "gap": self._gap})

    def _drop_superseded(self) -> None:
        """The rows of rolls older than an hour's newest recorded roll deleted, where that roll began at least
        ``SUPERSEDED_AFTER`` seconds ago (a read that chose the older roll before it was recorded has long ended);
        and those of compactions older than the one a read of a day now takes (``_compacted``), recorded as long
        ago. Looked for at most once per ``SUPERSEDED_AFTER`` by an instance. ClickHouse deletes them in the
        background."""
        now = self._now()
        if now < self._dropped_at + SUPERSEDED_AFTER:
            return
        self._dropped_at = now
        before = {"before": now - SUPERSEDED_AFTER}
        rolls = {(row["project"], row["hour"]): row["kept"] for row in self._run(_SUPERSEDED, before)}
        self._drop_older(_ROLLUPS, "hour", "roll", rolls)
        current = {key: _digest(*hours) for key, hours in self._clean_days(self._state(), now - 86400).items()}
        compactions = {
            (row["project"], row["day"]): row["newest"]
            for row in self._run(_COMPACTIONS_BEFORE, before)
            if current.get((row["project"], row["day"])) == row["rolls"]
        }
        self._drop_older(("rollup_timings_days",), "day", "compaction", compactions)

    def _drop_older(self, tables: Sequence[str], at: str, id: str, kept: dict[tuple[str, int], int]) -> None:
        """The rows of ``tables`` written before the one ``kept`` (by ``id``) of each project and ``at`` (hour or day)
        deleted, where the first table holds any."""
        oldest = self._run(
            f"SELECT project, toUInt32({at}) AS at, min({id}) AS oldest FROM {tables[0]} GROUP BY project, at", {}
        )
        projects: dict[str, tuple[list[int], list[int]]] = {}
        for row in oldest:
            newest = kept.get((row["project"], row["at"]))
            if newest is not None and row["oldest"] < newest:
                times, ids = projects.setdefault(row["project"], ([], []))
                times.append(row["at"])
                ids.append(newest)
        with self._client() as client:
            for owner, (times, ids) in projects.items():
                for table in tables:
                    client.execute(
                        _DROP_SUPERSEDED.format(table=table, at=at, id=id),
                        {"project": owner, "hours": times, "kept": ids},
                    )

    def _run(self, sql: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of ``sql`` with the ``values`` it names, as dicts of the values the panels answer."""
        used = {name: values[name] for name in set(re.findall(r"%\((\w+)\)s", sql))}
        with self._client() as client:
            rows, columns = client.execute(sql, used, with_column_types=True)
        names = [column[0] for column in columns]
        return [{name: _answer(name, value) for name, value in zip(names, row, strict=True)} for row in rows]

    def _sessions(
        self, chosen: list[dict[str, Any]], values: dict[str, Any], since: Callable[[int], tuple[str, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """The ``sessions`` panel (``_SESSIONS``) of the runs the ``sessions`` query chose: the newest ``limit`` by their
        first event in the window (as DuckDB chooses them: at the same instant, by group and run). Two steps, so that
        the first holds only the instants of the window's grouped events, per group, and the second only the chosen
        runs' events (``since``: the panel's events from an instant on)."""
        if not chosen:
            return []
        columns = {"chosen_groups": "grp", "chosen_runs": "run", "chosen_from": "run_from", "chosen_to": "run_to",
                   "chosen_last": "last_run"}  # fmt: skip
        values = values | {name: [row[column] for row in chosen] for name, column in columns.items()}
        first, groups = min(values["chosen_from"]), tuple(set(values["chosen_groups"]))
        source, scoped = since(first)  # the panel's events from the first chosen run's first in the window on
        values |= scoped | {"first_chosen": first, "chosen_set": groups}
        earlier = _EARLIER_SESSIONS[False]
        if self.rollups:  # the sessions' earlier events: before the runs are cut from, clean hours from the rollups
            dirty, clean = self._clean(values["project"], Window(EPOCH, _at(max(values["start"] - values["gap"], 0))))
            earlier = _EARLIER_SESSIONS[True].format(dirty=dirty)
            values |= {f"before_{name}": value for name, value in clean.items()}
        return self._run(_SESSIONS.format(events=source, earlier=earlier), values)

    def _week_p95(self, project: str, week: Window, slice: Slice) -> dict[str, float]:
        """Each tool's p95 over ``week`` (the 7 days up to a window's end), read as a window of its own (from the
        rollups, whatever the window's length): the ``slo`` panel's tiers."""
        read = self._read(project, "slo", week, slice)
        sql = _WEEK_P95[read.rolled].format(events=read.source, edges=read.edges)
        return {row["tool"]: row["p95_ms"] for row in self._run(sql, _bounded(read.values))}

    def _attainment(
        self,
        project: str,
        window: Window,
        slice: Slice,
        rows: list[dict[str, Any]],
        values: dict[str, Any],
        p95: dict[str, float] | None,
    ) -> list[dict[str, Any]]:
        """The ``slo`` panel (``store.attainment``) from its read of ``window`` (``rows``: ``_slo_window``'s): each
        tool's tier by its ``p95`` over the 7 days up to the window's end (read by ``_week_p95`` unless known; the rows'
        own when the window is those 7 days), then its calls within the tier's target."""
        week = Window(window.end - timedelta(days=7), window.end)
        if p95 is None:
            p95 = (
                {row["tool"]: row["p95_ms"] for row in rows} if window == week else self._week_p95(project, week, slice)
            )
        baselines = [{"tool": row["tool"], "baseline_p95_ms": p95.get(row["tool"])} for row in rows]
        targets = values["slo_targets"]

        def calls(tools: list[str], tiers: list[float]) -> list[dict[str, Any]]:
            target = dict(zip(tools, tiers, strict=True))
            return [row | {"within": row["within"][targets.index(target[row["tool"]])]} for row in rows]

        return store.attainment(self.slos, baselines, calls, values["limit"])

    # ---------------------------------------------------------------- alerts (``alerts.Engine``)

    def deviations(self, project: str, now: datetime, rules: Rules) -> list[Alert]:
        """What the rules find in ``project`` at ``now``: one ``Alert`` per rule and subject."""
        with self._holding(project):
            return self._deviations(project, now, rules)

    def _deviations(self, project: str, now: datetime, rules: Rules) -> list[Alert]:
        """The rules' reads two at a time (``_together``): the p95s that ``latency_spike`` and ``slo_burn`` compare
        with beside the other rules, then those two."""
        stamp = _us(now)
        values = {"project": project, "now": stamp, **asdict(rules)}
        doubled = self._doubled(project, (stamp - max(_LOOKBACK.values()), stamp))
        seen = self._read(project, "new_clients", Window(EPOCH, now), Slice())
        values |= seen.values
        seen_sql = _ROLLED_SEEN.format(edges=seen.edges) if seen.rolled else _seen(seen.source)
        destructive = _DESTRUCTIVE
        if self.rollups:
            dirty, clean = self._clean(project, Window(now - timedelta(days=7), now))
            destructive = _ROLLED_DESTRUCTIVE.format(dirty=dirty)
            values |= {f"listed_{name}": value for name, value in clean.items()}

        def found(rule: str) -> list[Alert]:
            sql, window, text = _DEVIATIONS[rule]
            lookback = (stamp - _LOOKBACK[rule], stamp)
            if rule in _FAILED_ONLY:  # their clean hours' failures from their copies
                source, scoped = self._source(_FAILED_ONLY[rule], project, lookback, doubled, bound="lookback")
            else:
                within = _same_hours(stamp) if rule == "volume_spike" else ""
                source, scoped = _events(Slice(), project, lookback, doubled, within, bound="lookback")
            rows = self._run(sql.format(events=source, seen=seen_sql, destructive=destructive), values | scoped)
            return store.rule_alerts(rules, rule, window, text, rows)

        others = [rule for rule in _DEVIATIONS if rule != "latency_spike"]
        week = Window(now - timedelta(days=7), now)
        usual, p95, *alerts = self._together(
            lambda: self._usual_p95(project, now),
            lambda: self._week_p95(project, week, Slice()),  # the slo panel's tiers, for both of slo_burn's windows
            *(functools.partial(found, rule) for rule in others),
        )
        values |= {"usual_tools": list(usual), "usual_p95": list(usual.values())}
        spikes, hour, recent = self._together(
            lambda: found("latency_spike") if usual else [],  # no tool called the day before: none is slower than usual
            *(
                functools.partial(self._panel, project, "slo", window, Slice(), {"limit": 1_000_000}, p95)
                for window in store.burn_windows(now)
            ),
        )
        by_rule = dict(zip(others, alerts, strict=True)) | {"latency_spike": spikes}
        return [alert for rule in _DEVIATIONS for alert in by_rule[rule]] + store.slo_burn(hour, recent, rules)

    def _together(self, *reads: Callable[[], Any]) -> list[Any]:
        """The answers of ``reads``, ``READERS`` at a time on the store's reader threads, each read with the caller's
        hold on the hours (``_holding``). 18.16 analyses a statement on one core (30 to 100 ms for the rules'), so
        reads at once take about half as long on two. A reader's own reads run one after the other."""
        held = getattr(self._local, "held", None)
        if getattr(self._local, "reader", False):
            return [read() for read in reads]

        def run(read: Callable[[], Any]) -> Any:
            self._local.held, self._local.reader = held, True
            try:
                return read()
            finally:
                self._local.held = None

        return list(self._readers.map(run, reads))

    def _usual_p95(self, project: str, now: datetime) -> dict[str, float]:
        """Each tool's p95 over the 24 hours before the 15 minutes up to ``now`` (``latency_spike``'s usual), read as a
        window of its own (its whole hours from the rollups)."""
        usual = Window(now - timedelta(hours=24, minutes=15), now - timedelta(minutes=15))
        read = self._read(project, "slo", usual, Slice())
        sql = _USUAL_P95[read.rolled].format(events=read.source, edges=read.edges)
        rows = self._run(sql, _bounded(read.values))
        return {row["tool"]: row["p95"] for row in rows if row["p95"] is not None}  # None: no call timed

    def _version(self) -> int:
        """A row version newer than any this process wrote before (time-based, so other instances' too)."""
        self._versions = max(self._versions + 1, time.time_ns())
        return self._versions

    def record_alerts(self, project: str, found: Sequence[Alert], now: datetime) -> None:
        """Start an episode for each new rule and subject, refresh the firing ones, resolve those not found: each
        change is a newer version of the episode's row."""
        stamp = _us(now)
        with self._write, self._client() as client:
            columns = "id, project, rule, subject, state, since, resolved_at, observed, threshold, window_text, text"
            firing = {
                (row[2], row[3]): list(row)
                for row in client.execute(
                    f"SELECT {columns} FROM alerts FINAL WHERE project = %(project)s AND state = 'firing'",
                    {"project": project},
                )
            }
            rows = []
            found_again, resolved = store.episodes(firing, found)
            # New episodes' ids: distinct within the call (random ones collided about once in 70 calls of 6 new
            # alerts, and the table, keyed by id, kept one of the two), random across instances.
            suffix = random.randrange(1024)  # noqa: S311 - unique enough, not a secret
            for alert, known in found_again:
                row = known
                if row is None:
                    alert_id, suffix = stamp * 1024 + suffix % 1024, suffix + 1
                    row = [alert_id, project, alert.rule, alert.subject, "firing", stamp, None, 0.0, 0.0,
                           alert.window, ""]  # fmt: skip
                row[7:11] = [alert.observed, alert.threshold, row[9], alert.text]
                rows.append(row)
            for row in resolved:
                row[4], row[6] = "resolved", stamp
                rows.append(row)
            if rows:
                client.execute(
                    f"INSERT INTO alerts ({columns}, version) VALUES", [(*row, self._version()) for row in rows]
                )

    def undelivered(self, webhooks: Sequence[str], not_before: datetime = EPOCH) -> list[tuple[int, Transition, str]]:
        """Transitions some webhook has not received: since ``not_before`` (a webhook added later is not sent the
        past), or tried before and failed fewer than ``MAX_DELIVERY_ATTEMPTS`` times."""
        if not webhooks:
            return []
        rows = self._run(_UNDELIVERED, {"urls": list(webhooks), "attempts": MAX_DELIVERY_ATTEMPTS,
                                        "not_before": _us(not_before)})  # fmt: skip
        return store.transitions(rows)

    def delivered(self, alert_id: int, state: str, url: str, ok: bool) -> None:
        with self._write, self._client() as client:
            before = client.execute(
                "SELECT attempts FROM alert_deliveries FINAL WHERE alert_id = %(id)s AND state = %(state)s"
                " AND url = %(url)s",
                {"id": alert_id, "state": state, "url": url},
            )
            attempts = (before[0][0] if before else 0) + 1
            client.execute(
                "INSERT INTO alert_deliveries (alert_id, state, url, delivered, attempts, version) VALUES",
                [(alert_id, state, url, int(ok), attempts, self._version())],
            )

    def alerts(self, project: str, state: str = "all", limit: int = 1000) -> list[dict[str, Any]]:
        """The project's alerts, newest first: ``firing``, ``resolved`` or ``all``."""
        return self._run("""
            SELECT rule, subject, state, since, resolved_at, observed, threshold, window_text AS window, text
            FROM alerts FINAL WHERE project = %(project)s AND (%(state)s = 'all' OR state = %(state)s)
            ORDER BY since DESC, id DESC LIMIT %(limit)s""", {"project": project, "state": state, "limit": limit})  # fmt: skip

    # ---------------------------------------------------------------- retention, erasure

    def delete(self, project: str | None, *, before: datetime | None = None, user_id: str | None = None) -> int:
        """Counted, then deleted: retention (every project's events before a time) drops the whole days before it
        (partitions, at no cost) and deletes the rest of its day by a mutation; other deletions are mutations.
        ClickHouse applies a mutation in the background: this call waits for it, so the next read no longer sees
        the events. (ClickHouse 18.16 has no ``TTL``: the API's hourly retention does its work on every release.)
        The rollups of the days dropped are dropped with them; every hour that lost events is then marked dirty (read
        raw until rolled: the next roll counts what is left, and its version hides the rows of keys deleted)."""
        where, values = store.deletion(("project = %(project)s", project),
                                       ("ts_us < %(before)s", before and _us(before)),
                                       ("user_id = %(user)s", user_id))  # fmt: skip
        with self._write, self._client() as client:
            count = int(client.execute(f"SELECT count() FROM events FINAL WHERE {where}", values)[0][0])
            touched = client.execute(
                f"SELECT DISTINCT project, toUInt32(toStartOfHour(at)) FROM events WHERE {where}", values
            )
            if count and before is not None and project is None and user_id is None:
                for table in ("events", *_ROLLUP_TABLES):
                    for day in self._days_before(client, before, table):
                        client.execute(f"ALTER TABLE {table} DROP PARTITION {day}")
            if count and client.execute(f"SELECT count() FROM events WHERE {where}", values)[0][0]:
                # ifNull: 18.16 deletes the rows a mutation's condition is NULL for (user_id NULL for a user's)
                client.execute(f"ALTER TABLE events DELETE WHERE ifNull({where}, 0)", values)
                self._wait_for_mutations(client)
                # and their copies (whole events: messages, content), not left until their roll is superseded
                client.execute(f"ALTER TABLE rollup_failed DELETE WHERE ifNull({where}, 0)", values)
                self._wait_for_mutations(client, table="rollup_failed")
        hours: dict[str, list[int]] = {}
        for owner, hour in touched:
            hours.setdefault(owner, []).append(int(hour) * 1_000_000)
        for owner, stamps in hours.items():
            self._mark(owner, stamps)
        return count

    @staticmethod
    def _days_before(client: Client, before: datetime, table: str = "events") -> list[int]:
        """The partitions (days, ``YYYYMMDD``) of ``table`` that hold only rows of hours before ``before``."""
        cutoff = int(before.astimezone(UTC).strftime("%Y%m%d"))
        parts = client.execute(
            "SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = %(table)s"
            " AND active",
            {"table": table},
        )
        return sorted(int(day) for (day,) in parts if int(day) < cutoff)

    @staticmethod
    def _wait_for_mutations(client: Client, timeout: float = 300.0, table: str = "events") -> None:
        deadline = time.monotonic() + timeout
        while client.execute(
            "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = %(table)s"
            " AND is_done = 0",
            {"table": table},
        )[0][0]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"ClickHouse has not finished deleting from {table} in {timeout:g} s")
            time.sleep(0.05)

    def projects(self) -> list[str]:
        """The projects with events in this store."""
        with self._client() as client:
            return [row[0] for row in client.execute("SELECT DISTINCT project FROM events ORDER BY project")]

    def close(self) -> None:
        readers, self._readers = self._readers, ThreadPoolExecutor(READERS, "mcp-analytics-reader")
        readers.shutdown()
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.disconnect()
        self._local = threading.local()


def _bounded(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the window's bounds also in seconds (``at``, the partition and sorting key's column)."""
    start, end = values["start"], values["end"]
    return values | {
        "start_s": max(start // 1_000_000, 0),
        "end_s": end // 1_000_000,
        "scope_s": max((start - values["gap"]) // 1_000_000, 0),
    }


def _columns(project: str, events: Sequence[Event]) -> list[list[Any]]:
    """``events`` as the insert's columns (validated and defaulted as the DuckDB store stores them)."""
    table = to_arrow(project, events)
    columns: list[list[Any]] = [table.column("project").to_pylist()]
    for name, _ in _COLUMNS:
        if name == "ts_us":
            columns.append([event["timestamp_ns"] // 1000 for event in events])
            continue
        values = table.column(name).to_pylist()
        if name in _LISTS:
            values = [value or [] for value in values]
        elif name in _FLAGS or name == "is_error":
            values = [int(bool(value)) for value in values]
        columns.append(values)
    return columns

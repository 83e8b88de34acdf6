"""Validated events as the columns of the store's ``events`` table, in an Arrow table that DuckDB scans in place.

Arrow converts the events' dicts in native code (several times cheaper than
handing DuckDB a JSON document to parse or a row of Python values per event);
the defaults of ``models.DEFAULTS`` fill what an event left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from mcp_analytics.models import DEFAULTS, Event

_TEXT = pa.string()
_NAMES = pa.list_(pa.string())
_EVENT = pa.schema([
    ("event_id", _TEXT), ("type", _TEXT), ("timestamp_ns", pa.int64()), ("duration_ms", pa.float64()), ("kind", _TEXT),
    ("session_id", _TEXT), ("stateless", pa.bool_()), ("resource", _TEXT), ("intent", _TEXT), ("user_id", _TEXT),
    ("user_name", _TEXT), ("client_name", _TEXT), ("client_version", _TEXT), ("server_name", _TEXT),
    ("server_version", _TEXT), ("protocol_version", _TEXT), ("transport", _TEXT), ("is_error", pa.bool_()),
    ("error", pa.struct([("type", _TEXT), ("message", _TEXT), ("code", pa.int32())])),
    ("failure", pa.struct([("origin", _TEXT), ("reason", _TEXT)])),
    ("argument_keys", _NAMES), ("tools_listed", _NAMES), ("response_size", pa.int64()), ("upstream_ms", pa.float64()),
    ("content", _TEXT), ("custom", _TEXT), ("trace_id", _TEXT), ("span_id", _TEXT), ("user_data", _TEXT),
    ("caller_id", _TEXT), ("destructive_tools", _NAMES), ("prompts_listed", _NAMES),
])  # fmt: skip
"""``models.Event`` in Arrow types (``content``, ``custom`` and ``user_data`` are JSON text once validated)."""
_NESTED = {"error": ("type", "message", "code"), "failure": ("origin", "reason")}
"""Stored flat: ``error.type`` in ``error_type`` and so on."""


def to_arrow(project: str, events: Sequence[Event]) -> pa.Table:
    """``events`` of ``project`` with the ``events`` table's column names and types."""
    table = pa.Table.from_pylist(list(events), schema=_EVENT)
    columns = {name: table.column(name) for name in table.column_names if name not in _NESTED}
    for name, default in DEFAULTS.items():
        columns[name] = pc.fill_null(columns[name], pa.scalar(default, _EVENT.field(name).type))
    for parent, fields in _NESTED.items():
        for field in fields:
            columns[f"{parent}_{field}"] = pc.struct_field(table.column(parent), field)
    columns["ts"] = pc.divide(columns.pop("timestamp_ns"), 1000).cast(pa.timestamp("us"))
    columns["project"] = pa.array([project] * len(table), _TEXT)
    return pa.table(columns)

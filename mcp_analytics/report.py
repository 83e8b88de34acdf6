"""The dashboard's panels as plain-text tables, from a store file or a running API."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from mcp_analytics.store import Slice

Rows = list[dict[str, Any]]
Fetch = Callable[[str], Rows]
"""Rows of the named panel for the report's project and window."""

SECTIONS: list[tuple[str, str, Sequence[str]]] = [
    ("summary", "Overview", ("events", "failures", "success_rate", "tool_calls", "sessions", "users", "clients")),
    ("methods", "Methods and custom events", ("method", "events", "share")),
    ("tools", "Top tools", ("tool", "calls", "share", "errors", "error_rate", "p95_ms", "users")),
    ("latency", "Latency (ms; first row: every request)", ("tool", "calls", "p50_ms", "p95_ms", "p99_ms",
                                                          "own_p95_ms", "upstream_p95_ms", "upstream_share")),
    ("slo", "Latency SLOs per tool", ("tool", "tier", "target_ms", "calls", "p95_ms", "attainment", "met",
                                      "budget_remaining")),
    ("failures", "Failures by origin, then reason", ("origin", "reason", "failures", "example")),
    ("errors", "JSON-RPC error codes", ("code", "name", "errors", "methods", "origins", "example")),
    ("clients", "Clients", ("client", "events", "tool_calls", "failures", "sessions", "users")),
    ("users", "Users", ("user", "name", "events", "tool_calls", "failures", "sessions")),
    ("prompts", "Prompts and their argument shapes", ("prompt", "argument_keys", "uses", "failures")),
    ("arguments", "Argument shapes per tool and prompt", ("kind", "name", "argument_keys", "calls", "failures", "share")),
    ("cost", "Response size and estimated cost per tool and user", ("tool", "user", "calls", "response_bytes",
                                                                    "avg_response_bytes", "est_tokens", "est_cost")),
    ("unused_tools", "Tools not called in this window", ("tool", "last_called", "calls_before", "last_listed")),
    ("unused_prompts", "Prompts not used in this window", ("prompt", "last_used", "uses_before", "last_listed")),
    ("servers", "Servers", ("server", "versions", "events", "failures", "p95_ms", "clients", "users")),
    ("new_clients", "Clients first seen in this window", ("client", "versions", "first_seen", "events", "users")),
    ("intents", "Latest intents", ("ts", "intent", "tool", "user", "client")),
    ("sessions", "Sessions", ("session", "user", "client", "started", "duration_s", "events", "failures", "intents")),
]  # fmt: skip
MAX_CELL = 48


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        return value[:19].replace("T", " ")  # an ISO timestamp from the API
    if isinstance(value, list):
        return ", ".join(str(item) for item in value if item is not None) or "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:,.1f}"
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def table(rows: Rows, columns: Sequence[str]) -> str:
    if not rows:
        return "  (none)"
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  " + "  ".join(column.ljust(w) for column, w in zip(columns, widths, strict=True))]
    lines.append("  " + "  ".join("-" * w for w in widths))
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def render(fetch: Fetch, title: str) -> str:
    parts = [title, "=" * len(title)]
    for panel, heading, columns in SECTIONS:
        rows = fetch(panel)
        parts += ["", heading, table(rows, columns)]
        if panel == "methods" and rows and rows[0].get("calls_per_list") is not None:  # one figure, not a column
            parts.append(f"  tools/call per tools/list: {_cell(rows[0]['calls_per_list'])}")
    return "\n".join(parts)


def from_store(store: Any, project: str, window: Any, limit: int = 20, slice: Slice = Slice()) -> Fetch:
    return lambda panel: store.panel(project, panel, window, slice, limit=limit)


def from_api(
    url: str, api_key: str, last: str, limit: int = 20, slice: Slice = Slice(), timeout: float = 30.0
) -> Fetch:
    def fetch(panel: str) -> Rows:
        query = urllib.parse.urlencode({"last": last, "limit": limit, **slice.query()})
        request = urllib.request.Request(  # noqa: S310 (the user's own API)
            f"{url.rstrip('/')}/v1/panels/{panel}?{query}", headers={"Authorization": f"Bearer {api_key}"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (the user's own API)
            return json.load(response)["rows"]

    return fetch

"""Slicing: every panel over the events of a filter equals the same panel over a store holding only those events."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mcp_analytics.duckdb_store import DuckDBStore
from mcp_analytics.models import Event, validated_event
from mcp_analytics.store import DIMENSIONS, PANELS, Slice, Window

DAY = datetime(2026, 11, 20, tzinfo=UTC)
WINDOW = Window(DAY + timedelta(hours=6), DAY + timedelta(hours=20))  # events before it too: runs, listings
TOOLS = ["search", "fetch", "delete_repo"]
CLIENTS = ["Claude Desktop", "Cursor", None]
USERS = ["alice", "bob", None]
SERVERS = ["github", "jira"]
ORIGINS = {"client": "invalid_params", "server": "tool_error", "upstream": "upstream_timeout", "auth": "expired_token"}


def history(seed: int = 7, count: int = 240) -> list[Event]:
    """A day of traffic over known values: tool calls, listings, prompts, handshakes, custom events and
    failures of every origin, in stateful sessions and stateless user/caller runs."""
    rnd = random.Random(seed)
    events = []
    for i in range(count):
        kind = rnd.choices(["call", "list", "prompt", "init", "custom"], [6, 1, 1, 1, 1])[0]
        fields = {
            "event_id": f"e{i:03d}",
            "timestamp_ns": int((DAY + timedelta(minutes=rnd.randrange(0, 24 * 60))).timestamp() * 1e9),
            "duration_ms": round(rnd.uniform(1, 900), 3),
            "client_name": rnd.choice(CLIENTS),
            "user_id": rnd.choice(USERS),
            "server_name": rnd.choice(SERVERS),
            "response_size": rnd.randrange(10, 5000),
        }
        if rnd.random() < 0.5:
            fields["session_id"] = f"session-{rnd.randrange(8)}"
        else:
            fields["stateless"] = True
            fields["caller_id"] = f"caller-{rnd.randrange(3)}"
        if kind == "call":
            fields |= {"type": "mcp:tools/call", "resource": rnd.choice(TOOLS), "argument_keys": ["q"]}
            fields["intent"] = rnd.choice([None, "find the bug", "clean up"])
        elif kind == "list":
            fields |= {"type": "mcp:tools/list", "tools_listed": [*TOOLS, "never_called"]}
        elif kind == "prompt":
            fields |= {"type": "mcp:prompts/get", "resource": "review", "argument_keys": ["code"]}
        elif kind == "init":
            fields |= {"type": "mcp:initialize"}
        else:
            fields |= {"type": "custom:deploy", "custom": {"message": "shipped"}}
        if kind != "custom" and rnd.random() < 0.25:
            origin = rnd.choice(sorted(ORIGINS))
            fields |= {"is_error": True, "failure": {"origin": origin, "reason": ORIGINS[origin]},
                       "error": {"type": "tool_error", "message": f"{origin} failed", "code": -32603}}  # fmt: skip
        events.append(validated_event(**fields))
    return events


def matches(event: Event, slice: Slice) -> bool:
    """The slice's meaning, written independently of its SQL."""
    failure = event.get("failure") or {}
    method = event["type"]
    checks = {
        "tool": method == "mcp:tools/call" and event.get("resource") in slice.tool,
        "client": (event.get("client_name") or "(unknown)") in slice.client,
        "user": event.get("user_id") in slice.user,
        "server": event.get("server_name") in slice.server,
        "method": method in {m if ":" in m else f"mcp:{m}" for m in slice.method},
        "origin": failure.get("origin") in slice.origin,
    }
    return all(checks[name] for name in DIMENSIONS if getattr(slice, name))


SLICES = {
    "tool": Slice(tool=("search",)),
    "tools": Slice(tool=("search", "delete_repo")),
    "client": Slice(client=("Cursor",)),
    "unknown client": Slice(client=("(unknown)",)),
    "user": Slice(user=("alice",)),
    "users": Slice(user=("alice", "bob")),
    "server": Slice(server=("jira",)),
    "method": Slice(method=("tools/list",)),
    "methods": Slice(method=("tools/call", "custom:deploy")),
    "origin": Slice(origin=("upstream",)),
    "origins": Slice(origin=("client", "auth")),
    "all six": Slice(tool=("search", "fetch"), client=("Claude Desktop", "Cursor"), user=("alice", "bob"),
                     server=("github", "jira"), method=("tools/call",), origin=("server", "upstream", "client")),
    "nothing matches": Slice(tool=("no_such_tool",)),
}  # fmt: skip


@pytest.fixture(scope="module")
def everything():
    store = DuckDBStore(session_timeout=timedelta(minutes=30))
    store.add("p", history())
    yield store
    store.close()


def stable(rows: list[dict]) -> list[dict]:
    """Rows without the one column read from the clock (a session's state changes with ``now``)."""
    return [{key: value for key, value in row.items() if key != "state"} for row in rows]


@pytest.mark.parametrize("name", [panel for panel in PANELS if panel != "session"])
@pytest.mark.parametrize("label", SLICES)
def test_a_sliced_panel_is_the_panel_of_the_sliced_events(everything, label, name):
    slice = SLICES[label]
    kept = [event for event in history() if matches(event, slice)]
    only = DuckDBStore(session_timeout=timedelta(minutes=30))
    try:
        if kept:
            only.add("p", kept)
        expected = only.panel("p", name, WINDOW, limit=1000)
    finally:
        only.close()
    assert stable(everything.panel("p", name, WINDOW, slice, limit=1000)) == stable(expected)


def test_the_slices_cut_something_and_keep_something():
    """The fixture exercises the filters: each slice keeps some events and drops others (but the empty one)."""
    events = history()
    for label, slice in SLICES.items():
        kept = sum(matches(event, slice) for event in events)
        assert (kept == 0) if label == "nothing matches" else (0 < kept < len(events)), label


def test_a_session_timeline_is_sliced_too(everything):
    rows = everything.panel("p", "session", WINDOW, session="session-1", limit=1000)
    sliced = everything.panel("p", "session", WINDOW, Slice(method=("tools/call",)), session="session-1", limit=1000)
    assert {row["type"] for row in rows} > {"mcp:tools/call"}
    assert [row["event_id"] for row in sliced] == [row["event_id"] for row in rows if row["type"] == "mcp:tools/call"]


def test_parse_takes_repeats_and_commas_and_refuses_what_is_not_a_filter():
    parsed = Slice.parse({"tool": ["search,fetch", " delete_repo ", "search"], "origin": ["server"]})
    assert parsed == Slice(tool=("search", "fetch", "delete_repo"), origin=("server",))
    assert parsed.query() == {"tool": "search,fetch,delete_repo", "origin": "server"}
    assert not Slice.parse({"tool": [" , "]})
    with pytest.raises(ValueError, match="unknown filter colour"):
        Slice.parse({"colour": ["red"]})
    with pytest.raises(ValueError, match="at most 100 values"):
        Slice.parse({"user": [",".join(f"u{i}" for i in range(101))]})

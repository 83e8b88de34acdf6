"""Sessions end after the inactivity timeout, in the instrumentation as in the analytics service: the session
duration metric and the sessions panel agree on how many sessions there were and how long each lasted."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from mcp_analytics.duckdb_store import DuckDBStore
from mcp_analytics.store import Window
from opentelemetry.exporter.mcp_analytics.events import to_event
from tests.apps.clients import in_memory
from tests.apps.servers import KINDS, build
from tests.conftest import instrumented

pytestmark = pytest.mark.anyio

TIMEOUT = 2.0


@pytest.mark.parametrize("kind", KINDS)
async def test_the_duration_metric_and_the_sessions_panel_agree(kind):
    with instrumented(session_timeout=TIMEOUT) as recorded:
        async with in_memory(build(kind)) as client:
            await client.list_tools()
            await anyio.sleep(0.1)
            await client.send_ping()  # the first session: initialize to this ping
            await anyio.sleep(TIMEOUT + 0.5)  # idle past the timeout: the session ended
            await client.send_ping()
            await anyio.sleep(1.2)  # within the timeout
            await client.send_ping()  # the second session: these two pings
            first = recorded.points("mcp.server.session.duration")
            assert [point.count for point in first] == [1], "the first session was recorded when the second began"
        points = recorded.snapshot()
    store = DuckDBStore(session_timeout=timedelta(seconds=TIMEOUT))
    try:
        store.add("p", [to_event(span) for span in recorded.server_spans()])
        rows = sorted(store.panel("p", "sessions", Window.parse(last="1h")), key=lambda row: row["started"])
    finally:
        store.close()
    assert [row["events"] for row in rows] == [4, 2]  # initialize, initialized, tools/list, ping; ping, ping
    assert len({row["session"].split("@")[0] for row in rows}) == 1, "one session id, cut in two"
    # The server's sessions are the panel's (its events are the server's); the client's, seen from the other end of
    # the wire, are the same sessions give or take the time a message travels.
    # (A loaded machine delays a message by tenths of a second, seen up to 0.22 s: the client's tolerance is half a
    # second. The server reads its clock for the metric and for the span a few calls apart, which a thread switch on
    # a loaded machine can part by milliseconds: 50 ms. The sessions differ by well over a second, so each is still
    # told apart.)
    for name, tolerance in (("mcp.server.session.duration", 0.05), ("mcp.client.session.duration", 0.5)):
        (point,) = points[name]
        assert point.count == 2, name
        assert point.min == pytest.approx(rows[0]["duration_s"], abs=tolerance), name
        assert point.max == pytest.approx(rows[1]["duration_s"], abs=tolerance), name
    assert 0.1 <= rows[0]["duration_s"] < rows[1]["duration_s"] - 0.8 and rows[1]["duration_s"] >= 1.2

"""The real exporter against the real analytics API on 127.0.0.1, when the API is down, killed, failing or slow.

Every exported event must arrive exactly once (the API dedups on event id, so a
batch that is retried after the API stored it is not counted twice), and the MCP
server must never wait for any of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import duckdb
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mcp_analytics.api import create_app
from mcp_analytics.duckdb_store import DuckDBStore
from mcp_analytics.keys import ApiKeys
from mcp_analytics.server import in_thread
from mcp_analytics.store import Window
from opentelemetry.exporter.mcp_analytics import install
from opentelemetry.exporter.mcp_analytics.events import event_id, is_analytics_span
from tests.apps.clients import in_memory
from tests.apps.servers import build
from tests.conftest import instrumented
from tests.processes import ApiServer

pytestmark = pytest.mark.anyio

KEY = "reliability-key"


class ApiProcess(ApiServer):
    """``mcp-analytics serve`` on a DuckDB file with the key ``KEY`` (project ``rel``), its output beside the file."""

    def __init__(self, db: Path) -> None:
        super().__init__("--db", str(db), "--api-key", f"rel={KEY}", log=db.with_suffix(".log"))
        self.db = db

    def stored_ids(self) -> list[str]:
        """Every stored event id, duplicates included (read from the file once the API has stopped)."""
        self.stop()
        with duckdb.connect(str(self.db), read_only=True) as db:
            return [row[0] for row in db.execute("SELECT event_id FROM events").fetchall()]


@pytest.fixture
def api(tmp_path) -> Iterator[ApiProcess]:
    process = ApiProcess(tmp_path / "events.duckdb")
    yield process
    process.stop()


def exported_ids(recorded) -> set[str]:
    return {event_id(span) for span in recorded.spans() if is_analytics_span(span)}


def counter(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    return {
        point.attributes["outcome"]: point.value
        for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
        if m.name == "mcp.analytics.export.events" for point in m.data.data_points
    }  # fmt: skip


async def calls(n: int, pause: float = 0.0) -> None:
    async with in_memory(build("highlevel")) as client:
        for i in range(n):
            await client.call_tool("add", {"a": i, "b": 1, "context": f"call {i}"})
            if pause:
                await anyio.sleep(pause)


async def test_api_down_at_start_then_up_loses_nothing(api):
    with instrumented() as recorded:
        processor = install(
            api.url, KEY, tracer_provider=recorded.tracer_provider, schedule_delay_millis=50, timeout=20
        )
        await calls(20)
        later = threading.Timer(1.5, api.start)
        later.start()
        processor.force_flush(30_000)
        later.join()
        processor.shutdown()
    ids = api.stored_ids()
    assert sorted(ids) == sorted(exported_ids(recorded))  # every event, each once
    assert len(ids) > 40  # 20 tool calls, server and client side, and the handshake


async def test_api_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(api):
    api.start()
    with instrumented() as recorded:
        processor = install(api.url, KEY, tracer_provider=recorded.tracer_provider, schedule_delay_millis=20,
                            max_export_batch_size=8, timeout=20)  # fmt: skip

        def outage() -> None:
            time.sleep(0.6)
            api.kill()
            time.sleep(1.0)
            api.start()

        chaos = threading.Thread(target=outage)
        chaos.start()
        await calls(150, pause=0.02)  # ~3 s of traffic across the outage
        chaos.join()
        processor.shutdown()
    ids = api.stored_ids()
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert set(ids) == exported_ids(recorded), "an event was lost"


@contextmanager
def faulty_api(*faults: tuple[int, dict[str, str], float]) -> Iterator[tuple[str, DuckDBStore, list[float]]]:
    """The real API in a thread, behind middleware that answers the first requests from ``faults``
    ((status, headers, delay)) before passing the rest through. Yields (url, store, arrival times)."""
    store, pending, arrivals = DuckDBStore(), list(faults), []
    app = create_app(store, ApiKeys([("rel", KEY)]))

    async def with_faults(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/v1/events":
            arrivals.append(time.monotonic())
            if pending:
                status, headers, delay = pending.pop(0)
                await anyio.sleep(delay)
                if status != 200:
                    await send({"type": "http.response.start", "status": status,
                                "headers": [(k.encode(), v.encode()) for k, v in headers.items()]})  # fmt: skip
                    await send({"type": "http.response.body", "body": b"{}"})
                    return
        await app(scope, receive, send)

    with in_thread(with_faults) as url:
        yield url, store, arrivals
    store.close()


def stored(store: DuckDBStore) -> int:
    return store.panel("rel", "summary", Window.parse(last="all"))[0]["events"]


@pytest.mark.parametrize(
    ("faults", "least_gap"),
    [([(500, {}, 0), (503, {}, 0)], 0.0), ([(429, {"Retry-After": "1"}, 0)], 1.0)],
    ids=["500-then-200", "429-retry-after"],
)
async def test_failing_answers_are_retried_until_stored_once(faults, least_gap):
    reader = InMemoryMetricReader()
    with faulty_api(*faults) as (url, store, arrivals), instrumented() as recorded:
        processor = install(url, KEY, tracer_provider=recorded.tracer_provider, schedule_delay_millis=10_000,
                            meter_provider=MeterProvider(metric_readers=[reader]), timeout=10)  # fmt: skip
        await calls(5)
        processor.shutdown()
        assert len(arrivals) == len(faults) + 1
        assert arrivals[-1] - arrivals[-2] >= least_gap
        assert stored(store) == len(recorded.server_spans())
    assert counter(reader) == {"sent": len(exported_ids(recorded))}


async def test_a_slow_api_fails_the_export_within_its_timeout_and_never_slows_the_server():
    reader = InMemoryMetricReader()
    with faulty_api(*[(200, {}, 3.0)] * 3) as (url, _store, _), instrumented() as recorded:
        processor = install(url, KEY, tracer_provider=recorded.tracer_provider, schedule_delay_millis=10,
                            meter_provider=MeterProvider(metric_readers=[reader]), timeout=1)  # fmt: skip
        started = time.monotonic()
        await calls(30)
        assert time.monotonic() - started < 2.0, "the tool calls waited for the exporter"
        flushing = time.monotonic()
        processor.shutdown()
        assert time.monotonic() - flushing < 6.0
    assert counter(reader).get("failed", 0) > 0


async def test_shutdown_flushes_what_is_queued():
    with faulty_api() as (url, store, arrivals), instrumented() as recorded:
        processor = install(
            url, KEY, tracer_provider=recorded.tracer_provider, schedule_delay_millis=60_000, timeout=10
        )
        await calls(30)
        assert arrivals == []  # nothing sent yet: the batch timer is a minute away
        started = time.monotonic()
        processor.shutdown()
        assert time.monotonic() - started < 10
        assert stored(store) == len(recorded.server_spans()) > 30

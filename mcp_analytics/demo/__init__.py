"""``mcp-analytics demo``: the whole analytics stack on this machine, end to end.

The analytics API on an embedded store; the help-desk MCP server (stateful and
stateless endpoints) instrumented by ``MCPInstrumentor`` and exporting through
``MCPAnalyticsExporter``; scripted agents of several users and clients; then the
report, read back from the API, and the dashboard's address.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import anyio
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from mcp_analytics import report
from mcp_analytics.api import create_app
from mcp_analytics.demo.agents import AGENTS, USER_HEADER, run_agent
from mcp_analytics.demo.server import build_server, streamable_http_app, upstream_app
from mcp_analytics.duckdb_store import DuckDBStore
from mcp_analytics.keys import ApiKeys, new_key
from mcp_analytics.server import bind, in_thread
from opentelemetry.exporter.mcp_analytics import install
from opentelemetry_instrumentation_mcp import IdentifyRequest, MCPInstrumentor, UserIdentity

PROJECT = "demo"


def identify(request: IdentifyRequest) -> UserIdentity | None:
    user = (request.headers or {}).get(USER_HEADER)
    return UserIdentity(user, user_name=user.title()) if user else None


def _fresh(db: str) -> None:
    for path in (Path(db), Path(db + ".wal")):
        path.unlink(missing_ok=True)


async def _agents(stateful_url: str, stateless_url: str, log: list[str]) -> None:
    for agent in AGENTS:
        await run_agent(agent, f"{stateless_url if agent.stateless else stateful_url}/mcp", log)


def run(db: str, port: int, keep_serving: bool | None = None) -> int:
    started = time.perf_counter()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("mcp").setLevel(logging.CRITICAL)  # the failing tools are on purpose: no tracebacks
    _fresh(db)
    store, key = DuckDBStore(db), new_key()
    try:
        api_socket = bind(port=port)
    except OSError:
        api_socket = bind()
    api_url = f"http://127.0.0.1:{api_socket.getsockname()[1]}"

    provider = TracerProvider(resource=Resource.create({"service.name": "help-desk"}))
    install(api_url, key, tracer_provider=provider, meter_provider=MeterProvider(), schedule_delay_millis=200)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    instrumentor = MCPInstrumentor()
    instrumentor.instrument(tracer_provider=provider, meter_provider=MeterProvider(), identify=identify)
    log: list[str] = []
    try:
        with in_thread(create_app(store, ApiKeys([(PROJECT, key)])), api_socket), in_thread(upstream_app) as upstream:
            print(f"analytics API on {api_url} (store {db}); help-desk MCP server and its upstream on 127.0.0.1\n")
            stateful, stateless = build_server(upstream), build_server(upstream)
            with (
                in_thread(streamable_http_app(stateful, stateless=False)) as stateful_url,
                in_thread(streamable_http_app(stateless, stateless=True)) as stateless_url,
            ):
                anyio.run(_agents, stateful_url, stateless_url, log)
            provider.force_flush()
            print("agent sessions:\n" + "\n".join(log) + "\n")
            print(report.render(report.from_api(api_url, key, "1h"), f"MCP analytics: project {PROJECT}, last hour"))
            dashboard = f"{api_url}/#key={key}"
            took = f"(demo took {time.perf_counter() - started:.1f} s)"
            if keep_serving if keep_serving is not None else sys.stdin.isatty():
                print(f"\ndashboard: {dashboard}\n{took}\nserving the dashboard until Ctrl-C", flush=True)
                threading.Event().wait()
            else:  # the API stops with the demo: say so, and how to look at the store afterwards
                print(
                    f"\n{took}\nthe demo's API has stopped (it served the dashboard at {dashboard} while it ran); to "
                    f"browse it: mcp-analytics demo --keep-serving, or mcp-analytics serve --db {db} "
                    f"--api-key {PROJECT}=<key> and open /#key=<key>"
                )
    finally:
        instrumentor.uninstrument()
        HTTPXClientInstrumentor().uninstrument()
        provider.shutdown()
        store.close()
    return 0

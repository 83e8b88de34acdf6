"""MCP + OpenTelemetry in one process: a traced weather server, a scripted agent, and what they recorded.

Run ``PYTHONPATH=. python examples/demo.py``. Nothing leaves the process: spans go to an in-memory
exporter, metrics to an in-memory reader, and the server listens on a free port of 127.0.0.1.
"""

import logging
import socket
import threading
import time
from collections import defaultdict
from importlib.metadata import version

import anyio
import uvicorn
from mcp import ClientSession, Implementation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from opentelemetry_instrumentation_mcp import MCPInstrumentor

from weather_server import build_server  # next to this file, so on sys.path when run as a script

try:
    from mcp.client.streamable_http import streamable_http_client
except ImportError:  # older 1.x releases only have the name streamablehttp_client
    from mcp.client.streamable_http import streamablehttp_client as streamable_http_client

SHOWN = {  # label in the trace tree -> span attribute
    "tool": "gen_ai.tool.name", "prompt": "gen_ai.prompt.name", "uri": "mcp.resource.uri",
    "client": "mcp.client.name", "session": "mcp.session.id", "from": "client.address", "to": "server.address",
    "error": "error.type", "origin": "mcp.failure.origin", "reason": "mcp.failure.reason",
}  # fmt: skip
# What an agent sends: the arguments, and in `context` (advertised by the instrumentation) why it calls.
TOOL_CALLS = [
    ("current_conditions", {"city": "Paris", "context": "The user is packing for Paris today and asked what to wear."}),
    (
        "get_forecast",
        {"city": "Paris", "days": 3, "context": "The user wants to know if the weekend in Paris stays dry."},
    ),
    ("get_forecast", {"city": "Tokyo", "days": 5, "context": "The user is planning a five-day trip to Tokyo."}),
    ("convert_temperature", {"celsius": 21.5}),  # an agent that does not say why: still works
    ("air_quality", {"city": "Paris", "context": "The user has asthma and asked whether to run outside."}),
    ("current_conditions", {"city": "Reykjavik", "context": "The user compares Reykjavik with Paris."}),
]


def start_server() -> tuple[uvicorn.Server, threading.Thread, str]:
    """The weather server on streamable HTTP, in a background thread, on a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    app = build_server().streamable_http_app()  # its lifespan runs the MCP session manager
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    if not server.started:
        raise SystemExit("the weather server did not start")
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"


async def run_agent(url: str) -> None:
    """One agent session: discovery, a few tool calls (one fails), a resource and a prompt."""
    async with streamable_http_client(url) as streams:  # (read, write) on 2.x, plus get_session_id on 1.x
        agent = Implementation(name="demo-agent", version="1.0")
        async with ClientSession(streams[0], streams[1], client_info=agent) as client:
            await client.initialize()
            tools = await client.list_tools()
            print("tools:", ", ".join(tool.name for tool in tools.tools))
            for name, arguments in TOOL_CALLS:
                result = await client.call_tool(name, arguments)
                failed = getattr(result, "is_error", None) or getattr(result, "isError", False)
                shown = {key: value for key, value in arguments.items() if key != "context"}
                print(f"  {name}({shown}) -> {'ERROR: ' if failed else ''}{result.content[0].text}")
            cities = await client.read_resource("weather://cities")
            print("resource weather://cities:", cities.contents[0].text.replace("\n", ", "))
            prompt = await client.get_prompt("plan_trip", {"city": "Tokyo", "days": "5"})
            print("prompt plan_trip:", prompt.messages[0].content.text)


def details(attributes) -> str:
    found = {label: str(attributes[key]) for label, key in SHOWN.items() if key in attributes}
    if "session" in found:
        found["session"] = found["session"][:8] + "…"
    for label, port in (("from", "client.port"), ("to", "server.port")):
        if label in found and port in attributes:
            found[label] += f":{attributes[port]}"
    return "  ".join(f"{label}={value}" for label, value in found.items())


def print_traces(exporter: InMemorySpanExporter) -> None:
    finished = sorted(exporter.get_finished_spans(), key=lambda span: span.start_time)
    traces, children = defaultdict(list), defaultdict(list)
    for span in finished:
        traces[span.context.trace_id].append(span)
        if span.parent is not None:
            children[span.parent.span_id].append(span)

    def show(span, depth: int) -> None:
        mark = "✗" if span.status.status_code is StatusCode.ERROR else "•"
        head = f"{'    ' * depth}{mark} {span.kind.name:<6} {span.name}"
        print(f"{head:<48} {(span.end_time - span.start_time) / 1e6:6.1f} ms  {details(span.attributes)}")
        if span.kind.name == "SERVER" and "mcp.user_intent" in span.attributes:
            print(f"{'    ' * (depth + 1)}  why: {span.attributes['mcp.user_intent']}")
        for child in children[span.context.span_id]:
            show(child, depth + 1)

    print(f"\n=== {len(traces)} traces, {len(finished)} spans  (✗ = span status ERROR) ===")
    print("    tool, prompt = gen_ai.tool.name, gen_ai.prompt.name; uri = mcp.resource.uri; client = mcp.client.name;")
    print("    session = mcp.session.id; from/to = client/server.address:port; error = error.type;")
    print("    origin, reason = mcp.failure.origin, mcp.failure.reason; why = mcp.user_intent")
    for trace_id, members in traces.items():
        print(f"\ntrace {trace_id:032x}")
        ids = {span.context.span_id for span in members}
        for root in (span for span in members if span.parent is None or span.parent.span_id not in ids):
            show(root, 0)


def print_latency_table(reader: InMemoryMetricReader) -> None:
    rows: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0])  # calls, errors, total s, max s
    metrics = (m for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics for m in s.metrics)
    for point in next(m for m in metrics if m.name == "mcp.server.operation.duration").data.data_points:
        attributes = point.attributes
        target = attributes.get("gen_ai.tool.name") or attributes.get("gen_ai.prompt.name")
        row = rows[" ".join(filter(None, [attributes["mcp.method.name"], target]))]
        row[0] += point.count
        row[1] += point.count if "error.type" in attributes else 0
        row[2] += point.sum
        row[3] = max(row[3], point.max)

    print("\n=== mcp.server.operation.duration: tools, then the other operations ===\n")
    print(f"{'operation':<34} {'calls':>5} {'errors':>6} {'mean ms':>8} {'max ms':>8}")
    print("-" * 65)
    for name, (calls, errors, total, longest) in sorted(rows.items(), key=tools_first_slowest_first):
        print(f"{name:<34} {calls:>5} {errors:>6} {total / calls * 1000:>8.1f} {longest * 1000:>8.1f}")


def tools_first_slowest_first(row: tuple[str, list[float]]) -> tuple[bool, float]:
    name, (calls, _, total, _) = row
    return not name.startswith("tools/call"), -total / calls


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # mcp 1.x logs a harmless ClosedResourceError traceback when a session ends while its GET stream is open.
    logging.getLogger("mcp.server.streamable_http").addFilter(
        lambda record: not (record.exc_info and isinstance(record.exc_info[1], anyio.ClosedResourceError))
    )
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    MCPInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]))

    server, thread, url = start_server()
    print(f"mcp {version('mcp')}: weather server listening on {url}\n")
    try:
        anyio.run(run_agent, url)
    finally:
        server.should_exit = True
        thread.join(timeout=5)
    print_traces(exporter)
    print_latency_table(reader)


if __name__ == "__main__":
    main()

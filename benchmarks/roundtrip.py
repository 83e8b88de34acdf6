"""Per-call overhead of the MCP instrumentation on an in-memory ``tools/call`` round trip.

Run from the repository root, in an environment with ``mcp`` (1.x or 2.x),
``anyio`` and ``opentelemetry-sdk`` installed::

    python benchmarks/roundtrip.py [--calls 1000] [--rounds 9] [--warmup 100]

Client and server live in one process: a ``ClientSession`` talks to a low-level
``Server`` with one tool (``add``) over ``create_client_server_memory_streams()``
(on 1.x with ``validate_input=False``: the 2.x low-level server does not validate
arguments either, and 1.x's per-call ``jsonschema`` check would otherwise be
most of the round trip).
Each arm-round builds a fresh server and session, runs ``initialize`` and
``tools/list``, ``--warmup`` untimed calls, then ``--calls`` sequential timed
``tools/call add`` round trips. The arms are interleaved: every round runs every
arm once, in rotating order, and the reported figure is each arm's median over
the rounds: wall-clock microseconds per call, and CPU (process) microseconds per
call, which includes the span export thread and is steadier on a busy machine.

One global SDK ``TracerProvider`` (``BatchSpanProcessor`` feeding an exporter
that only counts spans, no I/O) and one ``MeterProvider`` (``InMemoryMetricReader``)
are set once and shared by all arms. The arms:

``none``
    No span is recorded. On 2.x the SDK's ``OpenTelemetryMiddleware`` is removed
    from the server's ``middleware`` list and the SDK's module tracer
    (``mcp.shared._otel._tracer``) is swapped for a ``NoOpTracer``, so its client
    ``MCP send`` span is a no-op - exactly what a 2.x application pays when no
    tracer provider is configured (minus the server middleware). On 1.x the SDK
    has no telemetry of its own. ``MCPInstrumentor`` is not instrumented.
``sdk-builtin`` (2.x only)
    The SDK's own tracing as shipped: its server middleware and its client
    ``MCP send`` span, recorded by the SDK provider. No metrics.
``ours``
    ``MCPInstrumentor().instrument(tracer_provider=..., meter_provider=...)``:
    our SERVER and CLIENT span per message (replacing the SDK's on 2.x) and the
    MCP duration histograms, intent injection off (the core); ``uninstrument()`` after the arm.
``analytics``
    ``ours`` plus the analytics of the issue "analytics semantics": the intent
    argument advertised and taken out of every call (the calls carry one), an
    ``identify`` hook (answered once per session), metrics on.
``ours-spans``
    The same with a no-op meter provider: our spans alone, the like-for-like
    comparison with ``sdk-builtin`` (which records no metrics).
``ours-noop``
    ``ours`` with no-op tracer and meter providers: our wrappers and attribute
    building with nothing recorded, i.e. what our own code costs.
``analytics-noop``
    ``analytics`` (the default options plus an ``identify`` hook) with no-op
    providers: what our own code costs as users run it.

Where the standalone ``fastmcp`` package is installed (2.x), three more arms run
the same round trip on a ``fastmcp.FastMCP`` server with the same ``add`` tool
(its low-level server run over the same streams; the calls carry no intent
argument, which fastmcp would reject as unexpected); their ratios are against
``fastmcp-none``:

``fastmcp-none``
    ``fastmcp.settings.telemetry_mode = "off"`` (fastmcp's span helpers pass
    through) and the SDK's client tracer a ``NoOpTracer`` as in ``none``: no span.
``fastmcp-native``
    fastmcp's own telemetry as shipped (``telemetry_mode = "native"``, its
    default), recorded by the same SDK providers: fastmcp's SERVER span and the
    SDK's client ``MCP send`` span (fastmcp's server has no SDK middleware).
``fastmcp-ours``
    native mode with ``ours`` (the core: intent off, metrics on), as the README
    documents for fastmcp: ours enriches fastmcp's SERVER span rather than
    opening a second one, and records our CLIENT span and both histograms.

After each round, ``sdk floor`` times the OTel SDK work that ``ours`` asks of the
SDK per round trip, with nothing else (``SdkFloor``): the least any
instrumentation emitting the same spans and points can add.

Checked on every arm-round, on the spans of the timed calls themselves
(after a flush, outside the timed loop); any failure exits with status 1:

* ``none``, ``ours-noop``, ``analytics-noop``, ``fastmcp-none``: 0 spans.
* ``sdk-builtin``: 1 SERVER + 1 CLIENT span per call, scope ``mcp-python-sdk``.
* ``ours``: 1 SERVER + 1 CLIENT span per call, scope
  ``opentelemetry_instrumentation_mcp``, nothing else; plus one
  ``mcp.server.operation.duration`` and one ``mcp.client.operation.duration``
  point per call.
* ``fastmcp-native``: 1 SERVER span of scope ``fastmcp`` + 1 ``mcp-python-sdk``
  CLIENT span per call; ``fastmcp-ours``: the same SERVER span + 1 CLIENT span
  of ours, and the two points of ``ours``.

Also counted on the timed calls (``Delivered``): the attributes of the exported
spans (span attributes only: the resource's go once per batch), and the histogram
measurements of every metric with their attributes (each measurement counted with
its data point's attributes; exemplars not counted).

Targets (judged on the wall-clock medians; reported, not enforced in the exit
status, since timings are noisy): ``ours`` adds at most 25% over ``none``
(ours/none <= 1.25) and, on 2.x, costs no more than the SDK's built-in tracing
(ours/sdk-builtin <= 1.00); ``analytics`` costs at most 10% more than ``ours``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession
from mcp.shared.memory import create_client_server_memory_streams
from opentelemetry import context, metrics, propagate, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the package is importable from a checkout
from opentelemetry_instrumentation_mcp import MCPInstrumentor, UserIdentity
from opentelemetry_instrumentation_mcp.instruments import DURATION_BUCKETS

MCP_VERSION = version("mcp")
IS_V2 = int(MCP_VERSION.split(".")[0]) >= 2
OURS_SCOPE = "opentelemetry_instrumentation_mcp"
SDK_SCOPE = "mcp-python-sdk"
FASTMCP_SCOPE = "fastmcp"
HAS_FASTMCP = IS_V2 and importlib.util.find_spec("fastmcp") is not None
"""The standalone ``fastmcp`` package (imported only by its arms, so the other arms run as without it)."""
FASTMCP_ARMS = ("fastmcp-none", "fastmcp-native", "fastmcp-ours") if HAS_FASTMCP else ()
ARMS = (
    ("none",)
    + (("sdk-builtin",) if IS_V2 else ())
    + ("ours", "ours-spans", "ours-noop", "analytics", "analytics-noop")
    + FASTMCP_ARMS
)
ARGS = {"a": 1, "b": 2, "context": "The agent totals the user's invoice."}
"""What an agent sends, the intent included (a server without our instrumentation ignores it)."""
TOOL_SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
FASTMCP_ARGS = {"a": 1, "b": 2}
"""fastmcp validates arguments against the tool's signature: an uninstrumented server rejects ``context``."""
OPERATION_METRICS = ("mcp.server.operation.duration", "mcp.client.operation.duration")


def baseline(arm: str) -> str:
    """The arm an arm's ratios and added work are taken against: the same server, uninstrumented."""
    return "fastmcp-none" if arm.startswith("fastmcp-") else "none"


@dataclass(frozen=True)
class Delivered:
    """What an arm's timed calls handed to the exporter and the metric reader, per round trip."""

    spans: float = 0
    span_attributes: float = 0
    points: float = 0
    """Histogram measurements, all metrics."""
    point_attributes: float = 0
    """The attributes of those measurements (each counted with its data point's attributes)."""

    @property
    def attributes(self) -> float:
        return self.span_attributes + self.point_attributes

    def text(self) -> str:
        if not self.spans and not self.points:
            return ""
        return (
            f"{self.attributes:g} attributes ({self.span_attributes:g} on spans + {self.point_attributes:g} "
            f"on {self.points:g} metric points)"
        )


class CountingExporter(SpanExporter):
    """Counts exported spans by (scope, kind) and keeps the last one of each; no I/O."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.last: dict[tuple[str, str], ReadableSpan] = {}
        self.attributes = 0
        self.taken_attributes = 0
        """The span attributes exported between the last two ``take()``."""

    def export(self, spans: Any) -> SpanExportResult:
        for span in spans:
            key = (span.instrumentation_scope.name, span.kind.name)
            self.counts[key] += 1
            self.last[key] = span
            self.attributes += len(span.attributes or ())
        return SpanExportResult.SUCCESS

    def take(self) -> Counter[tuple[str, str]]:
        counts, self.counts = self.counts, Counter()
        self.taken_attributes, self.attributes = self.attributes, 0
        return counts


def build_server() -> Any:
    """A low-level server with one tool, ``add``."""
    if IS_V2:
        import mcp_types as types
        from mcp.server.lowlevel import Server

        async def list_tools(ctx: Any, params: Any) -> Any:
            return types.ListToolsResult(tools=[types.Tool(name="add", input_schema=TOOL_SCHEMA)])

        async def call_tool(ctx: Any, params: Any) -> Any:
            total = params.arguments["a"] + params.arguments["b"]
            return types.CallToolResult(content=[types.TextContent(type="text", text=str(total))])

        return Server("bench", on_list_tools=list_tools, on_call_tool=call_tool)

    from mcp import types
    from mcp.server.lowlevel import Server

    server = Server("bench")

    @server.list_tools()
    async def list_tools() -> list[Any]:
        return [types.Tool(name="add", inputSchema=TOOL_SCHEMA)]

    @server.call_tool(validate_input=False)  # as on 2.x: no jsonschema check per call
    async def call_tool(name: str, arguments: dict[str, Any]) -> list[Any]:
        return [types.TextContent(type="text", text=str(arguments["a"] + arguments["b"]))]

    return server


def build_fastmcp_server() -> Any:
    """A ``fastmcp.FastMCP`` server with one tool, ``add`` (its schema from the signature: two integers)."""
    import fastmcp

    app = fastmcp.FastMCP("bench")

    @app.tool
    def add(a: int, b: int) -> int:
        return a + b

    return app


@asynccontextmanager
async def connect(server: Any) -> AsyncIterator[ClientSession]:
    lowlevel = getattr(server, "_mcp_server", server)  # a FastMCP's low-level server
    async with (
        create_client_server_memory_streams() as (client_streams, server_streams),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(lambda: lowlevel.run(*server_streams, lowlevel.create_initialization_options()))
        async with ClientSession(*client_streams) as client:
            await client.initialize()
            await client.list_tools()
            yield client
        tg.cancel_scope.cancel()


def instrument(tracer_provider: Any, meter_provider: Any, *, analytics: bool) -> None:
    """``MCPInstrumentor().instrument()``: the core (intent off) or the defaults with an ``identify`` hook."""
    if analytics:
        MCPInstrumentor().instrument(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            intent=True,
            identify=lambda request: UserIdentity("u-1", user_name="Alice"),
        )
    else:
        MCPInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider, intent=False)


class Bench:
    def __init__(self) -> None:
        self.exporter = CountingExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.floor: SdkFloor | None = None
        self.delivered = Delivered()
        """The last ``run_arm``'s timed calls."""
        self.telemetry_mode = "native"
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)
        if IS_V2:
            import mcp.shared._otel as sdk_otel

            self.sdk_otel = sdk_otel
            self.sdk_tracer = sdk_otel._tracer

    def enter(self, arm: str, server: Any) -> None:
        recording = (self.tracer_provider, self.meter_provider)
        noop = (trace.NoOpTracerProvider(), metrics.NoOpMeterProvider())
        if arm.startswith("fastmcp-"):
            import fastmcp

            self.telemetry_mode = fastmcp.settings.telemetry_mode
            fastmcp.settings.telemetry_mode = "off" if arm == "fastmcp-none" else "native"
            if arm == "fastmcp-none":
                self.sdk_otel._tracer = trace.NoOpTracer()
            elif arm == "fastmcp-ours":
                instrument(*recording, analytics=False)
        elif arm == "ours":
            instrument(*recording, analytics=False)
        elif arm == "ours-spans":
            instrument(self.tracer_provider, metrics.NoOpMeterProvider(), analytics=False)
        elif arm == "ours-noop":
            instrument(*noop, analytics=False)
        elif arm == "analytics":
            instrument(*recording, analytics=True)
        elif arm == "analytics-noop":
            instrument(*noop, analytics=True)
        elif arm == "none" and IS_V2:
            from mcp.server._otel import OpenTelemetryMiddleware

            server.middleware[:] = [m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)]
            self.sdk_otel._tracer = trace.NoOpTracer()

    def leave(self, arm: str) -> None:
        if arm.startswith(("ours", "analytics")) or arm == "fastmcp-ours":
            MCPInstrumentor().uninstrument()
        if arm in ("none", "fastmcp-none") and IS_V2:
            self.sdk_otel._tracer = self.sdk_tracer
        if arm.startswith("fastmcp-"):
            import fastmcp

            fastmcp.settings.telemetry_mode = self.telemetry_mode

    def measurements(self) -> tuple[Counter[str], int, int]:
        """Cumulative: ``tools/call`` points per operation-duration histogram; histogram measurements of every
        metric, and their attributes."""
        points: Counter[str] = Counter()
        total = attributes = 0
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        count = getattr(point, "count", 0)  # histograms; a counter's sum says no number of adds
                        total += count
                        attributes += count * len(point.attributes or ())
                        if metric.name in OPERATION_METRICS and point.attributes.get("mcp.method.name") == "tools/call":
                            points[metric.name] += count
        return points, total, attributes

    def operation_points(self) -> Counter[str]:
        """Cumulative number of ``tools/call`` points per operation-duration histogram."""
        return self.measurements()[0]

    def sample(self) -> None:
        """What ``ours`` recorded for the last timed call: its two spans and its two metric points' attributes."""
        points = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        if metric.name in OPERATION_METRICS and point.attributes.get("mcp.method.name") == "tools/call":
                            points[metric.name] = dict(point.attributes)
        spans = {kind: self.exporter.last[(OURS_SCOPE, kind)] for kind in ("SERVER", "CLIENT")}
        self.floor = SdkFloor(self.tracer_provider, self.meter_provider, spans, points)

    def flush(self) -> Counter[tuple[str, str]]:
        self.tracer_provider.force_flush()
        return self.exporter.take()

    async def run_arm(self, arm: str, calls: int, warmup: int) -> tuple[float, float, list[str], Counter[Any]]:
        """Wall and CPU seconds of ``calls`` timed round trips, the check failures, and the timed calls' spans."""
        fastmcp_arm = arm.startswith("fastmcp-")
        server = build_fastmcp_server() if fastmcp_arm else build_server()
        arguments = FASTMCP_ARGS if fastmcp_arm else ARGS
        self.enter(arm, server)
        try:
            async with connect(server) as client:
                result = await client.call_tool("add", arguments)
                assert result.content[0].text == "3", result
                for _ in range(warmup):
                    await client.call_tool("add", arguments)
                await anyio.sleep(0.01)  # let the server finish its last message
                self.flush()
                points_before, measured_before, measured_attributes_before = self.measurements()
                gc.collect()
                wall, cpu = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    await client.call_tool("add", arguments)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                await anyio.sleep(0.01)
                spans = self.flush()
                points, measured, measured_attributes = self.measurements()
                points -= points_before
                self.delivered = Delivered(
                    spans=sum(spans.values()) / calls,
                    span_attributes=self.exporter.taken_attributes / calls,
                    points=(measured - measured_before) / calls,
                    point_attributes=(measured_attributes - measured_attributes_before) / calls,
                )
                if arm == "ours" and self.floor is None:
                    self.sample()
        finally:
            self.leave(arm)
        return wall, cpu, check(arm, calls, spans, points), spans


class SdkFloor:
    """The OTel SDK work of ``ours`` per round trip with nothing else: the same two spans (name, kind, final
    attributes, the server span a child of the client span through ``propagate`` inject/extract), each made
    current while its histogram point (same attributes, same buckets, so exemplars too) is recorded."""

    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider,
                 spans: dict[str, ReadableSpan], points: dict[str, dict[str, Any]]) -> None:  # fmt: skip
        self.tracer = tracer_provider.get_tracer("sdk-floor")
        meter = meter_provider.get_meter("sdk-floor")
        self.histograms = [
            meter.create_histogram(f"floor.{side}", unit="s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
            for side in ("server", "client")
        ]
        self.name = spans["SERVER"].name
        self.server_attributes = dict(spans["SERVER"].attributes or {})
        self.client_attributes = dict(spans["CLIENT"].attributes or {})
        self.server_point = points["mcp.server.operation.duration"]
        self.client_point = points["mcp.client.operation.duration"]

    def run(self, calls: int) -> tuple[float, float]:
        """Wall and CPU seconds of ``calls`` iterations."""
        server_histogram, client_histogram = self.histograms
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            started = time.perf_counter()
            client = self.tracer.start_span(self.name, kind=trace.SpanKind.CLIENT, attributes=self.client_attributes)
            client_token = context.attach(trace.set_span_in_context(client))
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            server = self.tracer.start_span(self.name, context=propagate.extract(carrier), kind=trace.SpanKind.SERVER,
                                            attributes=self.server_attributes)  # fmt: skip
            server_token = context.attach(trace.set_span_in_context(server))
            server_histogram.record(time.perf_counter() - started, self.server_point)
            context.detach(server_token)
            server.end()
            client_histogram.record(time.perf_counter() - started, self.client_point)
            context.detach(client_token)
            client.end()
        return time.perf_counter() - wall, time.process_time() - cpu


def check(arm: str, calls: int, spans: Counter[tuple[str, str]], points: Counter[str]) -> list[str]:
    expected: Counter[tuple[str, str]] = Counter()
    if arm not in ("none", "ours-noop", "analytics-noop", "fastmcp-none"):
        scope = SDK_SCOPE if arm == "sdk-builtin" else OURS_SCOPE
        expected = Counter({(scope, "SERVER"): calls, (scope, "CLIENT"): calls})
    if arm == "fastmcp-native":
        expected = Counter({(FASTMCP_SCOPE, "SERVER"): calls, (SDK_SCOPE, "CLIENT"): calls})
    elif arm == "fastmcp-ours":
        expected = Counter({(FASTMCP_SCOPE, "SERVER"): calls, (OURS_SCOPE, "CLIENT"): calls})
    failures = []
    if spans != expected:
        failures.append(f"{arm}: spans {dict(spans)}, expected {dict(expected)}")
    with_points = arm in ("ours", "analytics", "fastmcp-ours")
    expected_points = Counter(dict.fromkeys(OPERATION_METRICS, calls)) if with_points else Counter()
    if points != expected_points:
        failures.append(f"{arm}: metric points {dict(points)}, expected {dict(expected_points)}")
    return failures


def describe(spans: Counter[tuple[str, str]], calls: int) -> str:
    if not spans:
        return "0"
    per_call = sum(spans.values()) / calls
    by_kind = sorted(spans.items(), key=lambda item: item[0][1], reverse=True)  # SERVER before CLIENT
    kinds = " + ".join(f"{n / calls:g} {kind}" for (_, kind), n in by_kind)
    scopes = ",".join(sorted({scope for scope, _ in spans}))
    return f"{per_call:g} ({kinds}; {scopes})"


async def main_async(args: argparse.Namespace) -> int:
    bench = Bench()
    wall: dict[str, list[float]] = {arm: [] for arm in ARMS}
    cpu: dict[str, list[float]] = {arm: [] for arm in ARMS}
    shapes: dict[str, str] = {}
    delivered: dict[str, Delivered] = {}
    floor_wall: list[float] = []
    floor_cpu: list[float] = []
    failures: list[str] = []
    for round_ in range(args.rounds):
        order = ARMS[round_ % len(ARMS) :] + ARMS[: round_ % len(ARMS)]
        for arm in order:
            wall_s, cpu_s, problems, spans = await bench.run_arm(arm, args.calls, args.warmup)
            wall[arm].append(wall_s / args.calls * 1e6)
            cpu[arm].append(cpu_s / args.calls * 1e6)
            shapes[arm] = describe(spans, args.calls)
            delivered[arm] = bench.delivered
            failures += [f"round {round_ + 1}: {p}" for p in problems]
        floor_s, floor_cpu_s = bench.floor.run(args.calls)  # type: ignore[union-attr] - ``ours`` ran
        bench.flush()
        floor_wall.append(floor_s / args.calls * 1e6)
        floor_cpu.append(floor_cpu_s / args.calls * 1e6)
        timings = ", ".join(f"{arm} {wall[arm][-1]:.1f}" for arm in ARMS) + f"; sdk floor {floor_wall[-1]:.1f}"
        print(f"round {round_ + 1}/{args.rounds} (wall us/call): {timings}", flush=True)

    med_wall = {arm: statistics.median(values) for arm, values in wall.items()}
    med_cpu = {arm: statistics.median(values) for arm, values in cpu.items()}

    def ratio(arm: str, base: str) -> str:
        return f"{med_wall[arm] / med_wall[base]:.2f}/{med_cpu[arm] / med_cpu[base]:.2f}"

    print()
    print("medians over rounds; ratios are wall/cpu; cpu = process time (includes the span export thread)")
    if FASTMCP_ARMS:
        print("fastmcp arms: 'vs none' is against fastmcp-none")
    header = f"{'arm':<14} {'wall us/call':>12} {'min..max':>15} {'cpu us/call':>11} {'vs none':>9}"
    print(header + (f" {'vs sdk':>9}" if IS_V2 else "") + "  spans/call (timed calls); attributes/call")
    for arm in ARMS:
        spread = f"{min(wall[arm]):.0f}..{max(wall[arm]):.0f}"
        row = f"{arm:<14} {med_wall[arm]:12.1f} {spread:>15} {med_cpu[arm]:11.1f} {ratio(arm, baseline(arm)):>9}"
        vs_sdk = ratio(arm, "sdk-builtin") if IS_V2 and arm not in FASTMCP_ARMS else ""
        attributes = delivered[arm].text()
        print(row + (f" {vs_sdk:>9}" if IS_V2 else "") + f"  {shapes[arm]}" + (f"; {attributes}" if attributes else ""))
    floor, floor_c = statistics.median(floor_wall), statistics.median(floor_cpu)
    print(
        f"{'sdk floor':<14} {floor:12.1f} {'':>15} {floor_c:11.1f}  the OTel SDK work of ours alone (2 spans, "
        f"2 points, propagation), no MCP: none + floor = {(med_wall['none'] + floor) / med_wall['none']:.2f}x none"
    )
    print()
    targets = [("none", 1.25)] + ([("sdk-builtin", 1.0)] if IS_V2 else [])
    for base, limit in targets:
        met = med_wall["ours"] / med_wall[base] <= limit
        verdict = "met" if met else "NOT met"
        print(f"target ours/{base} <= {limit:.2f}: {ratio('ours', base)} (wall/cpu), {verdict} on wall")
    met = med_wall["analytics"] / med_wall["ours"] <= 1.10
    verdict = "met" if met else "NOT met"
    print(f"target analytics/ours <= 1.10: {ratio('analytics', 'ours')} (wall/cpu), {verdict} on wall")
    for failure in failures:
        print(f"CHECK FAILED {failure}")
    print("span/metric checks:", "FAILED" if failures else "ok")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=1000, help="timed round trips per arm per round")
    parser.add_argument("--rounds", type=int, default=9, help="rounds; each runs every arm once")
    parser.add_argument("--warmup", type=int, default=100, help="untimed round trips before each timed run")
    args = parser.parse_args()
    print(
        f"mcp {MCP_VERSION}, opentelemetry-sdk {version('opentelemetry-sdk')}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), {sys.platform}"
    )
    print(
        f"{args.calls} sequential in-memory tools/call round trips x {args.rounds} rounds, warmup {args.warmup}; "
        f"arms interleaved: {', '.join(ARMS)}"
    )
    return anyio.run(main_async, args)


if __name__ == "__main__":
    sys.exit(main())

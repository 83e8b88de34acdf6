"""Instructions per in-memory ``tools/call`` round trip for each arm of ``roundtrip.py``, counted by callgrind.

Run from the repository root, with ``valgrind`` on the PATH (Debian: ``apt install valgrind``) and the same
environment as ``roundtrip.py``::

    python benchmarks/instructions.py [--arms none,sdk-builtin,ours] [--calls 100,400] [--repeat 2] [--jobs 2]

Wall-clock timings on a shared machine move by tens of percent between runs; instruction counts do not. Each
arm runs in child processes under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``) with the smaller and
with the larger number of timed calls of ``roundtrip.py``'s ``Bench.run_arm`` (same server, client, SDK
providers and span/metric checks); the difference in instructions divided by the difference in calls is one
round trip, with interpreter startup, imports and session setup cancelled out. Each count is the least of
``--repeat`` runs: repeats agree to within 0.05%, but a run on an overloaded machine was once seen 45M
instructions above its repeats (timing-dependent work: threads, timeouts). Every thread counts, the span export
thread too. ``sdk floor`` is ``roundtrip.SdkFloor`` counted the same way: the OTel
SDK work the core asks for per round trip, with nothing else.

Next to the instructions each instrumented arm adds over its baseline (``none``; ``fastmcp-none`` for the fastmcp
arms), what it delivers per round trip (``roundtrip.Delivered``, from the larger run): spans, attributes (the spans'
own, plus each histogram measurement's data-point attributes) and metric points (histogram measurements), and the
added instructions per span and per attribute delivered. Both divide the whole addition, metrics included, so they
are costs per unit of telemetry, not the cost of one span or one attribute alone.

An instruction count ranks work, not nanoseconds: it does not see cache misses, so a ratio of counts is
usually a little below the wall-clock ratio of the same arms.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import roundtrip

FLOOR = "sdk floor"
WARMUP = 50
COLLECTED = re.compile(r"Collected : (\d+)")
DELIVERED = re.compile(r"^DELIVERED (\S+) (\S+) (\S+) (\S+)$", re.MULTILINE)
NOTHING = roundtrip.Delivered()


def report(delivered: roundtrip.Delivered) -> None:
    """Hands the child's delivered telemetry per round trip to the parent (on stdout)."""
    print(f"DELIVERED {delivered.spans!r} {delivered.span_attributes!r} {delivered.points!r} "
          f"{delivered.point_attributes!r}")  # fmt: skip


def child(arm: str, calls: int) -> int:
    """Runs ``calls`` round trips of ``arm`` (or of the SDK floor) once; exit status 1 if a check failed."""
    bench = roundtrip.Bench()
    if arm == FLOOR:
        anyio.run(bench.run_arm, "ours", 20, WARMUP)  # samples the spans and points the floor repeats
        _, measured_before, attributes_before = bench.measurements()
        bench.floor.run(calls)  # type: ignore[union-attr]
        spans = bench.flush()
        _, measured, attributes = bench.measurements()
        report(roundtrip.Delivered(sum(spans.values()) / calls, bench.exporter.taken_attributes / calls,
                                   (measured - measured_before) / calls, (attributes - attributes_before) / calls))  # fmt: skip
        return 0
    _, _, failures, _ = anyio.run(bench.run_arm, arm, calls, WARMUP)
    report(bench.delivered)
    for failure in failures:
        print(f"CHECK FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def count(arm: str, calls: int) -> tuple[int, roundtrip.Delivered]:
    """Instructions of one child run under callgrind, and what its timed calls delivered per round trip."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, "--child", arm, str(calls)]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"}
    )
    found = COLLECTED.search(done.stderr)
    delivered = DELIVERED.search(done.stdout)
    if done.returncode != 0 or found is None or delivered is None:
        raise SystemExit(f"{arm} with {calls} calls failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1)), roundtrip.Delivered(*(float(value) for value in delivered.groups()))


def per_call(arm: str, small: int, large: int, repeat: int) -> tuple[float, roundtrip.Delivered]:
    """Instructions per round trip, and what the larger run delivered per round trip."""

    def least(calls: int) -> tuple[int, roundtrip.Delivered]:
        runs = [count(arm, calls) for _ in range(repeat)]
        return min(instructions for instructions, _ in runs), runs[-1][1]

    (smaller, _), (larger, delivered) = least(small), least(large)
    return (larger - smaller) / (large - small), delivered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--arms", default=",".join((*roundtrip.ARMS, FLOOR)), help="comma-separated arms")
    parser.add_argument("--calls", default="100,400", help="the two numbers of timed calls, smaller first")
    parser.add_argument("--repeat", type=int, default=2, help="runs per count; the least count is kept")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="callgrind runs at a time")
    parser.add_argument("--child", nargs=2, metavar=("ARM", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind on the PATH (Debian: apt install valgrind)")
    arms = args.arms.split(",")
    small, large = (int(n) for n in args.calls.split(","))
    print(f"mcp {roundtrip.MCP_VERSION}: instructions per tools/call round trip, callgrind, "
          f"({large} - {small} calls) / {large - small}, least of {args.repeat} runs each")  # fmt: skip
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(arms, pool.map(lambda arm: per_call(arm, small, large, args.repeat), arms), strict=True))
    counts = {arm: instructions for arm, (instructions, _) in results.items()}
    none = counts.get("none")
    builtin = counts.get("sdk-builtin")
    if any(arm in roundtrip.FASTMCP_ARMS for arm in arms):
        print("fastmcp arms: 'added' and 'vs none' are against fastmcp-none")
    print(f"{'arm':<14} {'instr/call':>11} {'added':>10} {'vs none':>8} {'vs sdk':>7}  "
          f"{'spans':>5} {'attrs (span+point)':>18} {'points':>6} {'added/span':>10} {'added/attr':>10}")  # fmt: skip
    for arm, instructions in counts.items():
        if arm == FLOOR:
            continue
        base = counts.get(roundtrip.baseline(arm))
        added = f"{instructions - base:+10,.0f}" if base else ""
        vs_none = f"{instructions / base:8.2f}" if base else ""
        vs_sdk = f"{instructions / builtin:7.2f}" if builtin and arm not in roundtrip.FASTMCP_ARMS else ""
        row = f"{arm:<14} {instructions:11,.0f} {added:>10} {vs_none:>8} {vs_sdk:>7}"
        print(row + per_unit(results[arm][1], instructions - base if base else None))
    if FLOOR in counts:
        floor = counts[FLOOR]
        vs_none = f"{(none + floor) / none:8.2f}" if none else ""
        line = f"{FLOOR:<14} {'':>11} {floor:+10,.0f} {vs_none:>8} {'':>7}" + per_unit(results[FLOOR][1], floor)
        print(line + ("  (vs none: none + floor)" if none else ""))
    return 0


def per_unit(delivered: roundtrip.Delivered, added: float | None) -> str:
    """Spans, attributes and points delivered per round trip; the added instructions per span and attribute."""
    if delivered == NOTHING:
        return ""
    attributes = f"{delivered.attributes:g} ({delivered.span_attributes:g}+{delivered.point_attributes:g})"
    text = f"  {delivered.spans:5g} {attributes:>18} {delivered.points:6g}"
    if added is not None and delivered.spans:
        text += f" {added / delivered.spans:10,.0f}"
    if added is not None and delivered.attributes:
        text += f" {added / delivered.attributes:10,.0f}"
    return text


if __name__ == "__main__":
    sys.exit(main())

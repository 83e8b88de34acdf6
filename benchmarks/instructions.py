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


def child(arm: str, calls: int) -> int:
    """Runs ``calls`` round trips of ``arm`` (or of the SDK floor) once; exit status 1 if a check failed."""
    bench = roundtrip.Bench()
    if arm == FLOOR:
        anyio.run(bench.run_arm, "ours", 20, WARMUP)  # samples the spans and points the floor repeats
        bench.floor.run(calls)  # type: ignore[union-attr]
        bench.flush()
        return 0
    _, _, failures, _ = anyio.run(bench.run_arm, arm, calls, WARMUP)
    for failure in failures:
        print(f"CHECK FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def count(arm: str, calls: int) -> int:
    """Instructions of one child run under callgrind."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, "--child", arm, str(calls)]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"}
    )
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{arm} with {calls} calls failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_call(arm: str, small: int, large: int, repeat: int) -> float:
    def least(calls: int) -> int:
        return min(count(arm, calls) for _ in range(repeat))

    return (least(large) - least(small)) / (large - small)


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
        counts = dict(zip(arms, pool.map(lambda arm: per_call(arm, small, large, args.repeat), arms), strict=True))
    none = counts.get("none")
    builtin = counts.get("sdk-builtin")
    print(f"{'arm':<11} {'instr/call':>11} {'added':>10} {'vs none':>8} {'vs sdk':>7}")
    for arm, instructions in counts.items():
        if arm == FLOOR:
            continue
        added = f"{instructions - none:+10,.0f}" if none else ""
        vs_none = f"{instructions / none:8.2f}" if none else ""
        vs_sdk = f"{instructions / builtin:7.2f}" if builtin else ""
        print(f"{arm:<11} {instructions:11,.0f} {added:>10} {vs_none:>8} {vs_sdk:>7}")
    if FLOOR in counts:
        floor = counts[FLOOR]
        line = f"{FLOOR:<11} {'':>11} {floor:+10,.0f}"
        print(line + (f" {(none + floor) / none:8.2f}  (none + floor)" if none else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

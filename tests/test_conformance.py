"""The official MCP conformance suite (``@modelcontextprotocol/conformance``, its server scenarios) gives the same
verdict on every scenario whether the server is instrumented or not: the instrumentation changes nothing a
conforming client checks.

The suite runs on Node.js; ``.ci/run`` installs it and sets ``MCP_CONFORMANCE_JS`` (and
``MCP_ANALYTICS_REQUIRE_CONFORMANCE=1``, which turns a missing suite into a failure instead of a skip).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.apps.http import serving
from tests.apps.servers import KINDS, build
from tests.conftest import instrumented

SUITE = os.environ.get("MCP_CONFORMANCE_JS", "")
_RESULT = re.compile(r"^[✓✗] (?P<scenario>[\w-]+): (?P<passed>\d+) passed, (?P<failed>\d+) failed$")

if not (SUITE and Path(SUITE).is_file() and shutil.which("node")):
    why = "the conformance suite is not installed (MCP_CONFORMANCE_JS, node): .ci/run installs it"
    if os.environ.get("MCP_ANALYTICS_REQUIRE_CONFORMANCE") == "1":
        raise RuntimeError(why)
    pytest.skip(why, allow_module_level=True)


def verdicts(url: str) -> dict[str, tuple[int, int]]:
    """Every server scenario's (passed, failed) checks against the server at ``url``."""
    run = subprocess.run(["node", SUITE, "server", "--url", url], capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    found = {}
    for line in run.stdout.splitlines():
        match = _RESULT.match(line.strip())
        if match:
            found[match["scenario"]] = (int(match["passed"]), int(match["failed"]))
    assert found, run.stdout + run.stderr
    return found


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_suite_says_the_same_of_an_instrumented_server(kind, stateless):
    with serving(build(kind), stateless=stateless) as server:
        plain = verdicts(server.url)
    with instrumented() as recorded, serving(build(kind), stateless=stateless) as server:
        traced = verdicts(server.url)
    assert traced == plain
    assert sum(passed for passed, _ in plain.values()) >= 5, plain  # the scenarios our test server can serve pass
    assert len(recorded.server_spans()) > len(plain), "the instrumented run was traced"

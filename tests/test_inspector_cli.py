"""The MCP Inspector's CLI (``@modelcontextprotocol/inspector --cli``), a real third-party client, sees the same
answers from an instrumented server as from the same server uninstrumented, but for the two documented changes:
the ``context`` property advertised on each tool, and the verdict key in a failed result's ``_meta``.

``.ci/run`` installs the Inspector and sets ``MCP_INSPECTOR_BIN`` (and ``MCP_ANALYTICS_REQUIRE_INSPECTOR=1``, which
turns a missing Inspector into a failure instead of a skip).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from opentelemetry_instrumentation_mcp.failures import WIRE_KEY
from tests.apps.http import serving
from tests.apps.servers import build, without_intent_property
from tests.conftest import instrumented

INSPECTOR = os.environ.get("MCP_INSPECTOR_BIN", "")

if not (INSPECTOR and Path(INSPECTOR).is_file() and shutil.which("node")):
    why = "the MCP Inspector is not installed (MCP_INSPECTOR_BIN, node): .ci/run installs it"
    if os.environ.get("MCP_ANALYTICS_REQUIRE_INSPECTOR") == "1":
        raise RuntimeError(why)
    pytest.skip(why, allow_module_level=True)

SCRIPT: list[list[str]] = [
    ["--method", "tools/list"],
    ["--method", "tools/call", "--tool-name", "add", "--tool-arg", "a=1", "--tool-arg", "b=2"],
    ["--method", "tools/call", "--tool-name", "echo", "--tool-arg", "text=raise:boom"],
    ["--method", "tools/call", "--tool-name", "nope"],
    ["--method", "prompts/get", "--prompt-name", "review", "--prompt-args", "code=x"],
    ["--method", "prompts/get", "--prompt-name", "missing"],
    ["--method", "resources/read", "--uri", "demo://greeting"],
    ["--method", "resources/read", "--uri", "demo://missing"],
]


def inspect(url: str) -> list[Any]:
    """What the Inspector prints for each call of ``SCRIPT``: the answer as JSON, or its exit code and error text."""
    seen: list[Any] = []
    for call in SCRIPT:
        run = subprocess.run([INSPECTOR, "--cli", url, "--transport", "http", *call], capture_output=True, text=True,
                             timeout=120, stdin=subprocess.DEVNULL, check=False)  # fmt: skip
        try:
            seen.append(json.loads(run.stdout))
        except ValueError:
            seen.append((run.returncode, run.stdout.strip(), run.stderr.strip()))
    return seen


def without_documented_changes(seen: list[Any]) -> list[Any]:
    """The answers less the ``context`` property the instrumentation advertises and its verdict in ``_meta``."""
    cleaned = []
    for seen_answer in seen:
        answer = seen_answer
        if isinstance(answer, dict) and "tools" in answer:
            tools = []
            for tool in answer["tools"]:
                schema = without_intent_property(tool["inputSchema"])
                tools.append(tool if schema is None else {**tool, "inputSchema": schema})
            answer = {**answer, "tools": tools}
        if isinstance(answer, dict) and WIRE_KEY in (answer.get("_meta") or {}):
            meta = {key: value for key, value in answer["_meta"].items() if key != WIRE_KEY}
            answer = {key: value for key, value in answer.items() if key != "_meta"} | ({"_meta": meta} if meta else {})
        cleaned.append(answer)
    return cleaned


@pytest.mark.parametrize(("kind", "stateless"), [("highlevel", False), ("lowlevel", True)],
                         ids=["highlevel-stateful", "lowlevel-stateless"])  # fmt: skip
def test_the_inspector_sees_the_same_answers(kind, stateless):
    with serving(build(kind), stateless=stateless) as server:
        plain = inspect(server.url)
    with instrumented() as recorded, serving(build(kind), stateless=stateless) as server:
        traced = inspect(server.url)
    assert traced != plain, "the documented changes are there"
    assert without_documented_changes(traced) == plain
    assert plain[1]["content"][0]["text"] == "3"
    calls = sorted(span.name for span in recorded.server_spans() if span.name.startswith(("tools/call", "prompts/get")))
    assert calls == sorted(["tools/call add", "tools/call echo", "tools/call nope", "prompts/get review",
                            "prompts/get missing"])  # fmt: skip

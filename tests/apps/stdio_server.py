"""Serves ``tests.apps.servers.build(kind)`` over stdio until stdin closes.

    python tests/apps/stdio_server.py lowlevel|highlevel

It does not instrument itself: run it under ``opentelemetry-instrument`` to
have the ``mcp_analytics`` entry point do it, as a user would. The high-level
server runs through its own stdio runner (``FastMCP.run()`` on 1.x,
``MCPServer.run()`` on 2.x, both ``anyio.run(self.run_stdio_async)``); the
low-level one through ``mcp.server.stdio.stdio_server()`` and ``Server.run``.
Nothing may print to stdout: it is the wire.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Run as a script, sys.path[0] is tests/apps, whose modules (e.g. ``http.py``) would shadow
# top-level names; the repository root goes there instead, so ``tests.apps`` imports.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402

from tests.apps.servers import KINDS, build  # noqa: E402


async def serve_lowlevel(server: Any) -> None:
    from mcp.server.stdio import stdio_server  # noqa: PLC0415 - looked up when serving, as the SDK docs do

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in KINDS:
        print(f"usage: {argv[0]} {'|'.join(KINDS)}", file=sys.stderr)
        return 2
    kind = argv[1]
    server = build(kind)
    if kind == "highlevel":
        server.run()  # stdio is the default transport on both lines
    else:
        anyio.run(serve_lowlevel, server)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Serves ``tests.apps.servers.build(kind)`` over stdio until stdin closes.

    python tests/apps/stdio_server.py lowlevel|highlevel|fastmcp [--exit-span]

It does not instrument itself: run it under ``opentelemetry-instrument`` to
have the ``mcp_analytics`` entry point do it, as a user would. The high-level
server runs through its own stdio runner (``FastMCP.run()`` on 1.x,
``MCPServer.run()`` on 2.x, both ``anyio.run(self.run_stdio_async)``); the
low-level one through ``mcp.server.stdio.stdio_server()`` and ``Server.run``;
``fastmcp`` is ``tests.apps.servers.build_fastmcp()`` through its own runner
(``fastmcp.FastMCP.run("stdio")``, in the mode ``FASTMCP_TELEMETRY_MODE`` sets).
Nothing may print to stdout: it is the wire.

``--exit-span``: once the server has returned (stdin closed), end one INTERNAL
span ``stdio server exited`` from scope ``tests.apps.stdio_server`` through the
global tracer provider, as application code would; a test that waits for it
knows the process shut down cleanly and flushed what it had.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    # Run as a script, sys.path[0] is tests/apps, whose modules (e.g. ``http.py``) would shadow
    # top-level names; the repository root goes there instead, so ``tests.apps`` imports.
    HERE = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
    if str(HERE.parents[1]) not in sys.path:
        sys.path.insert(0, str(HERE.parents[1]))

import anyio

from tests.apps.servers import KINDS, build, build_fastmcp


async def serve_lowlevel(server: Any) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


FASTMCP = "fastmcp"
EXIT_SPAN = "stdio server exited"
EXIT_SCOPE = "tests.apps.stdio_server"


def main(argv: list[str]) -> int:
    args = argv[1:]
    exit_span = "--exit-span" in args
    if exit_span:
        args.remove("--exit-span")
    if len(args) != 1 or args[0] not in (*KINDS, FASTMCP):
        print(f"usage: {argv[0]} {'|'.join((*KINDS, FASTMCP))} [--exit-span]", file=sys.stderr)
        return 2
    kind = args[0]
    server = build_fastmcp() if kind == FASTMCP else build(kind)
    if kind == FASTMCP:
        server.run("stdio", show_banner=False)
    elif kind == "highlevel":
        server.run()  # stdio is the default transport on both lines
    else:
        anyio.run(serve_lowlevel, server)
    if exit_span:
        from opentelemetry import trace

        trace.get_tracer(EXIT_SCOPE).start_span(EXIT_SPAN).end()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

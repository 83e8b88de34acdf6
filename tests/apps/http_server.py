"""Serves ``tests.apps.servers.build(kind)`` over streamable HTTP on 127.0.0.1 until stopped.

    python tests/apps/http_server.py lowlevel|highlevel PORT

Like ``stdio_server.py`` it does not instrument itself: run it under ``opentelemetry-instrument``,
as a user would. It prints ``ready`` on stdout once it listens.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":  # as in stdio_server.py: the repository root on sys.path, not tests/apps
    HERE = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
    if str(HERE.parents[1]) not in sys.path:
        sys.path.insert(0, str(HERE.parents[1]))

import uvicorn

from tests.apps.http import asgi_app
from tests.apps.servers import build


class _Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
        await super().startup(sockets)
        print("ready", flush=True)


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    app = asgi_app(build(kind), stateless=False)
    _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)).run()


if __name__ == "__main__":
    main()

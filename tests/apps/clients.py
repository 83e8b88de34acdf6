"""Ways to connect a real ``ClientSession`` to a server in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp import ClientSession
from mcp.shared.memory import create_client_server_memory_streams

from tests.apps.servers import runnable


@asynccontextmanager
async def in_memory(server: Any, **client_kwargs: Any) -> AsyncIterator[ClientSession]:
    """An initialized client session to ``server`` over in-memory streams; the server stops on exit."""
    lowlevel = runnable(server)
    async with (
        create_client_server_memory_streams() as (client_streams, server_streams),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(lambda: lowlevel.run(*server_streams, lowlevel.create_initialization_options()))
        async with ClientSession(*client_streams, **client_kwargs) as client:
            await client.initialize()
            yield client
        tg.cancel_scope.cancel()

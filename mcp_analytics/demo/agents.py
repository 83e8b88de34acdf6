"""The demo's scripted agent sessions: different users and clients, intents, and every kind of failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mcp import ClientSession, Implementation
from mcp.shared._httpx_utils import create_mcp_http_client  # the SDK's own HTTP client factory, on both lines

try:
    from mcp.client.streamable_http import streamable_http_client
except ImportError:  # mcp < 1.24 names it streamablehttp_client and takes headers itself
    from mcp.client.streamable_http import streamablehttp_client  # type: ignore[attr-defined]  # 1.x; mypy sees 2.x

    streamable_http_client = None  # type: ignore[assignment]

USER_HEADER = "x-demo-user"
"""Who is calling: in the demo a gateway header; in production your auth (see ``identify``)."""

Step = tuple[str, str, dict[str, Any]]  # (kind, name, arguments): kind is tool, prompt or resource


@dataclass
class Agent:
    user: str | None
    client: str
    client_version: str
    stateless: bool
    steps: list[Step] = field(default_factory=list)


AGENTS = [
    Agent("alice", "claude-ai", "0.1.0", False, [
        ("tool", "search_docs", {"query": "sessions", "context": "The user asks how stateless sessions are counted."}),
        ("tool", "get_page", {"slug": "sessions", "context": "Reading the page the search found for the user."}),
        ("prompt", "explain_page", {"slug": "sessions"}),
        ("resource", "docs://pages", {}),
        ("tool", "service_status", {"service": "api", "context": "The user wonders whether the API is down."}),
        ("tool", "open_ticket", {"title": "Session counts look low", "severity": 3,
                                 "context": "The user wants support to look at their session numbers."}),
    ]),
    Agent("bob", "cursor-vscode", "1.6.0", False, [
        ("tool", "service_status", {"service": "billing", "context": "The user's invoice page fails to load."}),
        ("tool", "open_ticket", {"title": "Billing is down", "severity": "urgent",
                                 "context": "The user wants to escalate the billing outage."}),
        ("tool", "delete_page", {"slug": "billing"}),
        ("tool", "get_page", {"slug": "failures", "context": "The user asks what an upstream failure means."}),
        ("prompt", "explain_page", {"slug": "failures", "audience": "support engineer"}),
    ]),
    Agent("carol", "claude-code", "2.1.0", True, [
        ("tool", "search_docs", {"query": "exporters otlp", "context": "The user sets up tracing to Tempo."}),
        ("tool", "get_page", {"slug": "exporters", "context": "The user needs the exporter settings."}),
        ("tool", "get_page", {"slug": "changelog", "context": "The user asks what changed in the last release."}),
    ]),
    Agent(None, "mcp-inspector", "0.17.0", True, [
        ("tool", "search_docs", {"query": "quickstart"}),
        ("tool", "service_status", {"service": "dashboard"}),
    ]),
]  # fmt: skip


def _failed(result: Any) -> bool:
    return bool(getattr(result, "is_error", None) or getattr(result, "isError", False))


@asynccontextmanager
async def _connect(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    if streamable_http_client is None:
        async with streamablehttp_client(url, headers=headers) as streams:
            yield streams
        return
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


async def run_agent(agent: Agent, url: str, log: list[str]) -> None:
    headers = {USER_HEADER: agent.user} if agent.user else {}
    async with _connect(url, headers) as streams:
        info = Implementation(name=agent.client, version=agent.client_version)
        async with ClientSession(streams[0], streams[1], client_info=info) as session:
            await session.initialize()
            await session.list_tools()
            for kind, name, arguments in agent.steps:
                outcome = "ok"
                try:
                    if kind == "tool":
                        outcome = "error" if _failed(await session.call_tool(name, arguments)) else "ok"
                    elif kind == "prompt":
                        await session.get_prompt(name, arguments)
                    else:
                        await session.read_resource(name)
                except Exception as error:  # noqa: BLE001 - a JSON-RPC error answer is part of the script
                    outcome = f"error ({error})"
                shown = {k: v for k, v in arguments.items() if k != "context"}
                log.append(f"  {agent.user or 'anonymous':<9} {agent.client:<14} {kind} {name}{shown or ''}: {outcome}")

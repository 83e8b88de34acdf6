"""A client on every stateless call: the span of each stateless HTTP request names the client that sent it.

Three ways, tried in this order: the request's own client info (2026-07-28 requests, and clients
instrumented by this package, which add it to ``_meta``); what the same caller (address, user agent,
credentials) named in its stateless ``initialize``; otherwise none.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
from mcp import ClientSession

from opentelemetry_instrumentation_mcp.callers import Callers
from opentelemetry_instrumentation_mcp.records import CLIENT_INFO_META_KEY
from tests.apps.http import connect, serving
from tests.apps.servers import IS_V2, KINDS, build, handshake_version

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def implementation(name: str, version: str) -> Any:
    from mcp import Implementation

    return Implementation(name=name, version=version)


async def run_client(url: str, name: str, version: str) -> None:
    async with (
        connect(url) as streams,
        ClientSession(streams[0], streams[1], client_info=implementation(name, version)) as client,
    ):
        await client.initialize()
        await client.list_tools()
        await client.call_tool("add", {"a": 1, "b": 2})


def calls(recorded: Any) -> list[Any]:
    return [span for span in recorded.server_spans() if span.name in ("tools/list", "tools/call add")]


async def test_an_instrumented_client_names_itself_on_every_stateless_request(recorded, kind):
    """Two clients of one caller (same address and user agent), interleaved: only the client info each
    request carries can tell them apart (what the caller named last is the other one)."""
    with serving(build(kind), stateless=True) as server:
        async with AsyncExitStack() as stack:
            sessions = []
            for name, version in (("claude-code", "2.1.0"), ("cursor", "1.6.0")):
                streams = await stack.enter_async_context(connect(server.url))
                info = implementation(name, version)
                session = await stack.enter_async_context(ClientSession(streams[0], streams[1], client_info=info))
                await session.initialize()
                sessions.append(session)
            for session in reversed(sessions):
                await session.list_tools()
            for session in sessions:
                await session.call_tool("add", {"a": 1, "b": 2})
    found = [
        (span.name, span.attributes["mcp.client.name"], span.attributes["mcp.client.version"])
        for span in calls(recorded)
    ]
    assert found == [
        ("tools/list", "cursor", "1.6.0"),
        ("tools/list", "claude-code", "2.1.0"),
        ("tools/call add", "claude-code", "2.1.0"),
        ("tools/call add", "cursor", "1.6.0"),
    ]
    for span in recorded.server_spans():
        if span.name.startswith("notifications/") and not IS_V2:
            continue  # mcp 1.x hands notifications over without their HTTP request
        assert span.attributes["user_agent.original"].startswith("python-httpx")
        assert span.attributes["mcp.session.stateless"] is True
    # The client span says which client sent it, as ever; its request carried the client info.
    assert {span.attributes["mcp.client.name"] for span in recorded.client_spans()} == {"claude-code", "cursor"}


async def test_a_stateful_server_is_not_sent_the_client_info(recorded, kind):
    seen: list[Any] = []

    def remember(app: Any) -> Any:
        async def middleware(scope: Any, receive: Any, send: Any) -> None:
            async def reading() -> Any:
                message = await receive()
                seen.append(message.get("body", b""))
                return message

            await app(scope, reading if scope["type"] == "http" else receive, send)

        return middleware

    with serving(build(kind), wrap=remember) as server:
        await run_client(server.url, "claude-code", "2.1.0")
    assert seen and not [body for body in seen if CLIENT_INFO_META_KEY.encode() in body]
    assert {span.attributes["mcp.client.name"] for span in calls(recorded)} == {"claude-code"}


def rpc(method: str, params: dict[str, Any], request_id: int | None = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if request_id is not None:
        message["id"] = request_id
    return message


async def post(
    http: httpx.AsyncClient, url: str, body: dict[str, Any], user_agent: str, token: str | None = None
) -> None:
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": handshake_version(),
        "user-agent": user_agent,
    }
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    response = await http.post(url, headers=headers, json=body)
    assert response.status_code in (200, 202), response.text


INITIALIZE = {"protocolVersion": handshake_version(), "capabilities": {}}


async def test_an_uninstrumented_caller_is_known_by_its_initialize(recorded, kind):
    """A raw caller names itself only in ``initialize``: its later requests are tied to it on the wire."""
    with serving(build(kind), stateless=True) as server:
        async with httpx.AsyncClient() as http:
            for agent, token in (("Inspector/0.17", None), ("Inspector/0.17", "bob-token"), ("other-agent/1", None)):
                if agent != "other-agent/1":  # one caller that never initializes
                    info = {"name": f"inspector-{token or 'anonymous'}", "version": "0.17.0"}
                    await post(http, server.url, rpc("initialize", {**INITIALIZE, "clientInfo": info}), agent, token)
                await post(http, server.url, rpc("tools/list", {}, 2), agent, token)
    lists = [span for span in recorded.server_spans() if span.name == "tools/list"]
    assert [(span.attributes.get("mcp.client.name"), span.attributes["user_agent.original"]) for span in lists] == [
        ("inspector-anonymous", "Inspector/0.17"),
        ("inspector-bob-token", "Inspector/0.17"),
        (None, "other-agent/1"),
    ]
    # Each caller has an id of its own, shared by its initialize and its later requests.
    initializes = [span for span in recorded.server_spans() if span.name == "initialize"]
    ids = [span.attributes["mcp.caller.id"] for span in lists]
    assert len(set(ids)) == 3 and all(len(caller) == 32 for caller in ids)
    assert [span.attributes["mcp.caller.id"] for span in initializes] == ids[:2]


def test_callers_are_bounded_in_count_and_time():
    callers = Callers(limit=2, window=60)
    first = [callers.visit(("127.0.0.1", f"agent/{n}", None)) for n in range(3)]
    assert len({caller.id for caller in first}) == 3
    assert callers.visit(("127.0.0.1", "agent/2", None)) is first[2]
    assert callers.visit(("127.0.0.1", "agent/0", None)) is not first[0], "the oldest is forgotten when full"
    assert callers.evicted == 2  # agent/0 for agent/2, then agent/1 for agent/0's return
    expired = Callers(window=0)
    wire = ("127.0.0.1", "agent", None)
    assert expired.visit(wire) is not expired.visit(wire), "past its window: a new caller"

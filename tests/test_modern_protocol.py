"""mcp 2.x only: the 2026-07-28 protocol (no initialize, no session, client info in every ``_meta``).

Collected on 2.x only (see conftest.py): 1.x does not speak this revision.
"""

from __future__ import annotations

import pytest
from mcp import Client

from tests.apps.http import serving
from tests.apps.servers import KINDS, build, sdk_types

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def exercise(client: Client) -> None:
    await client.list_tools()
    await client.call_tool("add", {"a": 1, "b": 2})


def assert_stateless_modern(recorded, client_name: str) -> None:
    spans = recorded.server_spans()
    # Exactly one server span per request the client sent (the client may re-list tools on its own).
    assert [span.name for span in spans] == [span.name for span in recorded.client_spans()]
    assert spans[0].name == "server/discover" and spans[-1].name == "tools/call add"
    assert {span.name for span in spans} == {"server/discover", "tools/list", "tools/call add"}
    for span in spans:
        assert "mcp.session.id" not in span.attributes
        assert span.attributes["mcp.session.stateless"] is True
        assert span.attributes["mcp.protocol.version"] == "2026-07-28"
        assert span.attributes["mcp.client.name"] == client_name


async def test_in_process_modern_client(recorded, kind):
    info = sdk_types().Implementation(name="Cursor", version="2.0")
    async with Client(build(kind), mode="auto", client_info=info) as client:
        await exercise(client)

    assert_stateless_modern(recorded, "Cursor")
    clients = {span.context.span_id: span for span in recorded.client_spans()}
    for span in recorded.server_spans():
        assert clients[span.parent.span_id].name == span.name
    assert recorded.points("mcp.server.session.duration") == []


async def test_modern_client_over_http(recorded, kind):
    info = sdk_types().Implementation(name="Claude Code", version="1.0")
    with serving(build(kind)) as server:
        async with Client(server.url, mode="auto", client_info=info) as client:
            await exercise(client)

    assert_stateless_modern(recorded, "Claude Code")
    for span in recorded.server_spans():
        assert span.attributes["network.transport"] == "tcp"
        assert span.attributes["client.address"] == "127.0.0.1"
    assert server.session_ids.seen == set()

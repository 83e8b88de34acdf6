"""Bearer auth on streamable HTTP: refused requests still get a span; tokens identify users."""

from __future__ import annotations

import time

import httpx
import pytest
from opentelemetry.trace import StatusCode

from tests.apps.http import serving
from tests.apps.servers import IS_V2, handshake_version

pytestmark = pytest.mark.anyio

CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}


def access_token(**fields):
    from mcp.server.auth.provider import AccessToken

    return AccessToken(client_id="agent-app", scopes=["mcp"], **fields)


class Verifier:
    """A token verifier with four tokens: good, expired, without the required scope, and a subject-less one."""

    async def verify_token(self, token: str):
        return {
            "good": access_token(token="good", subject="alice"),
            "expired": access_token(token="expired", expires_at=int(time.time()) - 60),
            "narrow": access_token(token="narrow").model_copy(update={"scopes": ["other"]}),
            "app": access_token(token="app"),
        }.get(token)


def secured_server():
    from mcp.server.auth.settings import AuthSettings

    if IS_V2:
        from mcp.server.mcpserver import MCPServer as HighLevel
    else:
        from mcp.server.fastmcp import FastMCP as HighLevel
    settings = AuthSettings(issuer_url="http://127.0.0.1:9", resource_server_url=None, required_scopes=["mcp"])
    app = HighLevel("secured", auth=settings, token_verifier=Verifier())

    @app.tool()
    def whoami() -> str:
        """Answers hello."""
        return "hello"

    return app


async def post(url: str, token: str | None, payload: dict) -> httpx.Response:
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    headers["mcp-protocol-version"] = handshake_version()
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient() as http:
        return await http.post(url, json=payload, headers=headers)


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        (None, 401, "missing_token"),
        ("forged", 401, "invalid_token"),
        ("expired", 401, "expired_token"),
        ("narrow", 403, "insufficient_scope"),
    ],
)
async def test_refused_requests_get_a_span_and_a_metric_point(recorded, token, status, reason):
    with serving(secured_server()) as server:
        response = await post(server.url, token, CALL)
    assert response.status_code == status, "the SDK answers as ever"

    (span,) = recorded.server_spans()
    assert span.name == "tools/call whoami"
    assert span.attributes["mcp.method.name"] == "tools/call"
    assert span.attributes["jsonrpc.request.id"] == "7"
    assert span.attributes["gen_ai.tool.name"] == "whoami"
    assert span.attributes["mcp.failure.origin"] == "auth"
    assert span.attributes["mcp.failure.reason"] == reason
    assert span.attributes["error.type"] == str(status)
    assert span.attributes["network.transport"] == "tcp"
    assert span.attributes["client.address"] == "127.0.0.1"
    assert span.status.status_code == StatusCode.UNSET, "a client's mistake, not the server's failure"
    (point,) = recorded.points("mcp.server.operation.duration")
    assert point.attributes["mcp.failure.origin"] == "auth"
    assert point.attributes["error.type"] == str(status)


def has_subject() -> bool:
    from mcp.server.auth.provider import AccessToken

    return "subject" in AccessToken.model_fields  # tokens carry a subject from mcp 1.2x on


@pytest.mark.parametrize(("token", "user"), [("good", "alice"), ("app", "agent-app")])
async def test_without_a_hook_the_token_identifies_the_user(recorded, token, user):
    if not has_subject():
        user = "agent-app"  # no subject on this SDK's tokens: the client id identifies
    initialize = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": handshake_version(), "capabilities": {},
                   "clientInfo": {"name": "curl", "version": "1"}},
    }  # fmt: skip
    with serving(secured_server(), stateless=True) as server:
        assert (await post(server.url, token, initialize)).status_code == 200
        answered = await post(server.url, token, CALL)
    assert answered.status_code == 200
    (call,) = [span for span in recorded.server_spans() if span.name == "tools/call whoami"]
    assert call.attributes["user.id"] == user
    assert "mcp.failure.origin" not in call.attributes

"""Bearer auth on streamable HTTP: refused requests still get a span; tokens identify users."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest
from mcp import ClientSession
from opentelemetry.trace import StatusCode

from tests.apps.http import serving
from tests.apps.servers import IS_V2, handshake_version

pytestmark = pytest.mark.anyio

CALL = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}


REFUSALS = [  # the server's verdict for each token the verifier below refuses
    (None, 401, "missing_token"),
    ("forged", 401, "invalid_token"),
    ("expired", 401, "expired_token"),
    ("narrow", 403, "insufficient_scope"),
]


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


@pytest.mark.parametrize(("token", "status", "reason"), REFUSALS)
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


@asynccontextmanager
async def bearer_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    """A real ``ClientSession`` over streamable HTTP sending ``token`` as its bearer token (not initialized)."""
    from mcp.client import streamable_http

    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    if not hasattr(streamable_http, "streamable_http_client"):  # mcp < 1.24
        async with (
            streamable_http.streamablehttp_client(url, headers=headers) as streams,
            ClientSession(streams[0], streams[1]) as client,
        ):
            yield client
        return
    http = getattr(streamable_http, "httpx2", None) or streamable_http.httpx  # the HTTP client its line uses
    async with (
        http.AsyncClient(headers=headers) as http_client,
        streamable_http.streamable_http_client(url, http_client=http_client) as streams,
        ClientSession(streams[0], streams[1]) as client,
    ):
        yield client


async def refused_initialize(url: str, token: str | None) -> BaseException:
    """What the SDK raises to a client whose ``initialize`` the server refuses."""
    with pytest.raises(BaseException) as raised, anyio.fail_after(10):  # noqa: PT011 - the SDK's own error, any line
        async with bearer_session(url, token) as client:
            await client.initialize()
    return raised.value


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


class WithoutVerdictHeader:
    """ASGI middleware that drops our verdict header: the server a client sees when it is not instrumented."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def strip(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"mcp-otel-analytics-failure"]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, strip)


@pytest.mark.parametrize("stateless", [False, True], ids=["stateful", "stateless"])
@pytest.mark.parametrize(("token", "status", "reason"), REFUSALS)
async def test_a_refusal_has_one_verdict_on_both_sides(recorded, token, status, reason, stateless):
    with serving(secured_server(), stateless=stateless) as server:
        error = await refused_initialize(server.url, token)

    # The caller gets what its SDK line raises for a refusal, as without the instrumentation.
    assert [type(leaf).__name__ for leaf in leaves(error)] == ["MCPError" if IS_V2 else "HTTPStatusError"]
    (server_span,) = recorded.server_spans()
    (client_span,) = recorded.client_spans()
    assert client_span.name == server_span.name == "initialize"
    assert server_span.parent.span_id == client_span.context.span_id, "one request: the client span is its parent"
    for span in (server_span, client_span):
        assert span.attributes["mcp.failure.origin"] == "auth"
        assert span.attributes["mcp.failure.reason"] == reason
        assert span.attributes["error.type"] == str(status)
        assert "rpc.response.status_code" not in span.attributes, "no JSON-RPC answer was sent"
    assert client_span.status.status_code == StatusCode.ERROR
    assert client_span.status.description == f"refused by the server's auth (HTTP {status}): {reason}"
    assert server_span.status.status_code == StatusCode.UNSET
    for metric in ("mcp.client.operation.duration", "mcp.server.operation.duration"):
        (point,) = recorded.points(metric)
        assert point.attributes["mcp.failure.origin"] == "auth"
        assert point.attributes["mcp.failure.reason"] == reason
        assert point.attributes["error.type"] == str(status)


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        (None, 401, "missing_token"),
        ("forged", 401, "invalid_token"),
        ("expired", 401, "invalid_token"),  # RFC 6750 says invalid_token for an expired one too
        ("narrow", 403, "insufficient_scope"),
    ],
)
async def test_without_the_servers_verdict_the_client_judges_the_refusal_itself(recorded, token, status, reason):
    with serving(secured_server(), wrap=WithoutVerdictHeader) as server:
        await refused_initialize(server.url, token)

    (client_span,) = recorded.client_spans()
    assert client_span.attributes["mcp.failure.origin"] == "auth"
    assert client_span.attributes["mcp.failure.reason"] == reason
    assert client_span.attributes["error.type"] == str(status)


async def test_the_refusal_itself_is_unchanged_but_for_the_verdict_header(recorded):
    with serving(secured_server()) as server:
        instrumented = await post(server.url, "expired", CALL)
    with serving(secured_server(), wrap=WithoutVerdictHeader) as server:
        stripped = await post(server.url, "expired", CALL)

    assert instrumented.headers["mcp-otel-analytics-failure"] == '{"origin":"auth","reason":"expired_token"}'
    assert instrumented.status_code == stripped.status_code == 401
    assert instrumented.content == stripped.content
    assert instrumented.headers["www-authenticate"] == stripped.headers["www-authenticate"]
    assert "mcp-otel-analytics-failure" not in stripped.headers


async def test_an_accepted_request_is_answered_without_a_verdict_header(recorded):
    with serving(secured_server(), stateless=True) as server:
        answered = await post(server.url, "good", {**CALL, "method": "ping", "params": {}})
    assert answered.status_code == 200
    assert "mcp-otel-analytics-failure" not in answered.headers

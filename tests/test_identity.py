"""Identified users: an ``identify`` hook, called once per session (per request when stateless)."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import anyio
import pytest

from opentelemetry_instrumentation_mcp import IdentifyRequest, UserIdentity
from tests.apps.clients import in_memory
from tests.apps.http import http_client, serving
from tests.apps.servers import KINDS, build, sdk_types
from tests.conftest import instrumented

pytestmark = pytest.mark.anyio


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


class Directory:
    """A user directory: identifies a caller by its client name; remembers every question."""

    def __init__(self) -> None:
        self.asked: list[IdentifyRequest] = []

    def __call__(self, request: IdentifyRequest) -> UserIdentity | None:
        self.asked.append(request)
        name = (request.params or {}).get("name")
        return UserIdentity(user_id="u-42", user_name="Alice", user_data={"plan": "pro"}) if name else None


async def test_identified_once_per_session_and_on_every_later_span(kind):
    directory = Directory()
    with instrumented(identify=directory) as recorded:
        async with in_memory(build(kind)) as client:
            await client.list_tools()
            for _ in range(3):
                await client.call_tool("add", {"a": 1, "b": 2})
        async with in_memory(build(kind)) as client:
            await client.call_tool("add", {"a": 1, "b": 2})

    assert len(directory.asked) == 2, "one question per session, on its first tool call"
    first = directory.asked[0]
    assert (first.method, first.params["name"], first.params["arguments"]) == ("tools/call", "add", {"a": 1, "b": 2})
    assert first.headers is None and first.auth_token is None
    assert isinstance(first.session_id, str)
    spans = recorded.server_spans()
    calls = [span for span in spans if span.name == "tools/call add"]
    assert len(calls) == 4
    for span in calls:
        assert span.attributes["user.id"] == "u-42"
        assert span.attributes["user.name"] == "Alice"
        assert json.loads(span.attributes["mcp.user.data"]) == {"plan": "pro"}
    assert "user.id" not in next(span for span in spans if span.name == "tools/list").attributes


async def test_user_data_is_redacted_and_bounded(caplog):
    def identify(request: IdentifyRequest) -> UserIdentity:
        return UserIdentity("u-1", user_data={"email": "bob@example.com", "seats": 3, "note": "x" * 5000})

    def small(request: IdentifyRequest) -> UserIdentity:
        return UserIdentity(
            "u-2", user_data={"email": "bob@example.com", "seats": 3, "team": {"owner": "bob@example.com"}}
        )

    redact = lambda text: text.replace("bob@example.com", "<email>")  # noqa: E731
    expected_small = {"email": "<email>", "seats": 3, "team": {"owner": "<email>"}}
    for hook, expected in ((small, expected_small), (identify, None)):
        with instrumented(identify=hook, redact=redact) as recorded:
            async with in_memory(build("lowlevel")) as client:
                await client.call_tool("add", {"a": 1, "b": 2})
        (call,) = [span for span in recorded.server_spans() if span.name == "tools/call add"]
        found = call.attributes.get("mcp.user.data")
        assert (None if found is None else json.loads(found)) == expected
        assert call.attributes["user.id"] in ("u-1", "u-2")
    assert "user_data over 4096 characters as JSON is not recorded" in caplog.text


async def test_async_hook(kind):
    async def identify(request: IdentifyRequest) -> UserIdentity:
        await anyio.sleep(0.01)
        return UserIdentity("u-7")

    with instrumented(identify=identify) as recorded:
        async with in_memory(build(kind)) as client:
            await client.call_tool("add", {"a": 1, "b": 2})
    (call,) = [span for span in recorded.server_spans() if span.name == "tools/call add"]
    assert call.attributes["user.id"] == "u-7"
    assert "user.name" not in call.attributes


async def test_stateless_traffic_is_identified_on_every_request():
    directory = Directory()
    with instrumented(identify=directory) as recorded, serving(build("lowlevel"), stateless=True) as server:
        async with http_client(server.url) as client:
            await client.call_tool("add", {"a": 1, "b": 2})
            await client.call_tool("add", {"a": 3, "b": 4})

    calls = [request for request in directory.asked if request.method == "tools/call"]
    assert len(calls) == 2
    assert calls[0].headers["host"].startswith("127.0.0.1:")
    assert all(
        span.attributes["user.id"] == "u-42" for span in recorded.server_spans() if span.name == "tools/call add"
    )


def raising(request: IdentifyRequest) -> UserIdentity:
    raise RuntimeError("directory down")


def garbage(request: IdentifyRequest) -> object:
    return 42


def sleepy(request: IdentifyRequest) -> UserIdentity:
    time.sleep(3)
    return UserIdentity("never")


async def hanging(request: IdentifyRequest) -> UserIdentity:
    await asyncio.sleep(30)
    return UserIdentity("never")


@pytest.mark.parametrize("hook", [raising, garbage, sleepy, hanging], ids=lambda hook: hook.__name__)
async def test_a_broken_hook_leaves_the_caller_anonymous_and_the_request_untouched(kind, hook, caplog):
    with (
        instrumented(identify=hook, identify_timeout=0.2) as recorded,
        caplog.at_level(logging.WARNING, logger="opentelemetry_instrumentation_mcp"),
    ):
        started = time.perf_counter()
        async with in_memory(build(kind)) as client:
            for _ in range(2):
                result = await client.call_tool("add", {"a": 1, "b": 2})
                assert result.content[0].text == "3"
        elapsed = time.perf_counter() - started

    assert elapsed < 2, "a slow hook costs at most its timeout, once per session"
    for span in recorded.server_spans():
        assert "user.id" not in span.attributes
    warnings = [r for r in caplog.records if "identify hook" in r.getMessage()]
    assert len(warnings) == 1


async def test_identity_on_the_session_is_not_shared_across_concurrent_sessions():
    def identify(request: IdentifyRequest) -> UserIdentity:
        return UserIdentity(f"user-of-{request.session_id}")

    with instrumented(identify=identify) as recorded, serving(build("lowlevel")) as server:

        async def agent(index: int) -> None:
            info = sdk_types().Implementation(name=f"agent-{index}", version="1")
            async with http_client(server.url, client_info=info) as client:
                for _ in range(3):
                    await client.call_tool("add", {"a": index, "b": 1})

        async with anyio.create_task_group() as tg:
            for index in range(5):
                tg.start_soon(agent, index)

    calls = [span for span in recorded.server_spans() if span.name == "tools/call add"]
    assert len(calls) == 15
    for span in calls:
        assert span.attributes["user.id"] == f"user-of-{span.attributes['mcp.session.id']}"

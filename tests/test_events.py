"""Custom events: recorded in the session, from inside a request and from outside by session id."""

from __future__ import annotations

import json

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from opentelemetry_instrumentation_mcp import UserIdentity, publish_custom_event
from tests.apps.clients import in_memory
from tests.apps.servers import KINDS, build
from tests.conftest import instrumented

pytestmark = pytest.mark.anyio


def identify(request) -> UserIdentity:
    return UserIdentity("u-9", user_name="Bob")


def events_of(recorded):
    return [span for span in recorded.spans() if span.attributes.get("mcp.event.kind") == "custom"]


async def test_an_event_from_inside_a_tool_is_a_child_of_its_request():
    server = build("highlevel")

    @server.tool()
    def checkout(cart: str) -> str:
        """Checks out a cart."""
        assert publish_custom_event(
            server,
            name="purchase",
            resource_name="checkout",
            parameters={"cart": cart},
            response={"total": 42},
            message="bought",
            duration=0.25,
        )
        return "ok"

    with instrumented(identify=identify) as recorded:
        async with in_memory(server) as client:
            await client.call_tool("checkout", {"cart": "c-1"})

    (event,) = events_of(recorded)
    (call,) = [span for span in recorded.server_spans() if span.name == "tools/call checkout"]
    assert event.name == "custom purchase"
    assert event.kind == SpanKind.INTERNAL
    assert event.parent.span_id == call.context.span_id
    assert "mcp.method.name" not in event.attributes
    for key in ("mcp.session.id", "mcp.client.name", "mcp.server.name", "user.id", "user.name"):
        assert event.attributes[key] == call.attributes[key], key
    assert event.attributes["mcp.event.name"] == "purchase"
    assert event.attributes["mcp.event.resource_name"] == "checkout"
    assert json.loads(event.attributes["mcp.event.parameters"]) == {"cart": "c-1"}
    assert json.loads(event.attributes["mcp.event.response"]) == {"total": 42}
    assert event.attributes["mcp.event.message"] == "bought"
    assert abs((event.end_time - event.start_time) / 1e9 - 0.25) < 0.001
    assert event.status.status_code == StatusCode.UNSET


@pytest.mark.parametrize("kind", KINDS)
async def test_an_event_from_outside_a_request_by_session_id(kind):
    card = "4111-1111-1111-1111"  # no random id, hex or timestamp of the exported span can hold it
    with instrumented(identify=identify, redact=lambda text: text.replace(card, "****")) as recorded:
        async with in_memory(build(kind)) as client:
            await client.call_tool("add", {"a": 1, "b": 2})
            (call,) = [span for span in recorded.server_spans() if span.name == "tools/call add"]
            session_id = call.attributes["mcp.session.id"]
            assert publish_custom_event(session_id, name="payment_failed", is_error=True, error=f"card {card} declined")

    (event,) = events_of(recorded)
    assert event.parent is None
    assert event.attributes["mcp.session.id"] == session_id
    assert event.attributes["user.id"] == "u-9"
    assert event.attributes["mcp.event.error"] == "card **** declined"
    assert event.attributes["error.type"] == "custom_event_error"
    assert event.status.status_code == StatusCode.ERROR
    assert card not in event.to_json()  # "4111" alone: a timestamp's microseconds held it (15:18:25.941116)


async def test_a_session_this_process_does_not_hold_gets_the_event_under_its_id(recorded):
    """Ended here, or served by another instance behind the same load balancer: the event keeps its session id."""
    async with in_memory(build("lowlevel")) as client:
        await client.send_ping()
    (ping,) = [span for span in recorded.server_spans() if span.name == "ping"]
    assert publish_custom_event(ping.attributes["mcp.session.id"], name="late", message="refund issued")
    assert publish_custom_event("session-of-another-instance", name="webhook")
    assert not publish_custom_event(None, name="outside"), "no session id and no request: nothing to record it under"
    assert not publish_custom_event("", name="empty")
    late, webhook = events_of(recorded)
    assert (late.attributes["mcp.session.id"], late.attributes["mcp.event.message"]) == (
        ping.attributes["mcp.session.id"],
        "refund issued",
    )
    assert webhook.attributes["mcp.session.id"] == "session-of-another-instance"
    assert not {"mcp.client.name", "user.id", "mcp.method.name"} & set(webhook.attributes)

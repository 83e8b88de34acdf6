"""The analytics API over real HTTP on 127.0.0.1: ingest, validation, project isolation, OTLP, fuzzing."""

from __future__ import annotations

import base64
import gzip
import json
import random
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace.export import SpanExportResult

from mcp_analytics.api import create_app
from mcp_analytics.duckdb_store import DuckDBStore
from mcp_analytics.keys import ApiKeys
from mcp_analytics.models import MAX_BODY_BYTES, MAX_EVENTS_PER_BATCH, MAX_TOOLS_LISTED, validated_event
from mcp_analytics.server import in_thread
from mcp_analytics.store import PANELS, StoreUnavailable
from opentelemetry.exporter.mcp_analytics.events import to_event
from tests.apps.clients import in_memory
from tests.apps.servers import build

pytestmark = pytest.mark.anyio

KEY_A, KEY_B = "key-of-project-a", "key-of-project-b"
NOW_NS = time.time_ns()


@dataclass
class Api:
    url: str
    store: DuckDBStore
    http: httpx.Client

    def post(self, path: str, body: bytes, key: str | None = KEY_A, **headers: str) -> httpx.Response:
        if key:
            headers["Authorization"] = f"Bearer {key}"
        headers.setdefault("Content-Type", "application/json")
        return self.http.post(self.url + path, content=body, headers=headers)

    def events(self, events: list[dict], key: str | None = KEY_A) -> httpx.Response:
        return self.post("/v1/events", gzip.compress(json.dumps({"events": events}).encode()), key,
                         **{"Content-Encoding": "gzip"})  # fmt: skip

    def panel(self, name: str, key: str = KEY_A, **params) -> httpx.Response:
        params.setdefault("last", "all")
        return self.http.get(f"{self.url}/v1/panels/{name}", params=params, headers={"Authorization": f"Bearer {key}"})

    def count(self, key: str = KEY_A) -> int:
        return self.panel("summary", key).json()["rows"][0]["events"]


@pytest.fixture(scope="module")
def running():
    store, keys = DuckDBStore(), ApiKeys()
    with in_thread(create_app(store, keys)) as url, httpx.Client(timeout=30) as http:
        yield Api(url, store, http), keys
    store.close()


@pytest.fixture
def api(running, request):
    """One API for the module; each test gets two fresh projects "a" and "b" (keys KEY_A, KEY_B)."""
    api, keys = running
    keys.add(f"a-{request.node.name}", KEY_A)
    keys.add(f"b-{request.node.name}", KEY_B)
    return api


def good(event_id: str = "e1", **fields) -> dict:
    return {"event_id": event_id, "type": "mcp:tools/call", "timestamp_ns": NOW_NS, "resource": "search", **fields}


def test_a_batch_is_stored_and_a_retry_of_it_is_not_counted_twice(api):
    batch = [good(f"e{i}") for i in range(3)]
    first, retry = api.events(batch), api.events(batch)
    assert (first.status_code, first.json()) == (200, {"accepted": 3, "duplicates": 0, "rejected": 0, "errors": []})
    assert (retry.status_code, retry.json()) == (200, {"accepted": 0, "duplicates": 3, "rejected": 0, "errors": []})
    assert api.count() == 3


def test_a_key_reads_and_writes_only_its_own_project(api):
    api.events([good("a1", resource="alpha-tool")], key=KEY_A)
    api.events([good("b1", resource="beta-tool"), good("b2", resource="beta-tool")], key=KEY_B)
    assert [row["tool"] for row in api.panel("tools", KEY_A).json()["rows"]] == ["alpha-tool"]
    assert [row["tool"] for row in api.panel("tools", KEY_B).json()["rows"]] == ["beta-tool"]
    body = api.panel("summary", KEY_B).json()
    assert (body["project"].split("-")[0], body["rows"][0]["events"]) == ("b", 2)
    # A session of project B is invisible to project A, even by its id.
    api.events([good("b3", session_id="secret-session")], key=KEY_B)
    assert api.panel("session", KEY_A, session="secret-session").json()["rows"] == []
    assert len(api.panel("session", KEY_B, session="secret-session").json()["rows"]) == 1


@pytest.mark.parametrize("key", [None, "wrong-key", ""])
def test_without_a_valid_key_nothing_is_read_or_written(api, key):
    response = api.events([good()], key=key)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    assert httpx.get(f"{api.url}/v1/panels/summary", headers=headers).status_code == 401
    assert api.count() == 0


def corrupt_crc(member: bytes) -> bytes:
    return member[:-8] + bytes(4) + member[-4:]


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b"{not json", {}, 400, "not a JSON object"),
        (b"[1, 2]", {}, 422, "not a JSON object"),
        (b'{"events": {"not": "a list"}}', {}, 422, "not a JSON object"),
        (json.dumps({"events": [good(f"e{i}") for i in range(MAX_EVENTS_PER_BATCH + 1)]}).encode(), {}, 422, "not a JSON object"),
        (b"\x00\xff\xfe binary", {}, 400, "not a JSON object"),
        (b"not gzip", {"Content-Encoding": "gzip"}, 400, "gzip"),
        (gzip.compress(json.dumps({"events": [good()]}).encode())[:-6], {"Content-Encoding": "gzip"}, 400, "truncated"),
        (gzip.compress(json.dumps({"events": [good()]}).encode()) + b"garbage", {"Content-Encoding": "gzip"}, 400,
         "after the last gzip member"),
        (corrupt_crc(gzip.compress(json.dumps({"events": [good()]}).encode())), {"Content-Encoding": "gzip"}, 400,
         "incorrect data check"),
        (b"{}", {"Content-Encoding": "br"}, 415, "Content-Encoding"),
        (b"{}", {"Content-Type": "text/plain"}, 415, "application/json"),
        (gzip.compress(b"[" * (MAX_BODY_BYTES + 10)), {"Content-Encoding": "gzip"}, 413, "decompressed"),
        (b"x" * (MAX_BODY_BYTES + 1), {}, 413, "larger than"),
    ],
    ids=["bad-json", "not-an-object", "events-not-a-list", "too-many-events", "binary", "bad-gzip", "truncated-gzip",
         "gzip-then-garbage", "gzip-bad-crc", "unknown-encoding", "wrong-content-type", "gzip-bomb", "too-large"],
)  # fmt: skip
def test_a_body_that_is_no_batch_gets_a_clear_4xx_and_stores_nothing(api, body, headers, status, says):
    response = api.post("/v1/events", body, **headers)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]["message"]
    assert api.count() == 0


BAD_EVENTS = {  # one field each that the store could not hold or that would poison every percentile
    "wrong-type": ({"event_id": 7}, ["event_id"]),
    "bad-timestamp": ({"timestamp_ns": "yesterday"}, ["timestamp_ns"]),
    "huge-string": ({"user_id": "u" * 10_000}, ["user_id"]),
    "bad-trace-id": ({"trace_id": "not-hex"}, ["trace_id"]),
    "huge-content": ({"content": {"arguments": "x" * 70_000}}, ["content"]),
    "too-many-listed-tools": ({"tools_listed": ["t"] * (MAX_TOOLS_LISTED + 1)}, ["tools_listed"]),
    "int-over-64-bits": ({"response_size": 2**64}, ["response_size"]),
    "code-over-32-bits": ({"error": {"type": "x", "code": 2**31}}, ["error", "code"]),
    "infinite-duration": ({"duration_ms": "Infinity"}, ["duration_ms"]),
    "nan-upstream": ({"upstream_ms": "NaN"}, ["upstream_ms"]),
    "timestamp-past-2262": ({"timestamp_ns": 2**63}, ["timestamp_ns"]),
    "lone-surrogate": ({"intent": "\ud800"}, []),
}


@pytest.mark.parametrize("gzipped", [False, True], ids=["json", "gzip"])
@pytest.mark.parametrize("kind", BAD_EVENTS)
def test_a_bad_event_costs_only_itself(api, kind, gzipped):
    fields, loc = BAD_EVENTS[kind]
    text = json.dumps({"events": [good("before"), {**good("bad"), **fields}, good("after")]})
    text = text.replace('"Infinity"', "Infinity").replace('"NaN"', "NaN")  # the JSON numbers, not strings
    body = text.encode()
    response = api.post("/v1/events", gzip.compress(body) if gzipped else body,
                        **({"Content-Encoding": "gzip"} if gzipped else {}))  # fmt: skip
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (2, 0, 1)
    (error,) = answer["errors"]
    assert (error["index"], error["event_id"], error["loc"]) == (1, "bad" if kind != "wrong-type" else None, loc)
    assert error["msg"]
    assert api.count() == 2
    assert {row["tool"]: row["calls"] for row in api.panel("tools").json()["rows"]} == {"search": 2}


def test_rejections_name_the_event_and_the_field(api):
    response = api.events([good(), good("e2", duration_ms="slow")])
    assert response.status_code == 200
    assert response.json()["errors"] == [{"index": 1, "event_id": "e2", "loc": ["duration_ms"],
                                          "msg": "Input should be a valid number, unable to parse string as a number"}]  # fmt: skip
    many = api.events([good(f"x{i}", duration_ms=-1) for i in range(30)])
    assert (many.json()["rejected"], len(many.json()["errors"])) == (30, 20)


def test_every_gzip_member_is_read(api):
    """RFC 1952 allows several members: a body split across two is one document (none is dropped)."""
    document = json.dumps({"events": [good("m1"), good("m2")]}).encode()
    half = len(document) // 2
    response = api.post("/v1/events", gzip.compress(document[:half]) + gzip.compress(document[half:]),
                        **{"Content-Encoding": "gzip"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
    assert api.count() == 2


def test_an_error_code_over_32_bits_in_otlp_keeps_its_span(api):
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "tools/call x", "kind": 2, "startTimeUnixNano": str(NOW_NS),
         "endTimeUnixNano": str(NOW_NS + 1000), "status": {"code": 2}, "attributes": [
             {"key": "mcp.method.name", "value": {"stringValue": "tools/call"}},
             {"key": "gen_ai.tool.name", "value": {"stringValue": "x"}},
             {"key": "error.type", "value": {"stringValue": "2147483648"}},
             {"key": "rpc.response.status_code", "value": {"stringValue": "2147483648"}}]},
    ]}]}]}  # fmt: skip
    response = api.post("/v1/traces", json.dumps(document).encode())
    assert response.status_code == 200, response.text
    assert api.count() == 1
    (failure,) = api.panel("failures").json()["rows"]
    assert failure["reason"] == "2147483648"


def test_a_window_longer_than_the_history_is_all_of_it(api):
    api.events([good()])
    response = api.panel("summary", last="999999d")
    assert response.status_code == 200, response.text
    assert response.json()["from"].startswith("1970-01-01")
    assert response.json()["rows"][0]["events"] == 1


def test_a_user_s_events_are_deleted_on_request_in_their_project_only(api):
    api.events([good("u1", user_id="alice"), good("u2", user_id="alice"), good("u3", user_id="bob")], key=KEY_A)
    api.events([good("u1", user_id="alice")], key=KEY_B)
    response = api.http.delete(f"{api.url}/v1/users/alice", headers={"Authorization": f"Bearer {KEY_A}"})
    assert response.status_code == 200
    assert response.json()["deleted"] == 2
    assert [row["user"] for row in api.panel("users", KEY_A).json()["rows"]] == ["bob"]
    assert [row["user"] for row in api.panel("users", KEY_B).json()["rows"]] == ["alice"]
    assert api.http.delete(f"{api.url}/v1/users/alice").status_code == 401


def test_fuzzed_bodies_get_4xx_the_service_stays_up_and_the_store_consistent(api):
    rng = random.Random(1234)
    api.events([good("keep")])

    def fuzz() -> bytes:
        choice = rng.randrange(7)
        if choice == 0:
            return rng.randbytes(rng.randrange(1, 4000))
        if choice == 1:
            return json.dumps({"events": [good()]})[: rng.randrange(1, 60)].encode()  # cut short
        if choice == 2:
            return json.dumps(
                {
                    "events": [
                        good(**{rng.choice(["resource", "intent", "user_id"]): rng.choice([1, [], {}, True, 3.5])})
                    ]
                }
            ).encode()
        if choice == 3:
            return ('{"events": ' + "[" * rng.randrange(100, 20_000) + "]" * 5).encode()
        if choice == 4:
            return json.dumps({"events": [{**good(), "content": {"x": json.loads("[" * 300 + "]" * 300)}}]}).encode()
        if choice == 5:
            return json.dumps(
                {"events": [good(type="")], "extra": "\ud800".encode("utf-8", "surrogatepass").decode("latin-1")}
            ).encode()
        return json.dumps({"events": {"not": "a list"}}).encode()

    statuses, stored = set(), 0
    for _ in range(150):
        response = api.post("/v1/events", fuzz())
        statuses.add(response.status_code)
        if response.status_code == 200:  # a batch of one event: stored, already stored or refused, and said so
            answer = response.json()
            assert answer["accepted"] + answer["duplicates"] + answer["rejected"] == 1, response.text
            stored += answer["accepted"]
        else:
            assert 400 <= response.status_code < 500, response.text
    assert statuses <= {200, 400, 413, 422}
    assert httpx.get(f"{api.url}/healthz").status_code == 200
    assert api.count() == 1 + stored
    assert api.events([good("after")]).json()["accepted"] == 1
    for _ in range(50):  # OTLP too
        response = api.post(
            "/v1/traces", rng.randbytes(rng.randrange(1, 2000)), **{"Content-Type": "application/x-protobuf"}
        )
        assert response.status_code in (200, 400), response.text
    assert api.count() == 2 + stored


def test_the_openapi_document_describes_every_endpoint_and_its_references_resolve(api):
    document = api.http.get(f"{api.url}/openapi.json").json()
    assert {"/v1/events", "/v1/traces", "/v1/panels/{name}"} <= set(document["paths"])
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/EventBatch"}
    schemas = document["components"]["schemas"]
    references = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)))
    assert {"EventBatch", "Event", "Error", "Failure"} <= references <= set(schemas)
    assert schemas["Event"]["required"] == ["event_id", "type", "timestamp_ns"]


@pytest.mark.parametrize("params", [{"last": "soon"}, {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
                                    {"limit": 0}, {"by": "colour"}])  # fmt: skip
def test_a_bad_window_or_parameter_is_a_422(api, params):
    assert api.panel("tools", **params).status_code == 422


async def recorded_mcp_spans(recorded) -> list:
    async with in_memory(build("highlevel")) as client:
        await client.list_tools()
        await client.call_tool("add", {"a": 1, "b": 2, "context": "adding for the user"})
        await client.call_tool("fail", {})
    return recorded.spans()


async def test_otlp_protobuf_from_the_stock_exporter_becomes_events(api, recorded):
    spans = await recorded_mcp_spans(recorded)
    exporter = OTLPSpanExporter(endpoint=f"{api.url}/v1/traces", headers={"Authorization": f"Bearer {KEY_A}"})
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert exporter.export(spans) == SpanExportResult.SUCCESS  # a retry is not counted twice
    server_spans = [span for span in spans if span.kind.name == "SERVER"]
    assert api.count() == len(server_spans)
    stored = api.panel("tools").json()["rows"]
    assert {(row["tool"], row["calls"], row["errors"]) for row in stored} == {("add", 1, 0), ("fail", 1, 1)}
    (session,) = api.panel("sessions").json()["rows"]
    timeline = api.panel("session", session=session["session"]).json()["rows"]
    expected = [to_event(span) for span in sorted(server_spans, key=lambda span: span.start_time)]
    assert [(row["type"], row["intent"]) for row in timeline] == [(e["type"], e.get("intent")) for e in expected]
    assert [row["span_id"] for row in timeline] == [e["span_id"] for e in expected]
    (listing,) = [span for span in server_spans if span.name == "tools/list"]
    listed_at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=listing.start_time // 1000)
    unused = [(row["tool"], row["last_called"], row["calls_before"], datetime.fromisoformat(row["last_listed"]))
              for row in api.panel("unused_tools").json()["rows"]]  # fmt: skip
    assert unused == [(tool, None, 0, listed_at) for tool in ("billing", "echo", "fetch", "note", "slow")]


async def test_otlp_json_with_hex_ids_becomes_the_same_events(api, recorded):
    spans = await recorded_mcp_spans(recorded)
    document = json_format.MessageToDict(encode_spans(spans))
    for resource in document["resourceSpans"]:  # OTLP/JSON spells ids in hex, not protobuf's base64
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        span[field] = base64.b64decode(span[field]).hex()
    response = api.post("/v1/traces", json.dumps(document).encode())
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert api.count() == len([span for span in spans if span.kind.name == "SERVER"])
    ids = {
        row["span_id"]
        for row in api.panel("session", session=api.panel("sessions").json()["rows"][0]["session"]).json()["rows"]
    }
    assert ids == {f"{span.context.span_id:016x}" for span in spans if span.kind.name == "SERVER"}


def test_otlp_spans_that_do_not_fit_are_reported_as_partially_rejected(api):
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "tools/call x", "kind": 2, "startTimeUnixNano": str(NOW_NS),
         "endTimeUnixNano": str(NOW_NS + 1000), "attributes": [
             {"key": "mcp.method.name", "value": {"stringValue": "tools/call"}},
             {"key": "user.id", "value": {"stringValue": "u" * 2000}}]},
        {"traceId": "ab" * 16, "spanId": "ef" * 8, "name": "GET /", "kind": 2, "startTimeUnixNano": str(NOW_NS)},
    ]}]}]}  # fmt: skip
    response = api.post("/v1/traces", json.dumps(document).encode(), **{"Content-Type": "application/x-protobuf"})
    assert response.status_code == 400  # JSON sent as protobuf
    response = api.post("/v1/traces", json.dumps(document).encode())
    answer = json_format.Parse(response.text, ExportTraceServiceResponse())
    assert answer.partial_success.rejected_spans == 1
    assert (
        answer.partial_success.error_message == f"span {'cd' * 8}: user_id: String should have at most 512 characters"
    )
    assert api.count() == 0  # the non-MCP span is not an event; the bad one was rejected


def test_every_panel_takes_the_six_filters_repeated_or_comma_separated(api):
    assert api.events([
        good("f1", resource="search", client_name="Cursor", user_id="alice"),
        good("f2", resource="fetch", client_name="Cursor", user_id="bob"),
        good("f3", resource="search", client_name="Claude Desktop", user_id="bob"),
    ]).status_code == 200  # fmt: skip

    def tools(**params) -> dict[str, int]:
        response = api.panel("tools", **params)
        assert response.status_code == 200, response.text
        return {row["tool"]: row["calls"] for row in response.json()["rows"]}

    assert tools() == {"search": 2, "fetch": 1}
    assert tools(client="Cursor") == {"search": 1, "fetch": 1}
    assert tools(client="Cursor", user="bob") == {"fetch": 1}
    assert tools(user="alice,bob", tool="search") == {"search": 2}
    assert tools(user=["alice", "bob"], client=["Claude Desktop", "Cursor"]) == {"search": 2, "fetch": 1}
    assert tools(method="tools/list") == {}
    assert api.panel("summary", client="Cursor").json()["filters"] == {"client": "Cursor"}
    for name in PANELS:
        assert api.panel(name, origin="server", session="x").status_code == 200, name


def test_an_unknown_query_parameter_is_a_422_that_names_it(api):
    response = api.panel("tools", colour="red", client="Cursor", sort="calls")
    assert response.status_code == 422
    message = response.json()["detail"]["message"]
    assert message.startswith("unknown query parameter colour, sort;")
    assert "tool" in message and "origin" in message
    too_many = api.panel("tools", user=",".join(f"u{i}" for i in range(101)))
    assert too_many.status_code == 422
    assert "at most 100 values" in too_many.json()["detail"]["message"]


def test_events_past_the_retention_are_deleted_when_the_api_starts(tmp_path):
    store, day_ns = DuckDBStore(tmp_path / "kept.duckdb"), 86_400 * 10**9
    store.add("p", [validated_event(**good("recent")), validated_event(**good("old", timestamp_ns=NOW_NS - 3 * day_ns)),
                    validated_event(**good("older", timestamp_ns=NOW_NS - 40 * day_ns))])  # fmt: skip
    with in_thread(create_app(store, ApiKeys([("p", KEY_A)]), retention=timedelta(days=2))) as url:
        deadline = time.monotonic() + 10
        while True:
            answer = httpx.get(f"{url}/v1/panels/summary?last=all", headers={"Authorization": f"Bearer {KEY_A}"}).json()
            if answer["rows"][0]["events"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert answer["rows"][0]["events"] == 1
    store.close()


def test_intents_are_searched_by_q(api):
    api.events([good("i1", intent="Find the refund policy"), good("i2", intent="open a ticket"), good("i3")])
    found = api.panel("intents", q="refund")
    assert found.status_code == 200 and [row["event_id"] for row in found.json()["rows"]] == ["i1"]
    assert {row["event_id"] for row in api.panel("intents").json()["rows"]} == {"i1", "i2"}
    assert api.panel("intents", q="x" * 513).status_code == 422


async def test_otlp_configured_only_by_the_readme_s_environment_variables(api, recorded, monkeypatch):
    spans = await recorded_mcp_spans(recorded)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{api.url}/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"Authorization=Bearer%20{KEY_A}")
    assert OTLPSpanExporter().export(spans) == SpanExportResult.SUCCESS
    assert api.count() == len([span for span in spans if span.kind.name == "SERVER"])


# ---------------------------------------------------------------- the ingest contract


def test_an_unknown_schema_version_is_refused_whole(api):
    response = api.events([good("v1", schema=1), good("v99", schema=99)])
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "schema version this API does not read (it reads 1)" in detail["message"]
    assert [(e["index"], e["event_id"], e["loc"]) for e in detail["errors"]] == [(1, "v99", ["schema"])]
    assert api.count() == 0, "not even the event of the known version"


def test_a_field_the_schema_does_not_know_is_refused_not_dropped(api):
    response = api.events(
        [good("ok"), good("extra", colour="blue"), good("nested", failure={"origin": "server", "why": 1})]
    )
    body = response.json()
    assert (response.status_code, body["accepted"], body["rejected"]) == (200, 1, 2)
    assert [(e["event_id"], e["loc"], e["msg"]) for e in body["errors"]] == [
        ("extra", ["colour"], "Extra inputs are not permitted"),
        ("nested", ["failure", "why"], "Extra inputs are not permitted"),
    ]
    envelope = api.post("/v1/events", json.dumps({"events": [good()], "compressed": True}).encode())
    assert envelope.status_code == 422 and envelope.json()["detail"]["errors"][0]["loc"] == ["compressed"]


def test_events_for_another_project_than_the_keys_are_refused(api, request):
    mine = api.events([good("mine", project=f"a-{request.node.name}")])
    assert (mine.status_code, mine.json()["accepted"]) == (200, 1)
    theirs = api.events([good("theirs", project="someone-else")])
    assert theirs.status_code == 403
    assert (
        theirs.json()["detail"]["message"]
        == f"this API key is for project 'a-{request.node.name}'; the events say 'someone-else'"
    )
    assert api.count() == 1


async def test_every_field_the_exporter_maps_from_a_real_span_survives_validation():
    """Real spans (a tool call with intent and captured content, a failure with its verdict, an identified user,
    listings, a prompt, a resource, a custom event) through the exporter's mapping and the API's schema."""
    from opentelemetry_instrumentation_mcp import UserIdentity, publish_custom_event
    from tests.conftest import instrumented

    with instrumented(
        capture_content=True, identify=lambda request: UserIdentity("u1", "Ann", {"plan": "pro"})
    ) as recorded:
        async with in_memory(build("highlevel")) as client:
            await client.list_tools()
            await client.list_prompts()
            await client.call_tool("echo", {"text": "hi", "context": "The agent greets."})
            await client.call_tool("fail", {})
            await client.read_resource("demo://greeting")
            await client.get_prompt("review", {"code": "x"})
            session_id = recorded.server_spans()[0].attributes["mcp.session.id"]
            assert publish_custom_event(session_id, name="deploy", resource_name="search", parameters={"version": 3},
                                        is_error=True, error="rolled back")  # fmt: skip

    sent_keys = set()
    for span in recorded.spans():
        event = to_event(span, "project-a")
        validated = validated_event(**event)
        assert set(validated) == set(event), span.name
        for key, value in event.items():
            stored = json.loads(validated[key]) if key in ("content", "custom", "user_data") else validated[key]
            assert stored == value, (span.name, key)
        sent_keys |= set(event)
    not_in_this_session = {"caller_id", "upstream_ms", "transport"}  # stateless HTTP; a traced upstream; in memory
    from mcp_analytics.models import Event

    assert sent_keys == set(Event.__annotations__) - not_in_this_session


def test_liveness_and_readiness(api):
    """``/healthz`` (liveness) and ``/readyz`` (readiness: the store answers) take no key; DuckDB, in the process,
    is ready while the API runs (ClickHouse's outages: tests/test_analytics_clickhouse.py)."""
    for path, body in (("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})):
        answer = httpx.get(f"{api.url}{path}", timeout=30)
        assert (answer.status_code, answer.json()) == (200, body)


class FailingStore(DuckDBStore):
    """A store whose panels fail with ``error``: how the API answers a failure, by its kind."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def panel(self, *args, **kwargs):
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [(StoreUnavailable("clickhouse://127.0.0.1:9/db: NetworkError: refused"), 503),
     (ConnectionResetError("not the store's connection"), 500)],
    ids=["store-unavailable", "another-oserror"],
)  # fmt: skip
def test_only_a_store_that_says_it_is_unavailable_is_a_503(error, status):
    """503 with Retry-After (which senders retry) for ``StoreUnavailable`` only; an ``OSError`` of anything else is
    a failure of the API (500), not an outage to wait out."""
    store = FailingStore(error)
    try:
        with in_thread(create_app(store, ApiKeys([("p", KEY_A)]))) as url:
            answer = httpx.get(f"{url}/v1/panels/summary", headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    finally:
        store.close()
    assert answer.status_code == status
    assert ("retry-after" in answer.headers) == (status == 503)

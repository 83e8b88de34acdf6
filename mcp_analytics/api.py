"""The analytics API: ingest (our events, OTLP/HTTP traces), one query endpoint per panel, the dashboard.

Every ``/v1`` endpoint takes ``Authorization: Bearer <project key>``; a key reads
and writes only its own project. Parsing, validation and storage run in a worker
thread, so the event loop keeps answering while a batch is stored.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from importlib.resources import files
from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from google.protobuf import json_format
from pydantic import ValidationError

from mcp_analytics import otlp
from mcp_analytics.keys import ApiKeys
from mcp_analytics.models import BATCH, EVENT, MAX_BODY_BYTES, IngestResult
from mcp_analytics.store import DIMENSIONS, PANELS, Slice, Store, Window
from opentelemetry_instrumentation_mcp.version import __version__

MAX_ERRORS_SHOWN = 20


def _problem(status: int, message: str, errors: list[dict[str, Any]] | None = None) -> HTTPException:
    detail: dict[str, Any] = {"message": message}
    if errors:
        detail["errors"] = errors[:MAX_ERRORS_SHOWN]
        detail["error_count"] = len(errors)
    return HTTPException(status, detail)


def _validation_errors(error: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors(include_input=False)]


async def _read_body(request: Request) -> bytes:
    """The request body, decompressed, refused with 413 past ``MAX_BODY_BYTES`` (compressed or not)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise _problem(413 if declared.isdigit() else 400, f"body larger than {MAX_BODY_BYTES} bytes or bad length")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, MAX_BODY_BYTES + 1)
        except zlib.error as error:
            raise _problem(400, f"body is not valid gzip: {error}") from None
        if len(body) > MAX_BODY_BYTES or inflater.unconsumed_tail:
            raise _problem(413, f"body larger than {MAX_BODY_BYTES} bytes once decompressed")
    elif encoding not in ("identity", ""):
        raise _problem(415, f"Content-Encoding {encoding!r} is not supported (gzip or none)")
    return body


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _document_the_batch_schema(app: FastAPI) -> None:
    """``/v1/events`` reads its body itself (for speed and clear errors); its schema is added to the document here."""
    generate = app.openapi
    batch = BATCH.json_schema(ref_template="#/components/schemas/{model}")
    schemas = {**batch.pop("$defs", {}), "EventBatch": batch}

    def openapi() -> dict[str, Any]:
        document = generate()
        document.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _project(request: Request) -> str:
    """The project of the request's API key; 401 without a valid one."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    keys: ApiKeys = request.app.state.keys
    found = keys.project(key.strip()) if scheme.lower() == "bearer" else None
    if found is None:
        raise HTTPException(401, {"message": "a valid project API key is required (Authorization: Bearer <key>)"},
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    return found


Project = Annotated[str, Depends(_project)]
PanelName = Literal[PANELS]  # type: ignore[valid-type]
_PANEL_PARAMETERS = frozenset({"from", "to", "last", "limit", "by", "session", *DIMENSIONS})
_Values = Annotated[list[str] | None, Query(description="repeatable, or comma-separated values (any of them)")]


def _slice(
    request: Request,
    tool: _Values = None,
    client: _Values = None,
    user: _Values = None,
    server: _Values = None,
    method: _Values = None,
    origin: _Values = None,
) -> Slice:
    """The events a panel reads (``store.Slice``); 422 for a query parameter no panel takes."""
    unknown = sorted(set(request.query_params) - _PANEL_PARAMETERS)
    if unknown:
        raise _problem(422, f"unknown query parameter {', '.join(unknown)}; a panel takes {', '.join(sorted(_PANEL_PARAMETERS))}")
    given = {"tool": tool, "client": client, "user": user, "server": server, "method": method, "origin": origin}
    try:
        return Slice.parse({name: values for name, values in given.items() if values})
    except ValueError as error:
        raise _problem(422, str(error)) from None


def create_app(store: Store, keys: ApiKeys) -> FastAPI:
    app = FastAPI(
        title="MCP analytics API",
        version=__version__,
        description="Analytics events of MCP servers: ingest, panels, sessions, dashboard.",
    )
    app.state.keys = keys
    _document_the_batch_schema(app)

    def store_json_batch(project: str, body: bytes) -> IngestResult:
        try:
            events = BATCH.validate_json(body)["events"]
        except ValidationError as error:
            errors = _validation_errors(error)
            if any(e["type"] in ("json_invalid", "json_type") for e in errors):
                raise _problem(400, "body is not a JSON object of the form {\"events\": [...]}", errors) from None
            raise _problem(422, "events do not match the schema", errors) from None
        return store.add(project, events)

    @app.post(
        "/v1/events",
        response_model=IngestResult,
        summary="Ingest a batch of analytics events (the exporter's format; JSON, optionally gzip'd)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}}},
            }
        },
        responses={400: {}, 401: {}, 413: {}, 415: {}, 422: {}},
    )
    async def ingest_events(request: Request, project: Project) -> IngestResult:
        body = await _read_body(request)
        if _media_type(request) not in (otlp.JSON, ""):
            raise _problem(415, "events are sent as application/json")
        return await to_thread.run_sync(store_json_batch, project, body)

    def store_otlp(project: str, body: bytes, media_type: str) -> ExportTraceServiceResponse:
        try:
            request = otlp.decode(body, media_type)
            mapped = otlp.events(request)
        except otlp.OTLPDecodeError as error:
            raise _problem(400, str(error)) from None
        valid, rejected = [], []
        for event in mapped:
            try:
                valid.append(EVENT.validate_python(event))
            except ValidationError as error:
                first = _validation_errors(error)[0]
                rejected.append(f"span {event.get('span_id')}: {'.'.join(map(str, first['loc']))}: {first['msg']}")
        store.add(project, valid)
        response = ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = len(rejected)
            response.partial_success.error_message = "; ".join(rejected[:MAX_ERRORS_SHOWN])
        return response

    @app.post(
        "/v1/traces",
        summary="OTLP/HTTP trace ingest (protobuf or JSON): MCP spans become events, other spans are ignored",
        responses={400: {}, 401: {}, 413: {}, 415: {}},
    )
    async def ingest_traces(request: Request, project: Project) -> Response:
        media_type = _media_type(request)
        if media_type not in (otlp.PROTOBUF, otlp.JSON):
            raise _problem(415, "OTLP is sent as application/x-protobuf or application/json")
        body = await _read_body(request)
        answer = await to_thread.run_sync(store_otlp, project, body, media_type)
        if media_type == otlp.PROTOBUF:
            return Response(answer.SerializeToString(), media_type=otlp.PROTOBUF)
        return Response(json_format.MessageToJson(answer), media_type=otlp.JSON)

    @app.get("/v1/panels/{name}", summary="The rows behind one dashboard panel")
    async def panel(
        name: PanelName,
        project: Project,
        start: Annotated[datetime | None, Query(alias="from", description="ISO 8601; default: `last` before `to`")] = None,
        end: Annotated[datetime | None, Query(alias="to", description="ISO 8601; default: now")] = None,
        last: Annotated[str | None, Query(description="15m, 24h, 7d, … or all (default 24h)")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        by: Literal["method", "family"] = "method",
        session: Annotated[str | None, Query(max_length=512, description="the session, for the `session` panel")] = None,
        slice: Annotated[Slice, Depends(_slice)] = Slice(),
    ) -> dict[str, Any]:
        try:
            window = Window.parse(start, end, last)
        except ValueError as error:
            raise _problem(422, str(error)) from None
        rows = await to_thread.run_sync(
            lambda: store.panel(project, name, window, slice, limit=limit, by=by, session=session)
        )
        return {"panel": name, "project": project, "from": window.start, "to": window.end, "filters": slice.query(),
                "rows": rows}  # fmt: skip

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    dashboard = files("mcp_analytics") / "dashboard"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse((dashboard / "index.html").read_text(encoding="utf-8"))

    app.mount("/dashboard", StaticFiles(directory=str(dashboard)), name="dashboard")
    return app

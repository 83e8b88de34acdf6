"""The analytics API: ingest (our events, OTLP/HTTP traces), one query endpoint per panel, the dashboard.

Every ``/v1`` endpoint takes ``Authorization: Bearer <project key>``; a key reads
and writes only its own project. Parsing, validation and storage run in a worker
thread, so the event loop keeps answering while a batch is stored. While the store
cannot be reached (ClickHouse down: the store raises ``StoreUnavailable``), every
route that uses it answers 503 with ``Retry-After``, which OTLP/HTTP senders and the
exporter retry (a 500 they drop); any other failure stays a 500.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Annotated, Any, Literal, TypeVar

import anyio
from anyio import to_thread
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from pydantic import ValidationError

from mcp_analytics import otlp
from mcp_analytics.alerts import Engine
from mcp_analytics.keys import ApiKeys
from mcp_analytics.models import (
    BATCH,
    EVENT,
    MAX_BODY_BYTES,
    SCHEMA_VERSION,
    Event,
    IngestResult,
    Rejection,
)  # fmt: skip
from mcp_analytics.store import DIMENSIONS, PANELS, Slice, Store, StoreUnavailable, Window
from opentelemetry_instrumentation_mcp.version import __version__

logger = logging.getLogger(__name__)

MAX_ERRORS_SHOWN = 20
RETRY_AFTER = 2
"""Seconds a sender is told to wait (``Retry-After``) while the store is unreachable: short, as an outage's end
cannot be foreseen and a refused request costs little; the exporter (10 s per export by default) retries 4 times."""

T = TypeVar("T")


def _problem(
    status: int, message: str, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
) -> HTTPException:
    detail: dict[str, Any] = {"message": message}
    if errors:
        detail["errors"] = errors[:MAX_ERRORS_SHOWN]
        detail["error_count"] = len(errors)
    return HTTPException(status, detail, headers=headers)


class _Outage:
    """Whether the store was last found unreachable: logged (a warning) once when an outage begins and once when
    the store answers again, not once per request. During an outage one request at a time, at most one per
    ``RETRY_AFTER`` seconds, tries the store (a probe); the others are answered 503 at once, so that requests
    waiting on a server that does not answer cannot take every worker thread. Used from the event loop only."""

    def __init__(self) -> None:
        self.since: float | None = None
        self._probe_at = 0.0
        self._probing = False

    def admits(self) -> bool:
        """Whether a request may use the store now; one admitted during an outage calls ``probed`` when done."""
        if self.since is None:
            return True
        if self._probing or time.monotonic() < self._probe_at:
            return False
        self._probing = True
        return True

    def probed(self) -> None:
        self._probing = False

    def began(self, error: StoreUnavailable, at_start: bool = False) -> None:
        self._probe_at = time.monotonic() + RETRY_AFTER
        if self.since is None:
            self.since = time.monotonic()
            if at_start:
                logger.warning("the store is unreachable at start-up (%s): serving anyway, answering 503 with "
                               "Retry-After %d until it is back, when its schema is created or migrated",
                               error, RETRY_AFTER)  # fmt: skip
            else:
                logger.warning("the store is unreachable (%s): answering 503 with Retry-After %d until it is back",
                               error, RETRY_AFTER)  # fmt: skip

    def ended(self) -> None:
        if self.since is not None:
            logger.warning("the store is reachable again, after %.1f s", time.monotonic() - self.since)
            self.since = None


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
        body = _gunzip(body)
    elif encoding not in ("identity", ""):
        raise _problem(415, f"Content-Encoding {encoding!r} is not supported (gzip or none)")
    return body


_NOT_A_BATCH = 'body is not a JSON object of the form {"events": [...]}'


def _events_of(body: bytes) -> tuple[list[Event], list[Rejection]]:
    """The valid events of a batch and why each other one is refused: one bad event costs only itself.

    The whole batch is validated at once (fast, in pydantic's core); only when that fails is it read again,
    with the stdlib's more lenient JSON, and validated event by event. A body that is no batch at all is a
    400 (not JSON) or a 422 (the envelope: ``events`` missing, not a list, too long, or a field beside it)."""
    try:
        return BATCH.validate_json(body)["events"], []
    except ValidationError as error:
        errors = _validation_errors(error)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise _problem(400, _NOT_A_BATCH, errors) from None
    events = document.get("events") if isinstance(document, dict) else None
    envelope = [e for e in errors if e["type"] != "json_invalid"  # JSON only pydantic refuses: read it again
                and (len(e["loc"]) < 2 or not isinstance(e["loc"][1], int))]  # fmt: skip
    if envelope or not isinstance(events, list):  # the batch itself: events missing, too many, or another field
        raise _problem(422, _NOT_A_BATCH, envelope or errors) from None
    valid, rejected = [], []
    for index, raw in enumerate(events):
        try:
            json.dumps(raw, ensure_ascii=False).encode()  # text the store can keep: no lone surrogates
            valid.append(EVENT.validate_python(raw))
        except ValidationError as error:
            first = _validation_errors(error)[0]
            rejected.append(Rejection(index=index, event_id=_event_id(raw), loc=first["loc"], msg=first["msg"]))
        except UnicodeEncodeError:
            rejected.append(
                Rejection(index=index, event_id=_event_id(raw), loc=[], msg="text that is not valid Unicode")
            )
    return valid, rejected


def _event_id(raw: Any) -> str | None:
    found = raw.get("event_id") if isinstance(raw, dict) else None
    return found if isinstance(found, str) and len(found) <= 128 else None


def _gunzip(body: bytes) -> bytes:
    """A gzip body read whole: every member (RFC 1952 allows several), each checked to its end (CRC and
    length), nothing after the last; 400 otherwise, 413 past ``MAX_BODY_BYTES`` decompressed."""
    out = bytearray()
    rest = body
    for member in itertools.count():
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, MAX_BODY_BYTES + 1 - len(out))
        except zlib.error as error:
            after = " after the last gzip member" if member else ""
            raise _problem(400, f"body is not valid gzip{after}: {error}") from None
        if len(out) > MAX_BODY_BYTES or inflater.unconsumed_tail:
            raise _problem(413, f"body larger than {MAX_BODY_BYTES} bytes once decompressed")
        if not inflater.eof:
            raise _problem(400, "body is not valid gzip: the stream is truncated")
        rest = inflater.unused_data
        if not rest:
            break
    return bytes(out)


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


def _check_contract(project: str, events: list[Event], rejections: list[Rejection]) -> None:
    """A batch in another schema version, or for another project than its key's, is refused whole: every event
    of it would be misread or misfiled, and the sender must change its configuration, not one event."""
    versions = [r for r in rejections if r.loc[:1] == ["schema"]]
    if versions:
        raise _problem(422, f"events of a schema version this API does not read (it reads {SCHEMA_VERSION}): run an "
                            "exporter and an API of the same release", [r.model_dump() for r in versions])  # fmt: skip
    others = sorted({named for event in events if (named := event.get("project")) is not None and named != project})
    if others:
        raise _problem(403, f"this API key is for project {project!r}; the events say {', '.join(map(repr, others))}")


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
_PANEL_PARAMETERS = frozenset({"from", "to", "last", "limit", "by", "session", "q", *DIMENSIONS})
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
        raise _problem(
            422, f"unknown query parameter {', '.join(unknown)}; a panel takes {', '.join(sorted(_PANEL_PARAMETERS))}"
        )
    given = {"tool": tool, "client": client, "user": user, "server": server, "method": method, "origin": origin}
    try:
        return Slice.parse({name: values for name, values in given.items() if values})
    except ValueError as error:
        raise _problem(422, str(error)) from None


RETENTION_INTERVAL = 3600.0
"""Seconds between two deletions of the events past the retention (the first runs at start-up)."""
ROLL_INTERVAL = 60.0
"""Seconds between two rolls of the hours ingest marked dirty, for a store that rolls up that way (ClickHouse's:
every instance rolls, which is safe; a read is exact whether or not they have)."""


def _periodic(jobs: list[tuple[str, float, Callable[[], object]]], outage: _Outage) -> Any:
    """The app's lifespan: each ``(name, seconds, job)`` runs in a worker thread at start-up and then every
    ``seconds``, a failure logged (an unreachable store once per outage) and tried again next round. In an outage a
    round is one of its probes (``_Outage.admits``), else skipped: no job holds a thread on a server that does not
    answer while requests probe it."""

    async def every(name: str, seconds: float, job: Callable[[], object]) -> None:
        while True:
            probing = outage.since is not None
            if probing and not outage.admits():
                await anyio.sleep(seconds)
                continue
            try:
                await to_thread.run_sync(job)
            except StoreUnavailable as error:  # the next round tries again
                outage.began(error)
            except Exception:
                logger.exception("%s failed; tried again in %g s", name, seconds)
            else:
                outage.ended()
            finally:
                if probing:
                    outage.probed()
            await anyio.sleep(seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            for job in jobs:
                tasks.start_soon(every, *job)
            yield
            tasks.cancel_scope.cancel()

    return lifespan


def _prune(store: Store, retention: timedelta) -> None:
    cutoff = datetime.now(UTC) - retention
    deleted = store.delete(None, before=cutoff)
    if deleted:
        logger.info("retention: deleted %d events older than %s", deleted, cutoff.isoformat())


def create_app(
    store: Store,
    keys: ApiKeys,
    *,
    retention: timedelta | None = None,
    alerts: Engine | None = None,
    alert_interval: float = 60.0,
    evaluate_alerts: bool = True,
    unreachable: StoreUnavailable | None = None,
) -> FastAPI:
    """The API over ``store``; ``retention``: events older than this are deleted (at start, then hourly);
    ``alerts``: listed at ``/v1/alerts``, and evaluated (webhooks called) every ``alert_interval`` seconds unless
    ``evaluate_alerts`` is false (in a fleet, one instance evaluates; the others list what it recorded);
    ``unreachable``: why the store could not be reached at start-up (logged now, as an outage that began)."""
    jobs: list[tuple[str, float, Callable[[], object]]] = []
    if retention is not None:
        jobs.append(("retention", RETENTION_INTERVAL, lambda: _prune(store, retention)))
    if alerts is not None and evaluate_alerts:
        jobs.append(("alert evaluation", alert_interval, alerts.evaluate))
    roll = getattr(store, "roll", None)
    if callable(roll):
        jobs.append(("rollups", ROLL_INTERVAL, roll))
    outage = _Outage()
    if unreachable is not None:
        outage.began(unreachable, at_start=True)
    app = FastAPI(
        title="MCP analytics API",
        version=__version__,
        description="Analytics events of MCP servers: ingest, panels, sessions, dashboard.",
        lifespan=_periodic(jobs, outage),
    )
    app.state.keys = keys
    _document_the_batch_schema(app)

    def unavailable() -> HTTPException:
        return _problem(503, f"the store is unreachable; try again in {RETRY_AFTER} s",
                        headers={"Retry-After": str(RETRY_AFTER)})  # fmt: skip

    async def stored(job: Callable[[], T]) -> T:
        """``job`` (which uses the store) run in a worker thread; an unreachable store is a 503 with Retry-After
        (at once during an outage, but for the request that probes the store)."""
        probe = outage.since is not None
        if not outage.admits():
            raise unavailable()
        try:
            result = await to_thread.run_sync(job)
        except StoreUnavailable as error:
            outage.began(error)
            raise unavailable() from None
        finally:
            if probe:
                outage.probed()
        outage.ended()
        return result

    def store_json_batch(project: str, body: bytes) -> IngestResult:
        events, rejections = _events_of(body)
        _check_contract(project, events, rejections)
        result = store.add(project, events)
        if rejections:
            result = result.model_copy(update={"rejected": len(rejections), "errors": rejections[:MAX_ERRORS_SHOWN]})
        return result

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
        responses={400: {}, 401: {}, 413: {}, 415: {}, 422: {}, 503: {}},
    )
    async def ingest_events(request: Request, project: Project) -> IngestResult:
        body = await _read_body(request)
        if _media_type(request) not in (otlp.JSON, ""):
            raise _problem(415, "events are sent as application/json")
        return await stored(lambda: store_json_batch(project, body))

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
        responses={400: {}, 401: {}, 413: {}, 415: {}, 503: {}},
    )
    async def ingest_traces(request: Request, project: Project) -> Response:
        media_type = _media_type(request)
        if media_type not in (otlp.PROTOBUF, otlp.JSON):
            raise _problem(415, "OTLP is sent as application/x-protobuf or application/json")
        body = await _read_body(request)
        answer = await stored(lambda: store_otlp(project, body, media_type))
        if media_type == otlp.PROTOBUF:
            return Response(answer.SerializeToString(), media_type=otlp.PROTOBUF)
        return Response(json_format.MessageToJson(answer), media_type=otlp.JSON)

    @app.get("/v1/panels/{name}", summary="The rows behind one dashboard panel")
    async def panel(
        name: PanelName,
        project: Project,
        start: Annotated[
            datetime | None, Query(alias="from", description="ISO 8601; default: `last` before `to`")
        ] = None,
        end: Annotated[datetime | None, Query(alias="to", description="ISO 8601; default: now")] = None,
        last: Annotated[str | None, Query(description="15m, 24h, 7d, … or all (default 24h)")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        by: Annotated[
            Literal["method", "family", "tool", "client"],
            Query(description="the series of `timeseries`: MCP method, family, tool or client"),
        ] = "method",
        session: Annotated[
            str | None, Query(max_length=512, description="the session, for the `session` panel")
        ] = None,
        q: Annotated[
            str | None, Query(max_length=512, description="the text to search for, in the `intents` panel")
        ] = None,
        slice: Annotated[Slice, Depends(_slice)] = Slice(),
    ) -> dict[str, Any]:
        try:
            window = Window.parse(start, end, last)
        except ValueError as error:
            raise _problem(422, str(error)) from None
        rows = await stored(
            lambda: store.panel(project, name, window, slice, limit=limit, by=by, session=session, q=q or None)
        )
        return {"panel": name, "project": project, "from": window.start, "to": window.end, "filters": slice.query(),
                "rows": rows}  # fmt: skip

    @app.delete("/v1/users/{user_id}", summary="Delete every event of one user (a data-protection request)")
    async def delete_user(user_id: Annotated[str, Path(max_length=512)], project: Project) -> dict[str, Any]:
        deleted = await stored(lambda: store.delete(project, user_id=user_id))
        return {"project": project, "user": user_id, "deleted": deleted}

    @app.get("/v1/alerts", summary="The project's alerts: firing, resolved or all, newest first")
    async def list_alerts(
        project: Project,
        state: Literal["firing", "resolved", "all"] = "firing",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        if alerts is None:
            return {"project": project, "enabled": False, "evaluated_here": False, "alerts": []}
        found = await stored(lambda: alerts.store.alerts(project, state, limit))
        return {"project": project, "enabled": True, "evaluated_here": evaluate_alerts, "alerts": found}

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers (the store is not read, so an outage restarts nothing)."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> dict[str, str]:
        """Readiness: 200 only while the store answers, else 503 with Retry-After (a balancer or Kubernetes takes
        the instance out of rotation until it is back)."""
        await stored(store.check)
        return {"status": "ready"}

    dashboard = files("mcp_analytics") / "dashboard"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse((dashboard / "index.html").read_text(encoding="utf-8"))

    app.mount("/dashboard", StaticFiles(directory=str(dashboard)), name="dashboard")
    return app

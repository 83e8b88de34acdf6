"""The SDK-independent core: turns ``Message`` + ``Session`` records into spans and metrics.

Adapters call ``server_operation`` / ``client_operation`` once per message and
``end_session`` once per session; everything about names, attributes, parents,
status and metrics is decided here, once, for every SDK line.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry._logs import get_logger_provider  # the logs API is still underscored
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY  # as the contrib utilities import it
from opentelemetry.instrumentation.utils import _SUPPRESS_INSTRUMENTATION_KEY_PLAIN
from opentelemetry.metrics import MeterProvider, get_meter, get_meter_provider
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.trace import (
    Link,
    Span,
    SpanKind,
    StatusCode,
    TracerProvider,
    get_current_span,
    get_tracer,
    get_tracer_provider,
)
from opentelemetry.util.types import AttributeValue

from opentelemetry_instrumentation_mcp import attributes as attr
from opentelemetry_instrumentation_mcp import stdout
from opentelemetry_instrumentation_mcp._log import WarnOnce
from opentelemetry_instrumentation_mcp.callers import Callers
from opentelemetry_instrumentation_mcp.cardinality import LIMITS, OTHER, Cap
from opentelemetry_instrumentation_mcp.content import ContentPolicy
from opentelemetry_instrumentation_mcp.events import CustomEvent
from opentelemetry_instrumentation_mcp.identity import Identifier, IdentifyRequest, is_due
from opentelemetry_instrumentation_mcp.instruments import DURATION_BUCKETS, Instruments
from opentelemetry_instrumentation_mcp.intent import IntentOptions
from opentelemetry_instrumentation_mcp.operation import ErrorOf, Operation, Side
from opentelemetry_instrumentation_mcp.records import CLIENT_INFO_META_KEY, Message, Session, implementation
from opentelemetry_instrumentation_mcp.version import __version__

logger = logging.getLogger(__name__)

_SCOPE = "opentelemetry_instrumentation_mcp"
MAX_OPEN_SESSIONS = 10_000
SESSION_TIMEOUT = 30 * 60.0
"""The default inactivity timeout of a session, in seconds: the analytics service's default too."""
MAX_USER_DATA = 4096
"""Characters of ``UserIdentity.user_data`` as JSON kept on spans; a larger one is dropped (and that logged once)."""
_SCHEMA_URL = Schemas.V1_36_0.value


MAX_TARGETS = 4096
"""Targets (method and tool or prompt name) whose span name and attributes are kept built (see ``Target``)."""


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity: one object per method and name
class Target:
    """What every message of one method and tool or prompt shares, built once: the span name, the span
    attributes naming it, and the metric attributes (the client-controlled values through their caps)."""

    span_name: str
    span: dict[str, AttributeValue]
    metrics: dict[str, AttributeValue]
    capped: bool
    """A value was over its cap (``_OTHER``): built again each time, so each overflow is counted."""


def message_attributes(message: Message, *, server_side: bool) -> dict[str, AttributeValue]:
    """The attributes of this message alone (the target's and the session's are added to them)."""
    found: dict[str, AttributeValue] = {}
    if message.request_id is not None:
        found[attr.JSONRPC_REQUEST_ID] = message.request_id
    if message.argument_keys is not None:
        found[attr.MCP_REQUEST_ARGUMENT_KEYS] = message.argument_keys
    if message.uri is not None:
        found[attr.MCP_RESOURCE_URI] = message.uri
    if message.peer_address is not None:
        found[attr.CLIENT_ADDRESS if server_side else attr.SERVER_ADDRESS] = message.peer_address
        if message.peer_port is not None:
            found[attr.CLIENT_PORT if server_side else attr.SERVER_PORT] = message.peer_port
    if message.user_agent is not None:
        found[attr.USER_AGENT_ORIGINAL] = message.user_agent
    return found


def _as_text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def suppressed(context: otel_context.Context) -> bool:
    """``not is_instrumentation_enabled()``, read off a context the caller has in hand (the same two keys: one
    read of the current context serves this test and the parent, where the function would read it four times)."""
    return bool(context.get(_SUPPRESS_INSTRUMENTATION_KEY) or context.get(_SUPPRESS_INSTRUMENTATION_KEY_PLAIN))


def _parent_of(
    message: Message, ambient: otel_context.Context, link_ambient: bool
) -> tuple[otel_context.Context, list[Link] | None]:
    """The context extracted from ``params._meta``; an ambient span it replaces becomes a link."""
    if not message.meta:
        return ambient, None
    try:
        extracted = propagate.extract(message.meta, context=ambient)
    except Exception:  # a malformed carrier must not fail the request  # noqa: BLE001
        return ambient, None
    remote = get_current_span(extracted).get_span_context()
    local = get_current_span(ambient).get_span_context()
    if link_ambient and remote.is_valid and local.is_valid and remote.span_id != local.span_id:
        return extracted, [Link(local)]
    return extracted, None


class Telemetry:
    """Tracer, meter, instruments and options of one ``instrument()`` call."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        intent: IntentOptions | None = None,
        identifier: Identifier | None = None,
        content: ContentPolicy | None = None,
        session_timeout: float = SESSION_TIMEOUT,
        openinference: bool = False,
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
    ):
        self.session_timeout = session_timeout
        """Seconds without a message after which a stateful session ends (its next message starts a new one)."""
        self.openinference = openinference
        """Spans also carry the OpenInference attributes derived from ours (``openinference.of``)."""
        self.intent = intent or IntentOptions()
        self.content = content or ContentPolicy()
        self.identifier = identifier or Identifier(None)
        self._providers = (tracer_provider, meter_provider)
        self.tracer = get_tracer(_SCOPE, __version__, tracer_provider, schema_url=_SCHEMA_URL)
        meter = get_meter(_SCOPE, __version__, meter_provider, schema_url=_SCHEMA_URL)
        self.instruments = Instruments(meter, duration_buckets)
        self.caps = {name: Cap(name, limit, self.instruments.overflow) for name, limit in LIMITS.items()}
        self._server = Side(True, self.instruments.server_operation, self.content, openinference,
                            self.instruments.server_upstream)  # fmt: skip
        self._client = Side(False, self.instruments.client_operation, self.content, openinference)
        self._warn = WarnOnce()
        self.callers = Callers(window=session_timeout)
        """Stateless HTTP: the client each caller named, for its requests that name none."""
        self._open_sessions: OrderedDict[str, Session] = OrderedDict()
        """Server sessions by id, for events published from outside a request (bounded)."""
        self._targets: dict[tuple[str, str | None], Target] = {}
        """Built targets by method and name (at most ``MAX_TARGETS``; the caps bound them anyway)."""
        self._metric_sets: dict[tuple[Any, ...], tuple[dict[str, AttributeValue], dict[str, AttributeValue]]] = {}
        """Operations' metric attributes by target, session attributes (the dict's id, and the dict, to tell a reused
        id) and peer: a session whose attributes changed has a new dict and is built again. At most ``MAX_TARGETS``."""

    def providers(self) -> tuple[Any, ...]:
        """The SDK providers this records to: the given tracer and meter providers, else the global ones (what
        ``opentelemetry-instrument`` sets up), and the global logger provider."""
        tracer_provider, meter_provider = self._providers
        return tracer_provider or get_tracer_provider(), meter_provider or get_meter_provider(), get_logger_provider()

    def warn(self, key: str, message: str, *args: Any, exc_info: bool = False) -> None:
        """Log ``message`` once per ``key`` for this ``instrument()``."""
        self._warn(key, message, *args, exc_info=exc_info)

    def serving_stdio(self) -> None:
        """A server starts on stdio: warn (once) if an exporter writes to stdout, the protocol's stream."""
        try:
            names = stdout.exporters_on_stdout(*self.providers())
        except Exception:  # never raise into the server
            logger.debug("could not inspect the exporters", exc_info=True)
            return
        if names:
            self.warn("stdout", stdout.FIX, ", ".join(names))

    def open_session(self, session: Session) -> None:
        """A stateful server session began: findable by its id until it ends."""
        if session.session_id is None:
            return
        self._open_sessions[session.session_id] = session
        while len(self._open_sessions) > MAX_OPEN_SESSIONS:
            self._open_sessions.popitem(last=False)

    def find_session(self, session_id: str) -> Session | None:
        return self._open_sessions.get(session_id)

    async def identify(self, session: Session, request: IdentifyRequest) -> None:
        """Identify the caller when it is due (see ``identity.is_due``); the answer lands on the session."""
        if not is_due(session, request.method):
            return
        identity = await self.identifier.identify(request)
        session.identified = True
        session.user_id = None if identity is None else identity.user_id
        session.user_name = None if identity is None else self.content.text(identity.user_name)
        session.user_data = None if identity is None else self._user_data(identity.user_data)

    def _user_data(self, data: Mapping[str, Any] | None) -> str | None:
        """What the identify hook said of the user, as JSON: every string redacted, at most ``MAX_USER_DATA``."""
        if not data:
            return None
        text = json.dumps(self._redacted(dict(data)), ensure_ascii=False, default=str, separators=(",", ":"))
        if len(text) > MAX_USER_DATA:
            self._warn("user_data", "user_data over %d characters as JSON is not recorded", MAX_USER_DATA)
            return None
        return text

    def server_operation(
        self,
        message: Message,
        session: Session,
        error_of: ErrorOf,
        *,
        link_ambient: bool = True,
        framework_span: Span | None = None,
    ) -> Operation | None:
        """Start the SERVER span of an incoming message; None when instrumentation is suppressed.

        ``link_ambient=False`` where the ambient context is not the message's own (the 1.x
        handler task inherits the context of the HTTP request that opened the session).
        ``framework_span``: the SERVER span a framework already opened for this message, which
        is enriched instead of opening a second one.
        """
        ambient = otel_context.get_current()
        if suppressed(ambient):
            return None
        if session.stateless:
            self._stateless_client(message, session)
        else:
            self.saw(session)
        target = self._targets.get((message.method, message.name)) or self._target(message.method, message.name)
        session_spans, session_metrics = session.attributes()
        attributes = {**target.span, **message_attributes(message, server_side=True), **session_spans}
        if self.content.capture:
            attributes.update(self._conversation(message))
        elif message.intent is not None:
            intent = self.content.text(message.intent)
            if intent is not None:
                attributes[attr.MCP_USER_INTENT] = intent
        if framework_span is not None:
            framework_span.set_attributes(attributes)
            span, parent = framework_span, ambient
        else:
            parent, links = _parent_of(message, ambient, link_ambient)
            span = self.tracer.start_span(
                target.span_name, context=parent, kind=SpanKind.SERVER, attributes=attributes, links=links
            )
        metrics = self._metric_attributes(target, session, session_metrics)
        return Operation(
            span, parent, self._server, metrics, error_of,
            span_attributes=attributes, session=session, owned=framework_span is None,
        )  # fmt: skip

    def _target(self, method: str, name: str | None) -> Target:
        """The ``Target`` of ``method`` and ``name``, kept for the next message unless a value was capped."""
        names = {attr.MCP_METHOD_NAME: method}
        if method == "tools/call":
            names[attr.GEN_AI_OPERATION_NAME] = attr.EXECUTE_TOOL
            if name is not None:
                names[attr.GEN_AI_TOOL_NAME] = name
        elif method == "prompts/get" and name is not None:
            names[attr.GEN_AI_PROMPT_NAME] = name
        metrics: dict[str, AttributeValue] = {
            key: self.caps[key](value) if key in self.caps else value for key, value in names.items()
        }
        capped = OTHER in metrics.values()
        target = Target(f"{method} {name}" if name else method, dict(names), metrics, capped)
        if not capped and len(self._targets) < MAX_TARGETS:
            self._targets[method, name] = target
        return target

    def _redacted(self, value: Any) -> Any:
        """``value`` with every string in it through the redact hook (a string the hook fails on becomes null)."""
        if isinstance(value, str):
            return self.content.text(value)
        if isinstance(value, Mapping):
            return {str(key): self._redacted(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._redacted(item) for item in value]
        return value

    def _stateless_client(self, message: Message, session: Session) -> None:
        """The client of a stateless request: its own (``initialize``, 2026-07-28 session info), else the client
        info in its ``_meta`` (2026-07-28 requests, instrumented clients), else what its caller named before.
        Over HTTP the caller's id too, and for a notification the user its caller was identified as (see ``callers``)."""
        if session.client_name is None and message.meta:
            session.client_name, session.client_version = implementation(message.meta.get(CLIENT_INFO_META_KEY))
        if message.caller is None:
            return
        caller = self.callers.visit(message.caller)
        session.caller_id = caller.id
        if session.client_name is not None:
            caller.client = (session.client_name, session.client_version)
        elif caller.client is not None:
            session.client_name, session.client_version = caller.client
        if session.identified:
            caller.user = None if session.user_id is None else (session.user_id, session.user_name, session.user_data)
        elif caller.user is not None:  # a notification: never identified itself
            session.user_id, session.user_name, session.user_data = caller.user

    def custom_event(self, session: Session, event: CustomEvent) -> None:
        """One span for a product event in ``session``: its attributes, no ``mcp.method.name``."""
        end = time.time_ns()
        start = end - int(event.duration * 1e9) if event.duration else end
        attributes = dict(session.span_attributes())
        attributes[attr.MCP_EVENT_KIND] = attr.CUSTOM
        attributes[attr.MCP_EVENT_NAME] = event.name
        for key, value in (
            (attr.MCP_EVENT_RESOURCE_NAME, event.resource_name),
            (attr.MCP_EVENT_MESSAGE, event.message),
            (attr.MCP_EVENT_PARAMETERS, _as_text(event.parameters)),
            (attr.MCP_EVENT_RESPONSE, _as_text(event.response)),
            (attr.MCP_EVENT_ERROR, event.error if event.is_error else None),
        ):
            text = self.content.text(value)
            if text is not None:
                attributes[key] = text
        if event.is_error:
            attributes[attr.ERROR_TYPE] = attr.CUSTOM_EVENT_ERROR
        span = self.tracer.start_span(
            f"custom {event.name}", kind=SpanKind.INTERNAL, attributes=attributes, start_time=start
        )
        if event.is_error:
            error = attributes.get(attr.MCP_EVENT_ERROR)  # the error's text, unless the content policy dropped it
            span.set_status(StatusCode.ERROR, error if isinstance(error, str) else None)
        span.end(end_time=end)

    def _metric_attributes(
        self,
        target: Target,
        session: Session,
        session_metrics: dict[str, AttributeValue],
        message: Message | None = None,
    ) -> dict[str, AttributeValue]:
        """The low-cardinality attributes of an operation: the session's, the target's, the client's name through
        its cap and, on a client, the server's address (shared: copy before changing)."""
        peer = (None, None) if message is None else (message.peer_address, message.peer_port)
        key = (target, id(session_metrics), *peer)  # the session's client is in its attributes: a new dict
        kept = self._metric_sets.get(key)
        if kept is not None and kept[0] is session_metrics:
            return kept[1]  # shared: an operation replaces its dict to add to it
        metrics = {**session_metrics, **target.metrics}
        client = None if session.client_name is None else self.caps[attr.MCP_CLIENT_NAME](session.client_name)
        if client is not None:
            metrics[attr.MCP_CLIENT_NAME] = client
        if peer[0] is not None:
            metrics[attr.SERVER_ADDRESS] = peer[0]
            if peer[1] is not None:
                metrics[attr.SERVER_PORT] = peer[1]
        # An overflow is counted on every operation it happens to; a stateless request's session is its own, never
        # seen again (keeping it would only hold its attributes until the next clear).
        if not target.capped and client != OTHER and not session.stateless:
            if len(self._metric_sets) >= MAX_TARGETS:
                self._metric_sets.clear()
            self._metric_sets[key] = (session_metrics, metrics)
        return metrics

    def _conversation(self, message: Message) -> dict[str, AttributeValue]:
        """What the agent said: the intent always, arguments only when content capture is on (all redacted)."""
        found: dict[str, AttributeValue] = {}
        intent = self.content.text(message.intent)
        if intent is not None:
            found[attr.MCP_USER_INTENT] = intent
        if not self.content.capture or message.arguments is None:
            return found
        if message.method == "tools/call":
            arguments = self.content.json(message.arguments)
            if arguments is not None:
                found[attr.GEN_AI_TOOL_CALL_ARGUMENTS] = arguments
        elif message.method == "prompts/get":
            for name, value in message.arguments.items():
                text = self.content.text(value if isinstance(value, str) else json.dumps(value, default=str))
                if text is not None:
                    found[attr.GEN_AI_PROMPT_VARIABLE_PREFIX + str(name)] = text
        return found

    def client_operation(self, message: Message, session: Session, error_of: ErrorOf) -> Operation | None:
        """Start the CLIENT span of an outgoing request; None when instrumentation is suppressed."""
        parent = otel_context.get_current()
        if suppressed(parent):
            return None
        self.saw(session)
        target = self._targets.get((message.method, message.name)) or self._target(message.method, message.name)
        session_spans, session_metrics = session.attributes()
        attributes = {**target.span, **message_attributes(message, server_side=False), **session_spans}
        span = self.tracer.start_span(target.span_name, context=parent, kind=SpanKind.CLIENT, attributes=attributes)
        metrics = self._metric_attributes(target, session, session_metrics, message)
        return Operation(span, parent, self._client, metrics, error_of)

    def saw(self, session: Session) -> None:
        """A message of a stateful session: one that comes after the inactivity timeout ends the session's part
        so far (its duration is recorded) and starts the next, as the analytics service cuts sessions."""
        if session.stateless:
            return
        now = time.perf_counter()
        if session.last_seen is not None and now - session.last_seen > self.session_timeout:
            self._record_session(session, None)
            session.first_seen = None
        if session.first_seen is None:
            session.first_seen = now
        session.last_seen = now

    def end_session(self, session: Session, *, error_type: str | None = None) -> None:
        """The session's connection closed: the duration of its last part is recorded (once)."""
        if session.ended or session.stateless:
            return
        session.ended = True
        if not session.client_side and session.session_id is not None:
            self._open_sessions.pop(session.session_id, None)
        self._record_session(session, error_type)

    def _record_session(self, session: Session, error_type: str | None) -> None:
        """``mcp.*.session.duration``: from the first message of the session's part to its last (none without one)."""
        if session.first_seen is None or session.last_seen is None:
            return
        histogram = self.instruments.client_session if session.client_side else self.instruments.server_session
        metrics = dict(session.metric_attributes())
        if session.client_name is not None:  # sessions per client, through the same cap as operations
            metrics[attr.MCP_CLIENT_NAME] = self.caps[attr.MCP_CLIENT_NAME](session.client_name)
        if error_type is not None:
            metrics[attr.ERROR_TYPE] = error_type
        histogram.record(session.last_seen - session.first_seen, metrics)

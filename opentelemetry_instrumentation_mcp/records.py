"""SDK-independent records the adapters hand to the core.

An adapter reads the SDK's objects once and fills these; the core never sees
an ``mcp`` type.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.util.types import AttributeValue

from opentelemetry_instrumentation_mcp import attributes as attr


@dataclass(frozen=True, slots=True)
class Transport:
    """Where messages travel: set once per connection by the adapter."""

    name: str | None = None
    """``network.transport``: ``pipe`` (stdio), ``tcp`` (HTTP), or None (in memory)."""
    protocol_name: str | None = None
    protocol_version: str | None = None

    def attributes(self) -> dict[str, AttributeValue]:
        found = {
            attr.NETWORK_TRANSPORT: self.name,
            attr.NETWORK_PROTOCOL_NAME: self.protocol_name,
            attr.NETWORK_PROTOCOL_VERSION: self.protocol_version,
        }
        return {key: value for key, value in found.items() if value is not None}


@dataclass(slots=True)
class Session:
    """One side's view of an MCP session (a connection), or of one stateless request.

    ``session_id`` is the transport's id (streamable HTTP's ``mcp-session-id``)
    or one minted here for stdio and in-memory connections; stateless traffic
    has none.
    """

    stateless: bool = False
    client_side: bool = False
    """The client's view of the session (its durations are ``mcp.client.session.duration``)."""
    session_id: str | None = None
    transport: Transport = field(default_factory=Transport)
    client_name: str | None = None
    client_version: str | None = None
    server_name: str | None = None
    server_version: str | None = None
    protocol_version: str | None = None
    peer: Any = None
    """Client side: the ``transport.ServerPeer`` this session talks to, when known."""
    user_id: str | None = None
    user_name: str | None = None
    user_data: str | None = None
    """What the identify hook said of the user, as JSON (redacted, bounded)."""
    caller_id: str | None = None
    """Stateless HTTP: the caller's id (see ``callers``)."""
    identified: bool = False
    """Whether the caller was identified already (the answer is kept for the session)."""
    first_seen: float | None = None
    last_seen: float | None = None
    """``time.perf_counter()`` of the first and the last message of the session's current part (see
    ``Telemetry.saw``): a session ends after its inactivity timeout, and its next message starts a new part."""
    ended: bool = False
    described: bool = False
    """Client side: the adapter has read all the SDK's session tells of it (see ``ClientSessions.session_of``)."""
    _cache: tuple[tuple[Any, ...], dict[str, AttributeValue], dict[str, AttributeValue]] | None = field(
        default=None, repr=False, compare=False
    )

    @classmethod
    def stateful(cls, session_id: str | None, transport: Transport, **fields: Any) -> Session:
        return cls(session_id=session_id or uuid.uuid4().hex, transport=transport, **fields)

    def span_attributes(self) -> dict[str, AttributeValue]:
        """The session's span attributes (shared: copy before changing)."""
        return self.attributes()[0]

    def metric_attributes(self) -> dict[str, AttributeValue]:
        """The session's metric attributes (shared: copy before changing)."""
        return self.attributes()[1]

    def attributes(self) -> tuple[dict[str, AttributeValue], dict[str, AttributeValue]]:
        """The session's span and metric attributes (shared: copy before changing), built once per change of the
        fields they derive from, not once per message."""
        key = (
            self.session_id,
            self.stateless,
            self.transport,
            self.client_name,
            self.client_version,
            self.server_name,
            self.server_version,
            self.protocol_version,
            self.user_id,
            self.user_name,
            self.user_data,
            self.caller_id,
        )
        cache = self._cache
        if cache is None or cache[0] != key:
            cache = self._cache = (key, self._build_span_attributes(), self._build_metric_attributes())
        return cache[1], cache[2]

    def _build_span_attributes(self) -> dict[str, AttributeValue]:
        found: dict[str, AttributeValue | None] = {
            attr.MCP_SESSION_ID: self.session_id,
            attr.MCP_PROTOCOL_VERSION: self.protocol_version,
            attr.MCP_CLIENT_NAME: self.client_name,
            attr.MCP_CLIENT_VERSION: self.client_version,
            attr.MCP_SERVER_NAME: self.server_name,
            attr.MCP_SERVER_VERSION: self.server_version,
            attr.USER_ID: self.user_id,
            attr.USER_NAME: self.user_name,
            attr.MCP_USER_DATA: self.user_data,
            attr.MCP_CALLER_ID: self.caller_id,
        }
        if self.stateless:
            found[attr.MCP_SESSION_STATELESS] = True
        spans: dict[str, AttributeValue] = {key: value for key, value in found.items() if value is not None}
        spans.update(self.transport.attributes())
        return spans

    def _build_metric_attributes(self) -> dict[str, AttributeValue]:
        metrics = self.transport.attributes()
        if self.protocol_version is not None:
            metrics[attr.MCP_PROTOCOL_VERSION] = self.protocol_version
        return metrics


@dataclass(slots=True)
class Message:
    """One MCP request or notification, as the core needs to see it."""

    method: str
    request_id: str | None = None
    """``jsonrpc.request.id`` as a string; None for notifications."""
    name: str | None = None
    """The tool name (``tools/call``) or prompt name (``prompts/get``)."""
    uri: str | None = None
    meta: Mapping[str, Any] | None = None
    """``params._meta``: the trace-context carrier."""
    argument_keys: tuple[str, ...] | None = None
    """The argument names of ``tools/call`` / ``prompts/get`` (never their values)."""
    intent: str | None = None
    """Why the agent called the tool: the injected intent argument's value."""
    arguments: Mapping[str, Any] | None = None
    """The arguments of ``tools/call`` / ``prompts/get``: recorded only when content capture is on."""
    peer_address: str | None = None
    peer_port: int | None = None
    """The other side's address: ``client.*`` on server spans, ``server.*`` on client spans."""
    user_agent: str | None = None
    """Server side over HTTP: the request's ``User-Agent``."""
    caller: tuple[Any, ...] | None = None
    """Server side over HTTP: what identifies the caller on the wire (see ``callers``)."""


CLIENT_INFO_META_KEY = "io.modelcontextprotocol/clientInfo"
"""The ``_meta`` key of the client info every 2026-07-28 request carries (and instrumented stateless clients send)."""

ARGUMENT_METHODS = ("tools/call", "prompts/get")
RESULT_SIZE_METHODS = frozenset({"tools/call", "prompts/get", "resources/read"})
"""Methods whose answer carries content: their ``mcp.response.size`` is recorded."""


def implementation(info: Any) -> tuple[str | None, str | None]:
    """(name, version) of an ``Implementation`` (client or server info): a wire mapping or an SDK model."""
    if isinstance(info, Mapping):
        name, version = info.get("name"), info.get("version")
    elif info is None:
        return None, None
    else:
        name, version = getattr(info, "name", None), getattr(info, "version", None)
    return (name if isinstance(name, str) else None), (version if isinstance(version, str) else None)


def argument_keys(arguments: Mapping[Any, Any]) -> tuple[str, ...]:
    """The names of a call's arguments, sorted: strings on the wire (a caller's own mapping may hold other keys,
    said as strings)."""
    try:
        keys = sorted(arguments)
        if not keys or type(keys[0]) is str:  # sorted, so every key is a string
            return tuple(keys)
    except TypeError:  # keys of several types
        pass
    return tuple(sorted(map(str, arguments)))


def is_mapping(value: object) -> bool:
    """``isinstance(value, Mapping)``, a ``dict`` (nearly always) tested first: the ABC's test runs Python code."""
    return type(value) is dict or isinstance(value, Mapping)


def message_from_params(
    method: str, request_id: object | None, params: Mapping[str, Any] | None, **fields: Any
) -> Message:
    """Build a ``Message`` from wire-shaped (camelCase) params; malformed fields are ignored."""
    request_id = None if request_id is None else str(request_id)
    message = Message(method, request_id, **fields) if fields else Message(method, request_id)
    # ``is_mapping`` written out: this runs for every message, and a call costs more than the test.
    if params is None or not (type(params) is dict or isinstance(params, Mapping)):
        return message
    if method in ARGUMENT_METHODS:
        name = params.get("name")
        if isinstance(name, str):
            message.name = name
            arguments = params.get("arguments")
            if type(arguments) is dict or isinstance(arguments, Mapping):
                message.argument_keys, message.arguments = argument_keys(arguments), arguments
            else:
                message.argument_keys = ()
    uri = params.get("uri")
    if isinstance(uri, str):
        message.uri = uri
    meta = params.get("_meta")
    if meta and (type(meta) is dict or isinstance(meta, Mapping)):
        message.meta = meta
    return message

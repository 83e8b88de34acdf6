"""Who must act on a failure: its origin (client, auth, upstream, server) and a reason code.

One table decides it, from the JSON-RPC error, the tool result, or the exception
chain. Tool authors can state it themselves with ``ToolFailure``.

Reasons (a closed set):

=================== ========= ======================================================
reason              origin    when
=================== ========= ======================================================
invalid_request     client    -32700 parse error, -32600 invalid request
method_not_found    client    -32601
invalid_params      client    -32602, or arguments that fail the tool's schema
unknown_tool        client    a ``tools/call`` for a tool the server does not have
not_found           client    -32002 (resource not found), unknown prompt
cancelled           client    the request was cancelled before it completed
missing_token       auth      no bearer token where the server requires one
invalid_token       auth      a token the server rejects
expired_token       auth      an expired token
insufficient_scope  auth      a token without the required scope
upstream_error      upstream  an HTTP client error raised from inside a tool
upstream_timeout    upstream  a timeout raised from inside a tool
tool_error          server    a tool failed (``isError``) for its own reasons
internal_error      server    -32603, or the server itself failed
=================== ========= ======================================================

The server is the side that knows: it sends its verdict to the client in the
answer itself, under ``WIRE_KEY`` in a result's ``_meta`` (which the protocol
reserves for such metadata) or in a JSON-RPC error's ``data`` object, so the
client span of the same request carries the same origin and reason. An auth
refusal has no MCP answer: its verdict travels in the ``HEADER`` response
header. A client whose server sends none judges by the same table from what it
received (a refusal by its status and RFC 6750 ``WWW-Authenticate`` error).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum


class FailureOrigin(str, Enum):
    CLIENT = "client"
    AUTH = "auth"
    UPSTREAM = "upstream"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class Failure:
    origin: str
    reason: str


REASONS: dict[str, FailureOrigin] = {
    "invalid_request": FailureOrigin.CLIENT,
    "method_not_found": FailureOrigin.CLIENT,
    "invalid_params": FailureOrigin.CLIENT,
    "unknown_tool": FailureOrigin.CLIENT,
    "not_found": FailureOrigin.CLIENT,
    "cancelled": FailureOrigin.CLIENT,
    "missing_token": FailureOrigin.AUTH,
    "invalid_token": FailureOrigin.AUTH,
    "expired_token": FailureOrigin.AUTH,
    "insufficient_scope": FailureOrigin.AUTH,
    "upstream_error": FailureOrigin.UPSTREAM,
    "upstream_timeout": FailureOrigin.UPSTREAM,
    "tool_error": FailureOrigin.SERVER,
    "internal_error": FailureOrigin.SERVER,
}


def failure(reason: str) -> Failure:
    return Failure(REASONS[reason].value, reason)


WIRE_KEY = "mcp-otel-analytics/failure"
"""Where a server's verdict travels: a key of a result's ``_meta`` or of a JSON-RPC error's ``data``."""


def to_wire(found: Failure) -> dict[str, str]:
    return {"origin": found.origin, "reason": found.reason}


def carrying(carrier: object, found: Failure) -> dict[str, object] | None:
    """A copy of ``carrier`` (a ``_meta`` or error ``data``: a mapping or None) with the verdict added;
    None where it cannot carry one (error ``data`` of another type is never changed)."""
    if carrier is None:
        return {WIRE_KEY: to_wire(found)}
    if isinstance(carrier, Mapping):
        return {**carrier, WIRE_KEY: to_wire(found)}
    return None


def from_wire(carrier: object) -> Failure | None:
    """The verdict a server sent in ``carrier`` (a ``_meta`` or error ``data`` mapping); None if absent or malformed."""
    if not isinstance(carrier, Mapping):
        return None
    sent = carrier.get(WIRE_KEY)
    reason = sent.get("reason") if isinstance(sent, Mapping) else None
    if not isinstance(reason, str) or reason not in REASONS:
        return None
    return failure(reason)


HEADER = "mcp-otel-analytics-failure"
"""The HTTP response header of a refused request (no MCP answer exists): ``to_wire`` as JSON."""


def to_header(found: Failure) -> bytes:
    return json.dumps(to_wire(found), separators=(",", ":")).encode()


def of_refusal(status: int, header: str | None, authenticate: str | None, *, sent_token: bool) -> Failure:
    """A request the server's auth refused with HTTP ``status``: the verdict in its ``HEADER`` (``header``),
    else RFC 6750's ``error`` in ``WWW-Authenticate`` (``authenticate``), else the status."""
    try:
        found = from_wire({WIRE_KEY: json.loads(header)}) if header else None
    except ValueError:
        found = None
    if found is not None:
        return found
    stated = _BEARER_ERROR.search(authenticate or "")
    if (stated and stated.group(1) == "insufficient_scope") or status == 403:
        return failure("insufficient_scope")
    return failure("invalid_token" if sent_token else "missing_token")  # stated "invalid_token", or a bare 401


_BEARER_ERROR = re.compile(r'error="([a-z_]+)"')
CANCELLED = failure("cancelled")
TOOL_ERROR = failure("tool_error")
INTERNAL_ERROR = failure("internal_error")


_ORIGIN_REASONS = {
    FailureOrigin.CLIENT: "invalid_params",
    FailureOrigin.AUTH: "insufficient_scope",
    FailureOrigin.UPSTREAM: "upstream_error",
    FailureOrigin.SERVER: "internal_error",
}
"""What a tool's failure is for each origin when it states no reason."""


class ToolFailure(Exception):
    """Raise from a tool to say who must act on its failure::

        raise ToolFailure("the billing API is down", reason="upstream_error")
        raise ToolFailure("no such city", origin="client")  # reason: invalid_params

    ``origin`` (a ``FailureOrigin`` or its value) alone takes that origin's usual reason (``invalid_params``,
    ``insufficient_scope``, ``upstream_error``, ``internal_error``); ``reason`` alone, its origin; both must
    agree. The server answers it like any other exception of the tool (a result with ``isError`` on the
    high-level servers); the span records the stated verdict.
    """

    def __init__(self, message: str, *, reason: str | None = None, origin: FailureOrigin | str | None = None) -> None:
        try:
            stated = None if origin is None else FailureOrigin(origin)
        except ValueError:
            raise ValueError(f"unknown failure origin {origin!r}; one of {[o.value for o in FailureOrigin]}") from None
        if reason is None:
            if stated is None:
                raise ValueError("ToolFailure needs a reason or an origin")
            reason = _ORIGIN_REASONS[stated]
        if reason not in REASONS:
            raise ValueError(f"unknown failure reason {reason!r}; one of {sorted(REASONS)}")
        if stated is not None and REASONS[reason] is not stated:
            raise ValueError(f"reason {reason!r} is a {REASONS[reason].value} failure, not {stated.value}")
        super().__init__(message)
        self.failure = failure(reason)


# JSON-RPC error codes; a message pattern refines a code where the SDKs reuse one code for several
# cases (mcp 1.x answers whatever a handler raised with code 0 and the exception's text).
_UNKNOWN_TOOL = re.compile(r"unknown tool", re.I)
_UNKNOWN_ITEM = re.compile(r"unknown (resource|prompt)|(resource|prompt) .*not found", re.I)
_CODE_RULES: tuple[tuple[frozenset[int], re.Pattern[str] | None, str], ...] = (
    (frozenset({-32602, 0}), _UNKNOWN_TOOL, "unknown_tool"),
    (frozenset({-32602, 0}), _UNKNOWN_ITEM, "not_found"),
    (frozenset({0}), re.compile(r"^request cancelled$", re.I), "cancelled"),
    (frozenset({-32700, -32600}), None, "invalid_request"),
    (frozenset({-32601}), None, "method_not_found"),
    (frozenset({-32602}), None, "invalid_params"),
    (frozenset({-32002}), None, "not_found"),
)

# Tool results with isError and no exception to read: what the SDKs write for the client's mistakes.
_TOOL_TEXT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^unknown tool", re.I), "unknown_tool"),
    (re.compile(r"^input validation error", re.I), "invalid_params"),
)

# Exceptions by the package that raised them (no import needed) and their class names.
_UPSTREAM_PACKAGES = frozenset({"httpx", "httpx2", "httpcore", "requests", "urllib3", "aiohttp", "urllib", "http"})
_TIMEOUT_TYPES = (TimeoutError, asyncio.TimeoutError, socket.timeout)


def of_jsonrpc(code: int, message: str) -> Failure:
    for codes, pattern, reason in _CODE_RULES:
        if code in codes and (pattern is None or pattern.search(message or "")):
            return failure(reason)
    return INTERNAL_ERROR


def of_tool_result(text: str | None) -> Failure:
    """A ``tools/call`` answered with ``isError`` and no exception seen: judged by its first text."""
    for pattern, reason in _TOOL_TEXT_RULES:
        if text and pattern.search(text):
            return failure(reason)
    return TOOL_ERROR


def of_exception(exc: BaseException, default: Failure | None = INTERNAL_ERROR) -> Failure | None:
    """Walk the chain (``__cause__``, then ``__context__``) for the first exception that says who failed."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _of_one(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return default


def _of_one(exc: BaseException) -> Failure | None:
    stated = getattr(exc, "failure", None)
    if isinstance(stated, Failure):
        return stated
    package = type(exc).__module__.split(".", 1)[0]
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, _TIMEOUT_TYPES) or (package in _UPSTREAM_PACKAGES and any("Timeout" in n for n in names)):
        return failure("upstream_timeout")
    if package in _UPSTREAM_PACKAGES:
        return failure("upstream_error")
    if package == "jsonschema" or (package == "pydantic_core" and _is_argument_validation(exc)):
        return failure("invalid_params")
    return None


def _is_argument_validation(exc: BaseException) -> bool:
    """The high-level servers validate a tool's arguments with a model named ``<tool>Arguments``."""
    title = getattr(exc, "title", "")
    return isinstance(title, str) and title.endswith("Arguments")

"""Stdio safety: over stdio, the process's stdout is the MCP protocol stream.

An exporter that prints there (``OTEL_TRACES_EXPORTER=console``, a ``ConsoleSpanExporter()``
with its default ``out``, the console metric and log exporters) corrupts the stream: the client
fails to parse the next message. When a server starts on stdio, the OTel SDK providers are
searched for such exporters and one warning says which and what to do instead.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import Any

_DEPTH = 6
"""How far into a provider's processors, readers and exporters the search goes."""
_MOST = 5000
"""Objects searched at most."""

FIX = (
    "over stdio, stdout carries the MCP protocol and %s writes telemetry there: clients will fail to parse it. "
    "Export over OTLP (OTEL_TRACES_EXPORTER=otlp ...), or give console exporters out=sys.stderr."
)


def _is_stdout(stream: Any) -> bool:
    if stream is sys.stdout or stream is sys.__stdout__:
        return True
    try:
        return stream.fileno() == 1
    except Exception:  # not a file, closed, or no descriptor  # noqa: BLE001
        return False


def _members(value: Any) -> list[Any]:
    """What an OTel SDK object holds: its fields, or the items of a collection."""
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    if isinstance(value, dict):
        return list(value.values())
    fields = getattr(value, "__dict__", None)
    found = list(fields.values()) if isinstance(fields, dict) else []
    for cls in type(value).__mro__:
        for name in getattr(cls, "__slots__", ()):
            found.append(getattr(value, name, None))
    return found


def exporters_on_stdout(*providers: Any) -> list[str]:
    """Class names of the exporters, reachable from these SDK providers, that write to this process's stdout."""
    found: list[str] = []
    seen: set[int] = set()
    pending = deque((provider, 0) for provider in providers)  # breadth first: each object at its shortest depth
    while pending and len(seen) < _MOST:
        value, depth = pending.popleft()
        if id(value) in seen or depth > _DEPTH:
            continue
        seen.add(id(value))
        module = type(value).__module__
        if not isinstance(value, list | tuple | set | frozenset | dict) and not module.startswith("opentelemetry"):
            continue  # only the SDK's own objects (and their collections) are searched
        if any(_is_stdout(getattr(value, name, None)) for name in ("out", "_out")):
            found.append(type(value).__name__)
            continue
        pending.extend((member, depth + 1) for member in _members(value))
    return sorted(set(found))

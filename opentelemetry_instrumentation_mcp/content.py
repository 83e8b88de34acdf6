"""Captured content: opt-in values on spans, always redacted and bounded.

Every string this package writes from the conversation (user intent, user name,
error messages, and when capture is on, tool arguments and results and prompt
arguments) goes through ``ContentPolicy.text``: the ``redact`` hook first (a hook
that raises drops the value rather than leak it), then truncation to
``MAX_CONTENT_LENGTH`` characters. Binary content (images, audio, blobs) is never
captured: a marker gives its type and size instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry_instrumentation_mcp._log import WarnOnce

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
MAX_CONTENT_LENGTH = 8192
"""Characters of one captured value kept on a span; the rest is cut and marked with an ellipsis."""
_BINARY_KEYS = ("data", "blob")

Redact = Callable[[str], str]


def _binary_marker(item: Mapping[str, Any], key: str) -> str:
    encoded = item[key]
    size = len(encoded) * 3 // 4 - str(encoded).count("=", -2) if isinstance(encoded, str) else 0
    kind = item.get("mimeType") or item.get("mime_type") or item.get("type") or "binary"
    return f"<{kind}, {size} bytes>"


def without_binary(value: Any) -> Any:
    """A copy of wire-shaped content with base64 payloads replaced by a marker of their type and size."""
    if isinstance(value, Mapping):
        return {
            key: _binary_marker(value, key) if key in _BINARY_KEYS and isinstance(item, str) else without_binary(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [without_binary(item) for item in value]
    return value


class ContentPolicy:
    def __init__(self, capture: bool = False, redact: Redact | None = None) -> None:
        self.capture = capture
        self.redact = redact
        self._warn = WarnOnce()

    def text(self, value: str | None) -> str | None:
        """``value`` redacted and truncated; None when it must not be recorded."""
        if value is None:
            return None
        if self.redact is not None:
            try:
                value = self.redact(value)
            except Exception:  # noqa: BLE001 - a failing hook drops the value, never leaks it
                self._warn("redact", "the redact hook raised; the values it was given are dropped", exc_info=True)
                return None
            if not isinstance(value, str):
                return None
        return value if len(value) <= MAX_CONTENT_LENGTH else value[: MAX_CONTENT_LENGTH - 1] + "…"

    def json(self, value: Any) -> str | None:
        """Captured structured content as a JSON string (binary replaced by markers); None when capture is off."""
        if not self.capture or value is None:
            return None
        return self.text(json.dumps(without_binary(value), ensure_ascii=False, default=str))

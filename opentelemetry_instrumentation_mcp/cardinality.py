"""Caps on metric attribute values that clients control.

A client chooses its own name and may call tools or prompts that do not exist;
without a cap, each new value would add metric series forever. After ``limit``
distinct values of an attribute, further new values are recorded as ``_OTHER``
(spans keep the real value) and the overflow is counted.
"""

from __future__ import annotations

import threading

from opentelemetry.metrics import Counter

from opentelemetry_instrumentation_mcp import attributes as attr
from opentelemetry_instrumentation_mcp._log import WarnOnce

OTHER = "_OTHER"
LIMITS = {
    attr.MCP_METHOD_NAME: 64,  # the protocol has about 25; a client may send any name
    attr.MCP_CLIENT_NAME: 100,
    attr.GEN_AI_TOOL_NAME: 1000,
    attr.GEN_AI_PROMPT_NAME: 1000,
}
"""Distinct values kept per metric attribute."""


class Cap:
    """The first ``limit`` distinct values of one attribute pass; later new ones become ``_OTHER``."""

    def __init__(self, attribute: str, limit: int, overflow: Counter) -> None:
        self.attribute = attribute
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._overflow = overflow
        self._warn = WarnOnce()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        self._overflow.add(1, {"attribute": self.attribute})
        self._warn(
            "overflow", "more than %d distinct %s values: further ones are recorded as %s on metrics",
            self.limit, self.attribute, OTHER,
        )  # fmt: skip
        return OTHER

"""Warnings logged once per cause: a failure that repeats on every message is reported, not flooded."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("opentelemetry_instrumentation_mcp")


class WarnOnce:
    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, key: str, message: str, *args: Any, exc_info: bool = False) -> None:
        if key not in self._seen:
            self._seen.add(key)
            logger.warning(message, *args, exc_info=exc_info)

    def reset(self) -> None:
        self._seen.clear()

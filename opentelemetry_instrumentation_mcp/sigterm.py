"""Spans and metric points not lost to SIGTERM.

The SDK exports what it still holds when the interpreter exits normally (its providers register an
``atexit`` shutdown). SIGTERM's default action ends the process without that, and uvicorn, after its
graceful shutdown, re-raises the SIGTERM it caught so the process ends the same way: whatever the batch
processor held (the last seconds, the session ends) was lost. Where SIGTERM still has its default action,
``instrument()`` installs a handler that flushes the providers (bounded: at most ``FLUSH_BUDGET_MS``, whatever
the exporters do) and then lets the default action end the process exactly as before: the same signal, the
same exit status.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

ENV = "OTEL_INSTRUMENTATION_MCP_FLUSH_ON_SIGTERM"
FLUSH_BUDGET_MS = 5000
"""The most the handler waits for exports, all providers together."""


class SigtermFlush:
    def __init__(self, providers: Callable[[], Iterable[Any]], budget_ms: int = FLUSH_BUDGET_MS) -> None:
        self._providers = providers
        self._budget_ms = budget_ms

    def install(self) -> bool:
        """Take SIGTERM where it has its default action (and only from the main thread, as Python requires)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return False  # the application (or a framework) handles it: left alone
        signal.signal(signal.SIGTERM, self._handle)
        return True

    def uninstall(self) -> None:
        """Give SIGTERM its default action back, unless something else took it since."""
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == self._handle:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def _handle(self, signum: int, frame: Any) -> None:
        # A second SIGTERM during the flush ends the process at once, as the first would have without us.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # The flush runs on a thread of its own, joined for the budget: the SDK's batch processor ignores a
        # flush's timeout (it exports until done, the OTLP exporter waits for its own), and this handler
        # interrupted the main thread at any point, perhaps holding a lock an export needs.
        flusher = threading.Thread(target=self._flush, name="mcp-sigterm-flush", daemon=True)
        flusher.start()
        flusher.join(self._budget_ms / 1000)
        signal.raise_signal(signal.SIGTERM)  # the default action, as if this handler had never been

    def _flush(self) -> None:
        deadline = time.monotonic() + self._budget_ms / 1000
        for provider in self._providers():
            left = int((deadline - time.monotonic()) * 1000)
            flush = getattr(provider, "force_flush", None)
            if left <= 0 or flush is None:
                continue
            try:
                flush(timeout_millis=left)
            except Exception:  # the process is ending: flush what can be, never fail here
                logger.debug("flush on SIGTERM failed", exc_info=True)

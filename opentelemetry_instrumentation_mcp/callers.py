"""Stateless HTTP: which client a caller named, for its later requests that name none.

Before the 2026-07-28 revision a stateless client names itself (``clientInfo``) only in its
``initialize``; every later request is a connection of its own. What ties them together is what
identifies the caller on the wire: its address, its ``User-Agent`` and its ``Authorization``
header (kept only as a digest). The map is bounded in count and in time: an entry lasts the
inactivity window of a session after the caller's last request.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Hashable

from opentelemetry_instrumentation_mcp._log import WarnOnce

MAX_CALLERS = 10_000
WINDOW_SECONDS = 30 * 60
"""How long a caller's client is remembered after its last request (the session inactivity timeout)."""

Client = tuple[str, "str | None"]


class Callers:
    def __init__(self, limit: int = MAX_CALLERS, window: float = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self.evicted = 0
        """Callers forgotten before their window ended because the map was full."""
        self._clients: OrderedDict[bytes, tuple[float, Client]] = OrderedDict()
        self._warn = WarnOnce()

    @staticmethod
    def _key(caller: Hashable) -> bytes:
        return hashlib.blake2b(repr(caller).encode(), digest_size=16).digest()

    def remember(self, caller: Hashable, client: Client) -> None:
        key = self._key(caller)
        self._clients[key] = (time.monotonic() + self.window, client)
        self._clients.move_to_end(key)
        while len(self._clients) > self.limit:
            _, (expires, _) = self._clients.popitem(last=False)
            if expires > time.monotonic():
                self.evicted += 1
                self._warn("full", "more than %d stateless callers at once: the oldest are forgotten", self.limit)

    def recall(self, caller: Hashable) -> Client | None:
        key = self._key(caller)
        found = self._clients.get(key)
        if found is None:
            return None
        expires, client = found
        if expires <= time.monotonic():
            del self._clients[key]
            return None
        self._clients[key] = (time.monotonic() + self.window, client)
        self._clients.move_to_end(key)
        return client

"""Stateless HTTP: who the caller of a request is, when the protocol gives no session to say it.

Before the 2026-07-28 revision a stateless client names itself (``clientInfo``) only in its
``initialize``; every later request is a connection of its own. What ties them together is what
identifies the caller on the wire: its address, its ``User-Agent`` and its ``Authorization``
header (kept only as a digest). A caller's notifications, which are never identified (nothing may wait
before their span starts), take the user its last request was identified as. Each caller gets a random id (``mcp.caller.id``: nothing of the
wire is in it) and keeps it, with the client it named, for the inactivity window of a session
after its last request. The map is bounded in count and in time.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field

from opentelemetry_instrumentation_mcp._log import WarnOnce

MAX_CALLERS = 10_000
WINDOW_SECONDS = 30 * 60
"""How long a caller is remembered after its last request (the session inactivity timeout)."""


@dataclass(slots=True)
class Caller:
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    client: tuple[str, str | None] | None = None
    """(name, version) of the client the caller named last."""
    user: tuple[str, str | None, str | None] | None = None
    """(id, name, data) of the user the caller was identified as last (its notifications are not identified)."""
    expires: float = 0.0


class Callers:
    def __init__(self, limit: int = MAX_CALLERS, window: float = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self.evicted = 0
        """Callers forgotten before their window ended because the map was full."""
        self._callers: OrderedDict[bytes, Caller] = OrderedDict()
        self._warn = WarnOnce()

    def visit(self, wire: Hashable) -> Caller:
        """The caller identified by ``wire`` (new when unknown or past its window); its window starts again."""
        key = hashlib.blake2b(repr(wire).encode(), digest_size=16).digest()
        now = time.monotonic()
        caller = self._callers.get(key)
        if caller is None or caller.expires <= now:
            caller = self._callers[key] = Caller()
        caller.expires = now + self.window
        self._callers.move_to_end(key)
        while len(self._callers) > self.limit:
            _, oldest = self._callers.popitem(last=False)
            if oldest.expires > now:
                self.evicted += 1
                self._warn("full", "more than %d stateless callers at once: the oldest are forgotten", self.limit)
        return caller

"""Who is calling: an ``identify`` hook, or the authenticated access token.

The hook receives an ``IdentifyRequest`` and returns a ``UserIdentity`` or None
(anonymous). It is called once per session, on the session's first tool call,
and its answer is kept for the session; on stateless traffic it is called for
every request. A hook that raises, times out or answers something else is
logged once and the caller stays anonymous; the request goes on untouched.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from opentelemetry_instrumentation_mcp._log import WarnOnce

DEFAULT_TIMEOUT = 1.0
"""Seconds an ``identify`` hook may take before the caller is treated as anonymous."""


@dataclass(frozen=True, slots=True)
class UserIdentity:
    user_id: str
    user_name: str | None = None
    user_data: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class IdentifyRequest:
    """What an ``identify`` hook sees of the request that identifies the caller."""

    method: str
    params: Mapping[str, Any] | None
    headers: Mapping[str, str] | None
    """The HTTP request headers (None on stdio and in memory)."""
    auth_token: Any | None
    """The SDK's ``AccessToken`` when the server uses the SDK's auth (``client_id``, ``scopes``, …)."""
    session_id: str | None


IdentifyHook = Callable[[IdentifyRequest], "UserIdentity | Awaitable[UserIdentity | None] | None"]


def from_token(token: Any) -> UserIdentity | None:
    """The identity an access token carries: its subject where it has one, else its client id."""
    if token is None:
        return None
    subject = getattr(token, "subject", None) or (getattr(token, "claims", None) or {}).get("sub")
    user_id = subject or getattr(token, "client_id", None)
    return UserIdentity(str(user_id)) if user_id else None


def is_due(session: Any, method: str) -> bool:
    """Identify now? Every request on stateless traffic; a session's first tool call otherwise.

    Never on a notification: a stateless server may end a notification's handling as soon as it has answered
    it (``202``), so nothing may wait before its span starts (it takes its caller's identity, see ``callers``)."""
    if session.stateless:
        return not method.startswith("notifications/")
    return not session.identified and method == "tools/call"


class Identifier:
    def __init__(self, hook: IdentifyHook | None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.hook = hook
        self.timeout = timeout
        self._warn = WarnOnce()

    async def identify(self, request: IdentifyRequest) -> UserIdentity | None:
        """The caller's identity; None for anonymous. Never raises."""
        if self.hook is None:
            return from_token(request.auth_token)
        try:
            with anyio.move_on_after(self.timeout):
                return self._checked(await self._call(self.hook, request))
            self._report("timed out", f"did not answer within {self.timeout} s")
        except Exception:  # noqa: BLE001 - the hook's failure is logged, never raised
            self._report("raised", "raised", exc_info=True)
        return None

    @staticmethod
    async def _call(hook: IdentifyHook, request: IdentifyRequest) -> Any:
        if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(getattr(hook, "__call__", None)):  # noqa: B004 - an async __call__
            return await hook(request)  # type: ignore[misc]
        # A synchronous hook runs in a worker thread, so a slow one never blocks the event loop.
        answer = await anyio.to_thread.run_sync(hook, request, abandon_on_cancel=True)
        return await answer if inspect.isawaitable(answer) else answer

    def _checked(self, answer: Any) -> UserIdentity | None:
        if answer is None or (isinstance(answer, UserIdentity) and isinstance(answer.user_id, str) and answer.user_id):
            return answer
        self._report("answer", f"answered {type(answer).__name__}, not a UserIdentity or None")
        return None

    def _report(self, kind: str, what: str, exc_info: bool = False) -> None:
        self._warn(kind, "the identify hook %s; the caller is treated as anonymous", what, exc_info=exc_info)

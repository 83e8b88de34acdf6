"""Patching helpers shared by the adapters."""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from opentelemetry_instrumentation_mcp._log import WarnOnce

_internal_errors = WarnOnce()

V = TypeVar("V")


class ObjectMap(dict[int, V]):
    """A value per live SDK object (a session, a connection), looked up by ``id(obj)`` with the dict's own
    ``get``: a ``WeakKeyDictionary`` runs Python code for every lookup, and there are several per message. An
    entry leaves when its object is collected; a value must not refer to its object, which it would keep alive."""

    def put(self, key: object, value: V) -> V:
        if id(key) not in self:
            weakref.finalize(key, self.pop, id(key), None)
        self[id(key)] = value
        return value


def log_internal_error(where: str) -> None:
    """Log a failure of our own code once per place; the application goes on untouched."""
    _internal_errors(where, "MCP instrumentation skipped %s after an internal error", where, exc_info=True)


class Patches:
    """What one ``instrument()`` changed (wrapped functions, cleanups), so ``uninstrument()`` undoes exactly that."""

    def __init__(self) -> None:
        self._applied: list[tuple[Any, str]] = []
        self._cleanups: list[Callable[[], None]] = []

    def wrap(self, module: str, name: str, wrapper: Any, *, optional: bool = False) -> None:
        """Wrap ``module.name``; an ``optional`` target that this SDK version lacks is skipped."""
        owner, _, attribute = name.rpartition(".")
        try:
            target = importlib.import_module(module)
            for part in owner.split(".") if owner else ():
                target = getattr(target, part)
            getattr(target, attribute)
        except (ImportError, AttributeError):
            if optional:
                return
            raise
        wrap_function_wrapper(target, attribute, wrapper)
        self._applied.append((target, attribute))

    def on_restore(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` when restoring (after the wrappers are gone): what is not a wrapped function."""
        self._cleanups.append(cleanup)

    def restore(self) -> None:
        while self._applied:
            unwrap(*self._applied.pop())
        while self._cleanups:
            self._cleanups.pop()()

"""Boolean environment variables, read one way by the instrumentation, the exporter and the analytics API."""

from __future__ import annotations

import os

__all__ = ["FALSE", "TRUE", "flag"]

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})


def flag(name: str, default: bool) -> bool:
    """``name``'s value as a boolean (any case; ``default`` when unset or empty).

    Raises ``ValueError`` naming the variable and what it accepts for any other value: the analytics CLI refuses
    to start with it, the instrumentation logs it and keeps ``default`` (it never fails the application).
    """
    text = os.environ.get(name, "").strip().lower()
    if not text:
        return default
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"{name} is one of 1, true, yes, on or 0, false, no, off (any case), not {text!r}")

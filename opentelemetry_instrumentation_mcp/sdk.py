"""Which ``mcp`` SDK line is installed: the one place that decides it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from types import ModuleType


def installed_major() -> int | None:
    try:
        return int(version("mcp").split(".", 1)[0])
    except (PackageNotFoundError, ValueError):
        return None


def adapter() -> ModuleType:
    """The adapter module for the installed ``mcp`` line."""
    major = installed_major()
    if major == 1:
        from opentelemetry_instrumentation_mcp.adapters import v1  # noqa: PLC0415

        return v1
    if major == 2:
        from opentelemetry_instrumentation_mcp.adapters import v2  # noqa: PLC0415

        return v2
    raise RuntimeError(f"unsupported mcp version: {major}")

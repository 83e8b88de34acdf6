"""What both SDK lines' servers read off tools: a tool's exception before the server turns it into an
``isError`` result, the text and size of a result, the names a ``tools/list`` or ``prompts/list`` answer lists."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any

from opentelemetry_instrumentation_mcp import attributes as attr
from opentelemetry_instrumentation_mcp.failures import Failure
from opentelemetry_instrumentation_mcp.operation import Operation, current_server_operation

_SDK_PACKAGES = frozenset({"mcp", "fastmcp"})

MAX_LISTED = 1000
"""Names kept in ``mcp.tools.listed`` and ``mcp.prompts.listed``: a longer answer is cut after the first ones."""


def noting_wrapper(verdict_of: Callable[[BaseException], Failure | None] = lambda exc: None) -> Any:
    """A wrapper for a high-level server's ``call_tool``: notes what it raised (and, where ``verdict_of``
    knows, what that means), then re-raises it."""

    async def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        try:
            return await wrapped(*args, **kwargs)
        except Exception as exc:
            operation = current_server_operation.get()
            if operation is not None:
                operation.note_exception(exc, raised_by_tool(exc), verdict_of(exc))
            raise

    return wrapper


tool_manager_wrapper = noting_wrapper()
"""Wraps the SDK's ``ToolManager.call_tool`` (both lines)."""


def raised_by_tool(exc: BaseException) -> BaseException:
    """What the tool itself raised: the cause of the wrapper the SDK raises in its place (``ToolError``,
    ``UnexpectedToolError``: "Error executing tool ..."), else ``exc``."""
    cause = exc.__cause__
    if cause is not None and type(exc).__module__.split(".", 1)[0] in _SDK_PACKAGES:
        return cause
    return exc


def error_result_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wraps 1.x ``Server._make_error_result``, called from the ``except`` that caught a tool's exception."""
    exc = sys.exc_info()[1]
    operation = current_server_operation.get()
    if exc is not None and operation is not None:
        operation.note_exception(exc, raised_by_tool(exc))
    return wrapped(*args, **kwargs)


def first_text(content: Iterable[Any] | None) -> str | None:
    """The first text of a result's content (wire dicts or models)."""
    for item in content or ():
        text = item.get("text") if isinstance(item, dict) else getattr(item, "text", None)
        if isinstance(text, str):
            return text
    return None


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
"""Compact JSON as the wire has it (one encoder for every call: ``json.dumps`` with options makes one per call).
An answer on its way to the wire holds no cycles."""


def record_size(operation: Operation, result: Any) -> None:
    """``mcp.response.size`` of ``result``, counted only when the span records it (an unsampled span's
    answer is not serialized for a size nobody keeps)."""
    if operation.span.is_recording():
        operation.response_size(wire_size(result))


def wire_size(result: Any) -> int:
    """Bytes of ``result`` as JSON: a wire dict (2.x) or a protocol model (1.x, serialized by its own pydantic
    serializer, unwrapped from its ``ServerResult`` root)."""
    if isinstance(result, dict):
        text = _JSON.encode(result)
        return len(text) if text.isascii() else len(text.encode())
    model = getattr(result, "root", result)
    return len(model.__pydantic_serializer__.to_json(model, by_alias=True, exclude_none=True))


def record_listing(operation: Operation, method: str, result: Any) -> None:
    """What a ``tools/list`` or ``prompts/list`` answer (a wire dict or a model) lists: ``mcp.tools.listed``
    (and ``mcp.tools.destructive``: those whose annotations say ``destructiveHint: true``) or
    ``mcp.prompts.listed``, names in the answer's order."""
    if method == "tools/list":
        tools = list(islice(_items(result, "tools"), MAX_LISTED))
        operation.set_attributes({
            attr.MCP_TOOLS_LISTED: [name for tool in tools if isinstance(name := _get(tool, "name"), str)],
            attr.MCP_TOOLS_DESTRUCTIVE: [name for tool in tools if _destructive(tool) and isinstance(name := _get(tool, "name"), str)],
        })  # fmt: skip
    elif method == "prompts/list":
        names = (_get(prompt, "name") for prompt in _items(result, "prompts"))
        operation.set_attributes(
            {attr.MCP_PROMPTS_LISTED: list(islice((n for n in names if isinstance(n, str)), MAX_LISTED))}
        )


def _get(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def _items(result: Any, name: str) -> Iterable[Any]:
    items = _get(result, name)
    return items if isinstance(items, (list, tuple)) else ()


def _destructive(tool: Any) -> bool:
    """Said to be destructive: ``destructiveHint`` true, and not read-only (tools that say nothing are not counted,
    although the protocol's default for a tool that is not read-only is destructive)."""
    annotations = _get(tool, "annotations")
    if annotations is None:
        return False
    destructive = _get(annotations, "destructiveHint") or _get(annotations, "destructive_hint")  # wire, or 2.x model
    read_only = _get(annotations, "readOnlyHint") or _get(annotations, "read_only_hint")
    return destructive is True and read_only is not True

"""What both SDK lines' servers read off tools: a tool's exception before the server turns it into an
``isError`` result, the text and size of a result, the names a ``tools/list`` answer lists."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any

from opentelemetry_instrumentation_mcp import attributes as attr
from opentelemetry_instrumentation_mcp.operation import Operation, current_server_operation

_SDK_PACKAGES = frozenset({"mcp", "fastmcp"})

MAX_LISTED_TOOLS = 1000
"""Names kept in ``mcp.tools.listed``: a longer ``tools/list`` answer is cut after the first ones."""


async def tool_manager_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Wraps the high-level servers' ``ToolManager.call_tool``: notes what it raised, re-raises it."""
    try:
        return await wrapped(*args, **kwargs)
    except Exception as exc:
        operation = current_server_operation.get()
        if operation is not None:
            operation.note_exception(exc, raised_by_tool(exc))
        raise


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


def wire_size(result: Any) -> int:
    """Bytes of ``result`` as JSON: a wire dict (2.x) or a protocol model (1.x)."""
    if isinstance(result, dict):
        return len(json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode())
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode())


def record_listed_tools(operation: Operation, tools: Iterable[Any] | None) -> None:
    """``mcp.tools.listed``: the names of a ``tools/list`` answer's tools (wire dicts or models), in its order."""
    names = (tool.get("name") if isinstance(tool, Mapping) else getattr(tool, "name", None) for tool in tools or ())
    listed = list(islice((name for name in names if isinstance(name, str)), MAX_LISTED_TOOLS))
    operation.set_attributes({attr.MCP_TOOLS_LISTED: listed})

"""The same small MCP server, built on whichever ``mcp`` line is installed.

Two kinds: ``lowlevel`` (the SDK's ``Server``) and ``highlevel`` (``FastMCP`` on
1.x, ``MCPServer`` on 2.x). Tools: ``add`` (works), ``fail`` (raises: a tool
error), ``slow`` (sleeps ``seconds``); resource ``demo://greeting``; prompt
``review`` with argument ``code`` and ``broken`` (raises; unknown prompts are refused); completion on the prompt argument. Tools that
reach out: ``fetch`` (GET ``url`` with httpx, raising on an HTTP error status or
after ``timeout`` seconds) and ``billing`` (raises ``ToolFailure`` with an
explicit reason). ``note`` declares its own ``context`` parameter and returns it;
the low-level servers also have ``keys``, which answers the argument names it
received (and forbids unknown ones), and ``ask``, which asks its client for a sampling and
its roots (server-initiated requests) before it answers.

``build_fastmcp()``: the same kind of server on the standalone ``fastmcp`` framework
(imported only when called: fastmcp is installed only in the ``fastmcp`` nox session).
"""

from __future__ import annotations

import warnings
from importlib.metadata import version
from typing import Any

import anyio

MCP_MAJOR = int(version("mcp").split(".")[0])
IS_V2 = MCP_MAJOR >= 2
KINDS = ("lowlevel", "highlevel")
SERVER_VERSION = "1.2.3"


def announced_version(kind: str) -> str:
    """The ``serverInfo.version`` a test server announces: 1.x ``FastMCP`` takes none and announces mcp's."""
    return version("mcp") if kind == "highlevel" and not IS_V2 else SERVER_VERSION


ADD_SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
}
SLOW_SCHEMA = {"type": "object", "properties": {"seconds": {"type": "number"}}, "required": ["seconds"]}
EMPTY_SCHEMA = {"type": "object", "properties": {}}
ECHO_SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
KEYS_SCHEMA = {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": False}
NOTE_SCHEMA = {"type": "object", "properties": {"context": {"type": "string"}}, "required": ["context"]}
FETCH_SCHEMA = {
    "type": "object",
    "properties": {"url": {"type": "string"}, "timeout": {"type": "number"}},
    "required": ["url", "timeout"],
}


async def fetch_text(url: str, timeout: float) -> str:
    """A real HTTP call from inside a tool: what an upstream dependency looks like."""
    import httpx

    async with httpx.AsyncClient() as http:
        response = await http.get(url, timeout=timeout)
        response.raise_for_status()
        return response.text


def echo_text(text: str) -> str:
    if text.startswith("raise:"):
        raise ValueError(text)
    return text


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


async def ask_client(session: Any) -> str:
    """Requests a server sends its client while it handles a tool call: sampling, then the client's roots."""
    types = sdk_types()
    message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text="summarise"))
    with warnings.catch_warnings():  # sampling and roots are deprecated from 2026-07-28 on, still served
        warnings.simplefilter("ignore")
        sampled = await session.create_message(messages=[message], max_tokens=10)
        roots = await session.list_roots()
    return f"{sampled.content.text} ({len(roots.roots)} roots)"


def billing_down() -> str:
    from opentelemetry_instrumentation_mcp import ToolFailure

    raise ToolFailure("the billing API is down", reason="upstream_error")


def build(kind: str, name: str | None = None) -> Any:
    """A server of ``kind``; for ``highlevel`` the object to run is ``runnable(server)``."""
    name = name or f"{kind}-demo"
    if kind == "highlevel":
        return _highlevel(name)
    return _lowlevel_v2(name) if IS_V2 else _lowlevel_v1(name)


def build_fastmcp(name: str = "fast-demo") -> Any:
    """A standalone ``fastmcp`` (4.x) server: tools ``add``, ``fetch``, ``billing``, ``echo``; ``demo://greeting``;
    prompts ``review`` and ``broken``.

    It announces no version of its own, so ``serverInfo.version`` is fastmcp's.
    """
    import fastmcp

    app = fastmcp.FastMCP(name)

    @app.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @app.tool
    async def fetch(url: str, timeout: float) -> str:
        """Fetch a URL."""
        return await fetch_text(url, timeout)

    @app.tool
    def billing() -> str:
        """Charges the customer."""
        return billing_down()

    @app.tool
    def echo(text: str) -> str:
        """Answers ``text``; raises it when it starts with ``raise:``."""
        return echo_text(text)

    @app.resource("demo://greeting")
    def greeting() -> str:
        return "hello"

    @app.prompt
    def review(code: str) -> str:
        """Review some code."""
        return f"Please review:\n{code}"

    @app.prompt
    def broken() -> str:
        """Always fails."""
        raise RuntimeError("the prompt failed on purpose")

    return app


def runnable(server: Any) -> Any:
    """The low-level ``Server`` behind a high-level server (what ``Server.run`` is called on)."""
    return getattr(server, "_lowlevel_server", None) or getattr(server, "_mcp_server", None) or server


def _highlevel(name: str) -> Any:
    if IS_V2:
        from mcp.server.mcpserver import MCPServer as HighLevel
    else:
        from mcp.server.fastmcp import FastMCP as HighLevel
    app = HighLevel(name, version=SERVER_VERSION) if IS_V2 else HighLevel(name)  # 1.x FastMCP takes no version

    @app.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @app.tool()
    def fail() -> str:
        """Always fails."""
        raise ValueError("the tool failed on purpose")

    @app.tool()
    async def slow(seconds: float) -> str:
        """Sleeps, then answers."""
        await anyio.sleep(seconds)
        return "done"

    @app.tool()
    async def fetch(url: str, timeout: float) -> str:
        """Fetch a URL."""
        return await fetch_text(url, timeout)

    @app.tool(annotations=sdk_types().ToolAnnotations(**{hint("destructiveHint"): True}))
    def billing() -> str:
        """Charges the customer."""
        return billing_down()

    @app.tool(annotations=sdk_types().ToolAnnotations(**{hint("readOnlyHint"): True, hint("destructiveHint"): True}))
    def echo(text: str) -> str:
        """Answers ``text``; raises it when it starts with ``raise:``."""
        return echo_text(text)

    @app.tool()
    def note(context: str) -> str:
        """A tool with its own ``context`` parameter."""
        return context

    @app.resource("demo://greeting")
    def greeting() -> str:
        return "hello"

    @app.prompt()
    def review(code: str) -> str:
        """Review some code."""
        return f"Please review:\n{code}"

    @app.prompt()
    def broken() -> str:
        """Always fails."""
        raise RuntimeError("the prompt failed on purpose")

    @app.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Any:
        return sdk_types().Completion(values=["print('hi')"])

    return app


def hint(name: str) -> str:
    """A tool annotation's field name on this SDK line (2.x models spell them in snake case)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name) if IS_V2 else name


def sdk_types() -> Any:
    """The SDK's protocol types module (``mcp.types`` on 1.x, ``mcp_types`` on 2.x)."""
    if IS_V2:
        import mcp_types

        return mcp_types
    from mcp import types as v1_types

    return v1_types


def _lowlevel_v1(name: str) -> Any:
    from mcp import types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import McpError

    server = Server(name, version=SERVER_VERSION)

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [
            types.Tool(name="add", inputSchema=ADD_SCHEMA),
            types.Tool(name="fail", inputSchema=EMPTY_SCHEMA),
            types.Tool(name="slow", inputSchema=SLOW_SCHEMA),
            types.Tool(name="fetch", inputSchema=FETCH_SCHEMA),
            types.Tool(
                name="billing", inputSchema=EMPTY_SCHEMA, annotations=types.ToolAnnotations(destructiveHint=True)
            ),
            types.Tool(name="keys", inputSchema=KEYS_SCHEMA),
            types.Tool(name="note", inputSchema=NOTE_SCHEMA),
            types.Tool(
                name="echo",
                inputSchema=ECHO_SCHEMA,
                annotations=types.ToolAnnotations(readOnlyHint=True, destructiveHint=True),
            ),  # read-only wins
            types.Tool(name="image", inputSchema=EMPTY_SCHEMA),
            types.Tool(name="ask", inputSchema=EMPTY_SCHEMA),
        ]

    @server.call_tool()
    async def call_tool(tool: str, arguments: dict[str, Any]) -> list[Any]:
        if tool == "ask":
            return [types.TextContent(type="text", text=await ask_client(server.request_context.session))]
        if tool == "add":
            return [types.TextContent(type="text", text=str(arguments["a"] + arguments["b"]))]
        if tool == "slow":
            await anyio.sleep(arguments["seconds"])
            return [types.TextContent(type="text", text="done")]
        if tool == "fail":
            raise ValueError("the tool failed on purpose")
        if tool == "fetch":
            return [types.TextContent(type="text", text=await fetch_text(arguments["url"], arguments["timeout"]))]
        if tool == "billing":
            return [types.TextContent(type="text", text=billing_down())]
        if tool == "keys":
            return [types.TextContent(type="text", text=",".join(sorted(arguments)))]
        if tool == "note":
            return [types.TextContent(type="text", text=arguments["context"])]
        if tool == "echo":
            return [types.TextContent(type="text", text=echo_text(arguments["text"]))]
        if tool == "image":
            return [types.ImageContent(type="image", data=PNG, mimeType="image/png")]
        raise ValueError(f"Unknown tool: {tool}")

    @server.list_resources()
    async def list_resources() -> list[types.Resource]:
        return [types.Resource(uri="demo://greeting", name="greeting")]

    @server.read_resource()
    async def read_resource(uri: Any) -> str:
        if str(uri) != "demo://greeting":
            raise ValueError(f"Unknown resource: {uri}")
        return "hello"

    @server.list_prompts()
    async def list_prompts() -> list[types.Prompt]:
        return [types.Prompt(name="review", arguments=[types.PromptArgument(name="code", required=True)])]

    @server.get_prompt()
    async def get_prompt(prompt: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
        if prompt == "broken":
            raise RuntimeError("the prompt failed on purpose")
        if prompt != "review":
            raise McpError(types.ErrorData(code=types.INVALID_PARAMS, message=f"Unknown prompt: {prompt}"))
        code = (arguments or {}).get("code", "")
        return types.GetPromptResult(
            messages=[types.PromptMessage(role="user", content=types.TextContent(type="text", text=code))]
        )

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> types.Completion:
        return types.Completion(values=["print('hi')"])

    @server.set_logging_level()
    async def set_level(level: Any) -> None:
        return None

    return server


def _lowlevel_v2(name: str) -> Any:
    import mcp_types as types
    from mcp.server.lowlevel import Server
    from mcp.shared.exceptions import MCPError

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name="add", input_schema=ADD_SCHEMA),
                types.Tool(name="fail", input_schema=EMPTY_SCHEMA),
                types.Tool(name="slow", input_schema=SLOW_SCHEMA),
                types.Tool(name="fetch", input_schema=FETCH_SCHEMA),
                types.Tool(
                    name="billing", input_schema=EMPTY_SCHEMA, annotations=types.ToolAnnotations(destructive_hint=True)
                ),
                types.Tool(name="keys", input_schema=KEYS_SCHEMA),
                types.Tool(name="note", input_schema=NOTE_SCHEMA),
                types.Tool(
                    name="echo",
                    input_schema=ECHO_SCHEMA,
                    annotations=types.ToolAnnotations(read_only_hint=True, destructive_hint=True),
                ),
                types.Tool(name="image", input_schema=EMPTY_SCHEMA),
                types.Tool(name="ask", input_schema=EMPTY_SCHEMA),
            ]
        )

    async def call_tool(ctx: Any, params: Any) -> types.CallToolResult:
        arguments = params.arguments or {}
        if params.name == "ask":
            return types.CallToolResult(content=[types.TextContent(type="text", text=await ask_client(ctx.session))])
        if params.name == "add":
            text = str(arguments["a"] + arguments["b"])
        elif params.name == "slow":
            await anyio.sleep(arguments["seconds"])
            text = "done"
        elif params.name == "fetch":
            text = await fetch_text(arguments["url"], arguments["timeout"])
        elif params.name == "billing":
            text = billing_down()
        elif params.name == "keys":
            text = ",".join(sorted(arguments))
        elif params.name == "note":
            text = arguments["context"]
        elif params.name == "echo":
            text = echo_text(arguments["text"])
        elif params.name == "image":
            return types.CallToolResult(content=[types.ImageContent(type="image", data=PNG, mime_type="image/png")])
        elif params.name == "fail":
            return types.CallToolResult(
                content=[types.TextContent(type="text", text="the tool failed on purpose")], is_error=True
            )
        else:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    async def list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[types.Resource(uri="demo://greeting", name="greeting")])

    async def list_resource_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[])

    async def read_resource(ctx: Any, params: Any) -> types.ReadResourceResult:
        if str(params.uri) != "demo://greeting":
            raise MCPError(code=-32002, message=f"Unknown resource: {params.uri}")
        return types.ReadResourceResult(contents=[types.TextResourceContents(uri="demo://greeting", text="hello")])

    async def list_prompts(ctx: Any, params: Any) -> types.ListPromptsResult:
        return types.ListPromptsResult(
            prompts=[types.Prompt(name="review", arguments=[types.PromptArgument(name="code", required=True)])]
        )

    async def get_prompt(ctx: Any, params: Any) -> types.GetPromptResult:
        if params.name == "broken":
            raise RuntimeError("the prompt failed on purpose")
        if params.name != "review":
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown prompt: {params.name}")
        code = (params.arguments or {}).get("code", "")
        return types.GetPromptResult(
            messages=[types.PromptMessage(role="user", content=types.TextContent(type="text", text=code))]
        )

    async def complete(ctx: Any, params: Any) -> types.CompleteResult:
        return types.CompleteResult(completion=types.Completion(values=["print('hi')"]))

    async def set_level(ctx: Any, params: Any) -> types.EmptyResult:
        return types.EmptyResult()

    with warnings.catch_warnings():  # logging/setLevel is deprecated from 2026-07-28 on, still served
        warnings.filterwarnings("ignore", message="The logging capability is deprecated")
        return Server(
            name,
            version=SERVER_VERSION,
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_list_resources=list_resources,
            on_list_resource_templates=list_resource_templates,
            on_read_resource=read_resource,
            on_list_prompts=list_prompts,
            on_get_prompt=get_prompt,
            on_completion=complete,
            on_set_logging_level=set_level,
        )


def without_intent_property(schema: dict[str, Any]) -> dict[str, Any] | None:
    """A tool's input schema less the ``context`` property the instrumentation advertises; None where the tool
    declares ``context`` itself (left alone by the instrumentation)."""
    from opentelemetry_instrumentation_mcp.intent import DEFAULT_DESCRIPTION

    properties = dict(schema.get("properties") or {})
    if properties.get("context", {}).get("description") != DEFAULT_DESCRIPTION:
        return None
    del properties["context"]
    cleaned = {**schema, "properties": properties}
    required = [name for name in schema.get("required", []) if name != "context"]
    cleaned.pop("required", None)
    if required:
        cleaned["required"] = required
    return cleaned


def handshake_version() -> str:
    """The protocol version this SDK's client proposes and its server accepts in ``initialize``."""
    if IS_V2:
        from mcp_types.version import LATEST_HANDSHAKE_VERSION

        return LATEST_HANDSHAKE_VERSION
    from mcp.types import LATEST_PROTOCOL_VERSION

    return LATEST_PROTOCOL_VERSION


def listing(count: int) -> Any:
    """A low-level server whose ``tools/list`` answers ``count`` tools, ``tool_0000`` on."""
    names = [f"tool_{i:04d}" for i in range(count)]
    from mcp.server.lowlevel import Server

    if IS_V2:
        import mcp_types as types

        async def list_tools_v2(ctx: Any, params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(tools=[types.Tool(name=name, input_schema=EMPTY_SCHEMA) for name in names])

        return Server("listing", on_list_tools=list_tools_v2)
    from mcp import types

    server = Server("listing")

    @server.list_tools()
    async def list_tools_v1() -> list[types.Tool]:
        return [types.Tool(name=name, inputSchema=EMPTY_SCHEMA) for name in names]

    return server

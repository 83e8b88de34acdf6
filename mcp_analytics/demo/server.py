"""The demo's MCP server: a documentation help desk whose tools call an upstream HTTP service.

It knows nothing about telemetry. Its upstream (``upstream_app``) is a real HTTP
service on 127.0.0.1 whose billing status endpoint is down, so one tool fails
upstream for real.
"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from opentelemetry_instrumentation_mcp import publish_custom_event
from opentelemetry_instrumentation_mcp.sdk import installed_major

IS_V2 = (installed_major() or 0) >= 2
if IS_V2:
    from mcp.server.mcpserver import MCPServer as HighLevelServer
    from mcp.server.mcpserver.exceptions import ToolError
else:
    # mypy checks against mcp 2.x, which has neither name
    from mcp.server.fastmcp import FastMCP as HighLevelServer  # type: ignore[attr-defined, no-redef]
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[import-not-found, no-redef]

PAGES = {
    "quickstart": "Install the package, call MCPInstrumentor().instrument(), run your server.",
    "sessions": "Stateful sessions carry an id; stateless traffic is grouped by user, client and time.",
    "exporters": "Send spans to any OTLP backend, and analytics events to the analytics API.",
    "failures": "Every failure has an origin (client, auth, upstream, server) and a reason.",
}
DOWN = {"billing"}


async def _page(request: Request) -> JSONResponse:
    slug = request.path_params["slug"]
    return JSONResponse({"slug": slug, "text": PAGES[slug]}) if slug in PAGES else JSONResponse({}, status_code=404)


async def _status(request: Request) -> JSONResponse:
    service = request.path_params["service"]
    if service in DOWN:
        return JSONResponse({"error": "maintenance"}, status_code=503)
    return JSONResponse({"service": service, "status": "operational"})


upstream_app = Starlette(routes=[Route("/pages/{slug}", _page), Route("/status/{service}", _status)])


def build_server(upstream_url: str) -> Any:
    """The help-desk server; ``streamable_http_app(server, stateless)`` serves it."""
    server = HighLevelServer("help-desk")
    http = httpx.AsyncClient(base_url=upstream_url, timeout=5)

    @server.tool()
    async def search_docs(query: str, limit: int = 3) -> list[str]:
        """Search the documentation; returns matching page slugs."""
        words = query.lower().split()
        return [slug for slug, text in PAGES.items() if any(w in text.lower() or w in slug for w in words)][:limit]

    @server.tool()
    async def get_page(slug: str) -> str:
        """The text of one documentation page."""
        if slug not in PAGES:
            raise ToolError(f"no page {slug!r}; try search_docs")
        response = await http.get(f"/pages/{slug}")
        response.raise_for_status()
        return response.json()["text"]

    @server.tool()
    async def service_status(service: str) -> str:
        """Whether a service (api, dashboard, billing) is operational, from the status service."""
        response = await http.get(f"/status/{service}")
        response.raise_for_status()
        return response.json()["status"]

    @server.tool()
    async def open_ticket(title: str, severity: int) -> str:
        """Open a support ticket; severity 1 (critical) to 4 (question)."""
        if not 1 <= severity <= 4:
            raise ToolError("severity is 1 to 4")
        ticket = f"T-{abs(hash(title)) % 10_000:04d}"
        publish_custom_event(name="ticket_opened", resource_name="open_ticket", message=f"{ticket}: {title}",
                             parameters={"severity": severity})  # fmt: skip
        return ticket

    @server.tool()  # no scripted agent calls it: the report lists it among the unused tools
    async def rate_page(slug: str, stars: int) -> str:
        """Rate a documentation page from 1 to 5 stars."""
        if not 1 <= stars <= 5:
            raise ToolError("stars is 1 to 5")
        return f"thanks for rating {slug!r}"

    @server.resource("docs://pages", mime_type="text/plain")
    def pages() -> str:
        """Every page slug."""
        return "\n".join(PAGES)

    @server.prompt()
    def explain_page(slug: str, audience: str = "developer") -> str:
        """Ask the model to explain a page to an audience."""
        return f"Explain the '{slug}' documentation page to a {audience}: {PAGES.get(slug, '')}"

    return server


def streamable_http_app(server: Any, *, stateless: bool) -> Any:
    """The server's streamable HTTP ASGI app (at ``/mcp``) on whichever SDK line is installed."""
    if IS_V2:
        return server.streamable_http_app(stateless_http=stateless)
    server.settings.stateless_http = stateless
    return server.streamable_http_app()

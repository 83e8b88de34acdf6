"""A small weather MCP server, built with the SDK's high-level server API.

It knows nothing about OpenTelemetry: ``MCPInstrumentor`` traces it from the
outside (see ``demo.py``). Run it on its own with::

    python examples/weather_server.py                 # stdio (for an MCP host)
    python examples/weather_server.py --http          # streamable HTTP on 127.0.0.1:8000/mcp
"""

from __future__ import annotations

import argparse
import random
from importlib.metadata import version

import anyio

# The one place that differs between the SDK lines: the high-level server's name.
if int(version("mcp").split(".")[0]) >= 2:
    from mcp.server.mcpserver import MCPServer as HighLevelServer
    from mcp.server.mcpserver.exceptions import ToolError
else:
    from mcp.server.fastmcp import FastMCP as HighLevelServer
    from mcp.server.fastmcp.exceptions import ToolError

# Simulated upstream data: city -> (temperature in °C, conditions).
CITIES = {
    "Paris": (14.0, "light rain"),
    "Tokyo": (21.5, "clear"),
    "Reykjavik": (3.0, "snow showers"),
    "Nairobi": (24.0, "partly cloudy"),
}


async def _upstream(base_ms: float) -> None:
    """Pretend to call a weather API that answers in about ``base_ms`` milliseconds."""
    await anyio.sleep(base_ms * random.uniform(0.8, 1.3) / 1000)


def _city(name: str) -> tuple[float, str]:
    try:
        return CITIES[name.strip().title()]
    except KeyError:
        raise ToolError(f"unknown city {name!r}; try one of {', '.join(CITIES)}") from None


def build_server() -> HighLevelServer:
    server = HighLevelServer("weather", log_level="WARNING")

    @server.tool()
    async def current_conditions(city: str) -> str:
        """Current temperature and sky conditions in a city."""
        await _upstream(8)
        temperature, sky = _city(city)
        return f"{city}: {temperature:.1f} °C, {sky}"

    @server.tool()
    async def get_forecast(city: str, days: int = 3) -> str:
        """A daily forecast for the next ``days`` days (1-7)."""
        await _upstream(25 + 5 * days)
        temperature, sky = _city(city)
        return "; ".join(f"+{day}d {temperature + day * 0.7:.0f} °C" for day in range(1, min(days, 7) + 1)) + f", {sky}"

    @server.tool()
    async def convert_temperature(celsius: float) -> str:
        """Convert a temperature from Celsius to Fahrenheit."""
        await _upstream(1)
        return f"{celsius:.1f} °C = {celsius * 9 / 5 + 32:.1f} °F"

    @server.tool()
    async def air_quality(city: str) -> str:
        """Air-quality index of a city (its upstream provider is slow today: the call times out)."""
        try:
            with anyio.fail_after(0.03):
                await _upstream(40)
        except TimeoutError as exc:
            raise ToolError(f"air-quality provider timed out for {city}") from exc
        return f"{city}: AQI 42"

    @server.resource("weather://cities", mime_type="text/plain")
    def cities() -> str:
        """The cities this server knows."""
        return "\n".join(CITIES)

    @server.prompt()
    def plan_trip(city: str, days: str = "3") -> str:
        """Ask the model to plan a trip around the weather."""
        return f"Using the weather tools, plan a {days}-day trip to {city}. Suggest indoor options on rainy days."

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    server = build_server()
    if not args.http:
        server.run()  # stdio
        return
    import uvicorn  # noqa: PLC0415 - needed only to serve HTTP

    print(f"weather MCP server on http://127.0.0.1:{args.port}/mcp")
    uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

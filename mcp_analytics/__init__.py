"""The self-hostable MCP analytics API: ingest, an embedded store, sessions, panels, a dashboard and a CLI.

``mcp-analytics serve`` starts it; ``mcp-analytics demo`` shows it end to end.
"""

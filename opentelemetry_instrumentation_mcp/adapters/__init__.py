"""Per-SDK-line adapters: the only code that imports ``mcp``.

Each adapter module exposes ``instrument(telemetry)`` and ``uninstrument()``;
``opentelemetry_instrumentation_mcp.sdk`` picks the module for the installed line.
"""

"""The instrumented library, as ``opentelemetry-instrument`` reads it."""

_instruments = ()
_instruments_any = ("mcp >= 1.20, < 3",)

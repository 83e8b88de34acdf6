"""Per-SDK-line adapters: the only code that imports ``mcp``.

``v1`` and ``v2`` (one package per SDK line: ``server``, ``client``, wired in its
``__init__``) each expose ``wire(patches, telemetry)``, whose ``Patches`` undo it;
``opentelemetry_instrumentation_mcp.sdk`` picks the one for the installed line. The
``_`` modules serve both lines (``_fastmcp``: the fastmcp framework, where installed).
"""

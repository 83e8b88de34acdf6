"""``MCPInstrumentor``: wires the options, the telemetry and the adapter of the installed ``mcp`` line."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.trace import get_tracer_provider

from opentelemetry_instrumentation_mcp import env, openinference, sdk, upstream
from opentelemetry_instrumentation_mcp.adapters._wrapping import Patches
from opentelemetry_instrumentation_mcp.content import CAPTURE_ENV, ContentPolicy
from opentelemetry_instrumentation_mcp.identity import DEFAULT_TIMEOUT, Identifier
from opentelemetry_instrumentation_mcp.instruments import duration_buckets
from opentelemetry_instrumentation_mcp.intent import IntentOptions
from opentelemetry_instrumentation_mcp.package import _instruments_any
from opentelemetry_instrumentation_mcp.sigterm import ENV as SIGTERM_ENV
from opentelemetry_instrumentation_mcp.sigterm import SigtermFlush
from opentelemetry_instrumentation_mcp.telemetry import SESSION_TIMEOUT, Telemetry

logger = logging.getLogger(__name__)


SESSION_TIMEOUT_ENV = "OTEL_INSTRUMENTATION_MCP_SESSION_TIMEOUT"


def _session_timeout(given: float | None) -> float:
    """The option, else the environment variable (seconds; an unusable value is logged and the default kept)."""
    if given is not None:
        return float(given)
    text = os.environ.get(SESSION_TIMEOUT_ENV)
    try:
        value = float(text) if text else SESSION_TIMEOUT
    except ValueError:
        value = 0.0
    if value <= 0:
        logger.warning(
            "%s=%r is not a positive number of seconds; %s is used", SESSION_TIMEOUT_ENV, text, SESSION_TIMEOUT
        )
        return SESSION_TIMEOUT
    return value


@dataclass
class Installed:
    """What one ``instrument()`` set up, and how ``uninstrument()`` takes it all back."""

    telemetry: Telemetry
    patches: Patches
    tracer_provider: Any
    timer: upstream.UpstreamTimer | None
    sigterm: SigtermFlush | None

    def undo(self) -> None:
        self.patches.restore()
        if self.timer is not None:
            upstream.detach(self.tracer_provider, self.timer)
        if self.sigterm is not None:
            self.sigterm.uninstall()


def _flag(given: bool | None, name: str, default: bool) -> bool:
    """The option, else the environment variable ``name`` (``env.flag``; an unusable value is logged and
    ``default`` kept: a misspelt variable must not stop the application)."""
    if given is not None:
        return bool(given)
    try:
        return env.flag(name, default)
    except ValueError as problem:
        logger.warning("%s; %s is used", problem, "true" if default else "false")
        return default


class MCPInstrumentor(BaseInstrumentor):
    """One span per MCP message, client and server, on ``mcp`` 1.x and 2.x, plus the MCP metrics."""

    _installed: Installed | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments_any

    def _instrument(self, **kwargs: Any) -> None:
        """Options: ``tracer_provider``, ``meter_provider``; ``intent`` (bool), ``intent_parameter``,
        ``intent_description`` (else ``OTEL_INSTRUMENTATION_MCP_INTENT[_PARAMETER|_DESCRIPTION]``);
        ``identify`` (a hook: ``IdentifyRequest`` -> ``UserIdentity | None``, sync or async) and
        ``identify_timeout`` (seconds, default 1); ``capture_content`` (bool, else
        ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``) and ``redact`` (``str -> str``);
        ``session_timeout`` (seconds without a message that end a session, default 1800, else
        ``OTEL_INSTRUMENTATION_MCP_SESSION_TIMEOUT``); ``openinference`` (bool, else
        ``OTEL_INSTRUMENTATION_MCP_OPENINFERENCE``: the attributes Phoenix and Arize read, see ``openinference``);
        ``duration_buckets`` (``"fine"``, or increasing seconds, else ``OTEL_INSTRUMENTATION_MCP_DURATION_BUCKETS``;
        default: the conventions' boundaries) for the operation histograms; ``flush_on_sigterm`` (bool, else
        ``OTEL_INSTRUMENTATION_MCP_FLUSH_ON_SIGTERM``, default true: see ``sigterm``)."""
        intent = IntentOptions.resolve(
            kwargs.get("intent"), kwargs.get("intent_parameter"), kwargs.get("intent_description")
        )
        identifier = Identifier(kwargs.get("identify"), kwargs.get("identify_timeout", DEFAULT_TIMEOUT))
        content = ContentPolicy(_flag(kwargs.get("capture_content"), CAPTURE_ENV, default=False), kwargs.get("redact"))
        telemetry = Telemetry(
            kwargs.get("tracer_provider"),
            kwargs.get("meter_provider"),
            intent,
            identifier,
            content,
            session_timeout=_session_timeout(kwargs.get("session_timeout")),
            openinference=_flag(kwargs.get("openinference"), openinference.ENV, default=False),
            duration_buckets=duration_buckets(kwargs.get("duration_buckets")),
        )
        patches = Patches()
        try:
            sdk.adapter().wire(patches, telemetry)
        except Exception:
            patches.restore()  # leave nothing half-patched
            raise
        tracer_provider = kwargs.get("tracer_provider") or get_tracer_provider()
        sigterm = (
            SigtermFlush(telemetry.providers)
            if _flag(kwargs.get("flush_on_sigterm"), SIGTERM_ENV, default=True)
            else None
        )
        if sigterm is not None and not sigterm.install():
            sigterm = None
        self._installed = Installed(telemetry, patches, tracer_provider, upstream.attach(tracer_provider), sigterm)

    def _uninstrument(self, **kwargs: Any) -> None:
        installed, self._installed = self._installed, None
        if installed is not None:
            installed.undo()

    @property
    def telemetry(self) -> Telemetry | None:
        """The telemetry of the current ``instrument()`` (None when not instrumented): where custom events go."""
        return None if self._installed is None else self._installed.telemetry

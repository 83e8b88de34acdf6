"""User intent: a ``context`` argument advertised on every tool, filled by agents, never seen by tools.

On ``tools/list`` each tool's input schema is copied with one more string
property (default name ``context``) that asks the agent why it calls the tool;
on ``tools/call`` the value is taken out of the arguments before the server
validates them and recorded as ``mcp.user_intent``. A tool that declares a
parameter of that name itself is left alone.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PARAMETER = "context"
DEFAULT_DESCRIPTION = (
    "In one or two sentences, written in the third person, explain why you are calling this tool "
    "and how it serves the user's goal. Do not include secrets, credentials or personal data."
)
MAX_INTENT_LENGTH = 1000
"""Characters of an intent kept on a span; the rest is cut and marked with an ellipsis."""
MAX_TOOLS_REMEMBERED = 10_000

ENV_ENABLED = "OTEL_INSTRUMENTATION_MCP_INTENT"
ENV_PARAMETER = "OTEL_INSTRUMENTATION_MCP_INTENT_PARAMETER"
ENV_DESCRIPTION = "OTEL_INSTRUMENTATION_MCP_INTENT_DESCRIPTION"


@dataclass(frozen=True, slots=True)
class IntentOptions:
    enabled: bool = True
    parameter: str = DEFAULT_PARAMETER
    description: str = DEFAULT_DESCRIPTION

    @classmethod
    def resolve(
        cls, enabled: bool | None = None, parameter: str | None = None, description: str | None = None
    ) -> IntentOptions:
        """Explicit options first, then the environment, then the defaults."""
        if enabled is None:
            enabled = os.environ.get(ENV_ENABLED, "true").strip().lower() not in ("false", "0", "no", "off")
        return cls(
            enabled=enabled,
            parameter=parameter or os.environ.get(ENV_PARAMETER) or DEFAULT_PARAMETER,
            description=description or os.environ.get(ENV_DESCRIPTION) or DEFAULT_DESCRIPTION,
        )


def truncated(intent: str) -> str:
    return intent if len(intent) <= MAX_INTENT_LENGTH else intent[: MAX_INTENT_LENGTH - 1] + "…"


@dataclass
class ToolCatalog:
    """One server's tools as it advertised them: which declare the intent parameter themselves.

    Learned from the ``tools/list`` answers this server gives (bounded). A
    ``tools/call`` for a tool never listed is left untouched.
    """

    options: IntentOptions
    _declares: OrderedDict[str, bool] = field(default_factory=OrderedDict)

    def with_intent(self, name: object, schema: object) -> dict[str, Any] | None:
        """A copy of the tool's input schema with the intent property, or None to leave the tool as it is."""
        if not isinstance(name, str) or not isinstance(schema, Mapping):
            return None
        properties = schema.get("properties") or {}
        if not isinstance(properties, Mapping) or schema.get("type", "object") != "object":
            return None
        declares = self.options.parameter in properties
        self._remember(name, declares)
        if declares:
            return None
        required = schema.get("required") or []
        return {
            **schema,
            "properties": {
                **properties,
                self.options.parameter: {"type": "string", "description": self.options.description},
            },
            "required": [*required, self.options.parameter] if isinstance(required, list) else required,
        }

    def take(self, name: object, arguments: object) -> tuple[str | None, dict[str, Any] | None]:
        """``(intent, arguments without it)`` for a call of an advertised tool; ``(None, None)`` to leave it."""
        parameter = self.options.parameter
        if not (type(arguments) is dict or isinstance(arguments, Mapping)) or parameter not in arguments:
            return None, None
        if not isinstance(name, str) or self._declares.get(name) is not False:  # a name is a string on the wire
            return None, None
        rest = dict(arguments)
        value = rest.pop(parameter)
        if not isinstance(value, str) or not value:
            return None, rest
        return (value if len(value) <= MAX_INTENT_LENGTH else truncated(value)), rest

    def _remember(self, name: str, declares: bool) -> None:
        self._declares[name] = declares
        self._declares.move_to_end(name)
        while len(self._declares) > MAX_TOOLS_REMEMBERED:
            self._declares.popitem(last=False)

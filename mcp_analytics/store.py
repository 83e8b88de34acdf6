"""The storage interface: what the API needs of a store, and nothing more.

Four calls, so that an engine for fleets (ClickHouse, say) can implement it
beside the embedded DuckDB default (``duckdb_store.py``): add a batch of events
to a project, answer one named panel for a project and a time window, delete
(retention, a user's events), close.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from mcp_analytics.models import Event, IngestResult

_LAST = re.compile(r"^(\d{1,6})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SESSION_GAP = timedelta(minutes=30)
"""The default session inactivity timeout: a session (a session id's, or a stateless user's or caller's with one
client) ends where this much time passes without an event; a later event starts a new one."""

PANELS = (
    "summary",
    "extent",
    "timeseries",
    "trends",
    "latency",
    "tools",
    "clients",
    "users",
    "failures",
    "methods",
    "prompts",
    "cost",
    "unused_tools",
    "unused_prompts",
    "errors",
    "arguments",
    "servers",
    "new_clients",
    "intents",
    "slo",
    "sessions",
    "session",
)
"""Every query behind a dashboard panel (and a ``report`` table), by name."""


@dataclass(frozen=True)
class Window:
    """A half-open time range ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @classmethod
    def parse(cls, start: datetime | None = None, end: datetime | None = None, last: str | None = None) -> Window:
        """From ``start``/``end`` (naive means UTC; end defaults to now), else ``last`` (15m, 24h, 7d, all) before end."""
        end = _utc(end) if end else datetime.now(UTC)
        if start is not None:
            start = _utc(start)
        elif last == "all":
            start = EPOCH
        else:
            try:
                length = duration(last or "24h")
            except ValueError:
                raise ValueError(f"a window is a number with m, h or d (15m, 24h, 7d) or 'all', not {last!r}") from None
            start = end - length if length < end - EPOCH else EPOCH  # a longer window is all of it
        if start >= end:
            raise ValueError("the window's start must be before its end")
        return cls(start, end)


def duration(text: str) -> timedelta:
    """``30m``, ``2h``, ``1d``: a duration as the CLI takes it (a session timeout, a window's length)."""
    match = _LAST.match(text)
    if not match or int(match[1]) == 0:
        raise ValueError(f"a duration is a positive number with m, h or d (30m, 2h, 1d), not {text!r}")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Slice:
    """Which events a panel reads: for each dimension the values accepted (empty: any). Every panel, the
    report and the dashboard take the same six; the values of one dimension are alternatives (OR), the
    dimensions all apply (AND)."""

    tool: tuple[str, ...] = ()
    """``tools/call`` events of these tools (other events are not a tool's)."""
    client: tuple[str, ...] = ()
    """Client names; ``(unknown)`` is the events of no known client, as the clients panel names them."""
    user: tuple[str, ...] = ()
    server: tuple[str, ...] = ()
    """Server names (``mcp.server.name``), for a project fed by several servers."""
    method: tuple[str, ...] = ()
    """MCP methods (``tools/call``, ``initialize``) or custom event types (``custom:<name>``)."""
    origin: tuple[str, ...] = ()
    """Failure origins: ``client``, ``auth``, ``upstream``, ``server``."""

    @classmethod
    def parse(cls, given: Mapping[str, Iterable[str]]) -> Slice:
        """From query parameters or CLI options: each repeatable, each value a comma-separated list."""
        unknown = sorted(set(given) - set(DIMENSIONS))
        if unknown:
            raise ValueError(f"unknown filter {', '.join(unknown)}; the filters are {', '.join(DIMENSIONS)}")
        values = {}
        for name, texts in given.items():
            found = tuple(dict.fromkeys(value.strip() for text in texts for value in text.split(",") if value.strip()))
            if len(found) > MAX_SLICE_VALUES or any(len(value) > MAX_SLICE_VALUE for value in found):
                raise ValueError(f"{name}: at most {MAX_SLICE_VALUES} values of at most {MAX_SLICE_VALUE} characters")
            values[name] = found
        return cls(**values)

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in DIMENSIONS)

    def query(self) -> dict[str, str]:
        """As query parameters (comma-separated), the dimensions in use only."""
        return {name: ",".join(getattr(self, name)) for name in DIMENSIONS if getattr(self, name)}


DIMENSIONS = tuple(field.name for field in fields(Slice))
"""What a panel can be sliced by."""
MAX_SLICE_VALUES = 100
MAX_SLICE_VALUE = 512


DEFAULT_TOKEN_PRICE = 3.0
"""USD per million tokens when none is configured: an assumption (a mid-range model's input price); set yours."""
BYTES_PER_TOKEN = 4
"""How the cost panel turns response bytes into tokens: about four bytes of English or JSON per token."""


@dataclass(frozen=True)
class Prices:
    """What one million tokens of a tool's responses cost the agent's model to read (the cost panel's estimate):
    ``default`` for every tool, ``per_tool`` where a tool's own differs."""

    default: float = DEFAULT_TOKEN_PRICE
    per_tool: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, default: float | None, specs: Iterable[str]) -> Prices:
        """``tool=price`` items (USD per million tokens), as the CLI takes them."""
        per_tool = {}
        for spec in specs:
            tool, sep, price = spec.partition("=")
            try:
                value = float(price)
            except ValueError:
                value = -1.0
            if not (sep and tool) or not value >= 0 or value == float("inf"):
                raise ValueError(
                    f"a tool's price is given as tool=USD per million tokens (a number >= 0), not {spec!r}"
                )
            per_tool[tool] = value
        return cls(DEFAULT_TOKEN_PRICE if default is None else default, per_tool)


@dataclass(frozen=True)
class Slos:
    """Per-tool latency SLOs: tiers of targets, each tool in one (the first name pattern it matches, else the
    fastest tier whose target holds its observed p95 over the last 7 days); ``objective``: the share of calls
    a tool must answer within its tier's target (0.95: the target is a p95)."""

    tiers: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_TIERS))
    """Tier name -> target in milliseconds."""
    tools: tuple[tuple[str, str], ...] = ()
    """(shell-style name pattern, tier), the first match wins."""
    objective: float = 0.95

    def __post_init__(self) -> None:
        if not self.tiers or any(not target > 0 for target in self.tiers.values()):
            raise ValueError("SLO tiers need a positive target in milliseconds each")
        unknown = sorted({tier for _, tier in self.tools} - set(self.tiers))
        if unknown:
            raise ValueError(f"unknown SLO tier {', '.join(unknown)}; the tiers are {', '.join(self.tiers)}")
        if not 0 < self.objective < 1:
            raise ValueError("an SLO objective is a share between 0 and 1 (0.95)")

    @classmethod
    def parse(
        cls,
        config: Mapping[str, Any] | None = None,
        tiers: Iterable[str] = (),
        tools: Iterable[str] = (),
        objective: float | None = None,
    ) -> Slos:
        """From a configuration (a JSON file's ``{"objective", "tiers": {name: ms}, "tools": {pattern: tier}}``),
        then ``name=ms`` tiers and ``pattern=tier`` assignments (the CLI's flags, which add to it or override it)."""
        config = config or {}
        unknown = sorted(set(config) - {"objective", "tiers", "tools"})
        if unknown or not all(isinstance(config.get(key) or {}, Mapping) for key in ("tiers", "tools")):
            raise ValueError(
                'an SLO configuration is {"objective": 0.95, "tiers": {name: ms}, "tools": {pattern: tier}}'
            )
        defined = dict(config.get("tiers") or DEFAULT_TIERS)
        assigned = [(str(pattern), str(tier)) for pattern, tier in (config.get("tools") or {}).items()]
        for spec in tiers:
            name, sep, target = spec.partition("=")
            try:
                defined[name] = float(target) if sep and name else float("nan")
            except ValueError:
                defined[name] = float("nan")
            if defined[name] != defined[name]:
                raise ValueError(f"an SLO tier is given as name=milliseconds, not {spec!r}")
        for spec in tools:
            pattern, sep, tier = spec.partition("=")
            if not (sep and pattern and tier):
                raise ValueError(f"a tool's SLO tier is given as pattern=tier, not {spec!r}")
            assigned.insert(0, (pattern, tier))  # the command line before the file
        chosen = objective if objective is not None else config.get("objective", 0.95)
        try:
            return cls({str(name): float(ms) for name, ms in defined.items()}, tuple(assigned), float(chosen))
        except (TypeError, ValueError) as error:
            raise ValueError(f"SLO configuration: {error}") from None

    def tier_of(self, tool: str, observed_p95: float | None) -> tuple[str, str]:
        """The tier of ``tool`` and how it was chosen (``pattern``, ``observed``, or ``slowest`` when its p95 is
        over every target)."""
        for pattern, tier in self.tools:
            if fnmatch.fnmatchcase(tool, pattern):
                return tier, "pattern"
        by_target = sorted(self.tiers.items(), key=lambda item: item[1])
        if observed_p95 is None:
            return by_target[0][0], "observed"
        for tier, target in by_target:
            if observed_p95 <= target:
                return tier, "observed"
        return by_target[-1][0], "slowest"


DEFAULT_TIERS: dict[str, float] = {"light": 500.0, "medium": 2000.0, "heavy": 30000.0}
"""Fast lookups, medium queries, heavy jobs: each tier's p95 target in milliseconds."""


class UnknownPanel(LookupError):
    pass


class Store(Protocol):
    def add(self, project: str, events: Sequence[Event]) -> IngestResult:
        """Store a batch, idempotently: an event id already stored for the project is not stored again."""

    def panel(
        self, project: str, name: str, window: Window, slice: Slice = Slice(), **params: Any
    ) -> list[dict[str, Any]]:
        """The rows of one panel (see ``PANELS``) over the events of ``slice``; raises ``UnknownPanel`` for
        another name."""

    def delete(self, project: str | None, *, before: datetime | None = None, user_id: str | None = None) -> int:
        """Delete events (of ``project``, or of every project for None): those older than ``before``
        (retention), or those of one user (a data-protection request); returns how many."""

    def close(self) -> None: ...

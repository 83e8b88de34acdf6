"""The storage interface: what the API needs of a store, and nothing more.

Four calls, so that an engine for fleets (ClickHouse, say) can implement it
beside the embedded DuckDB default (``duckdb_store.py``): add a batch of events
to a project, answer one named panel for a project and a time window, delete
(retention, a user's events), close.

Below the interface, what every store makes of the rows its own SQL returns (the
``slo`` panel, alerts and their episodes), so that a store holds only its SQL
and its connections.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from mcp_analytics.alerts import Alert, Rules, Transition
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

    def stored(self) -> dict[str, tuple[str, ...]]:
        """The dimensions in use and their values as events store them: a method as its stored type
        (``mcp:<method>``; ``custom:<name>`` as given)."""
        used: dict[str, tuple[str, ...]] = {name: getattr(self, name) for name in DIMENSIONS if getattr(self, name)}
        if "method" in used:
            used["method"] = tuple(value if ":" in value else f"mcp:{value}" for value in used["method"])
        return used


DIMENSIONS = tuple(field.name for field in fields(Slice))
"""What a panel can be sliced by."""
MAX_SLICE_VALUES = 100
MAX_SLICE_VALUE = 512


DEFAULT_TOKEN_PRICE = 3.0
"""USD per million tokens when none is configured: an assumption (a mid-range model's input price); set yours."""
BYTES_PER_TOKEN = 4
"""How the cost panel turns response bytes into tokens: about four bytes of English or JSON per token."""

HOUR = timedelta(hours=1)
_TIME_BUCKETS = [timedelta(minutes=m) for m in (1, 5, 15, 60, 360, 1440, 10080)]
_INTERVAL = re.compile(r"^\s*(\d+)\s*(second|minute|hour|day|week)s?\s*$")


def time_buckets(start: datetime, end: datetime, bucket: timedelta | str | None) -> tuple[timedelta, datetime]:
    """The ``timeseries`` and ``trends`` panels' buckets from ``start`` to ``end``: ``bucket`` (a ``timedelta``, or
    an interval as ``10 minutes``, ``1 hour``), else the smallest that cuts the window into at most 120; and where
    they begin: on ``start``'s hour for buckets of whole hours, on the last multiple of their size within its hour
    before it for those that divide an hour (the rollups' hours and quarter hours then fill them), else at ``start``."""
    if bucket is None:
        bucket = next((size for size in _TIME_BUCKETS if (end - start) / size <= 120), _TIME_BUCKETS[-1])
    elif not isinstance(bucket, timedelta):
        match = _INTERVAL.match(bucket)
        if not match or int(match[1]) == 0:
            raise ValueError(f"a time bucket is a number of seconds, minutes, hours, days or weeks, not {bucket!r}")
        bucket = timedelta(**{match[2] + "s": int(match[1])})
    hour = start.replace(minute=0, second=0, microsecond=0)
    if not bucket % HOUR:
        return bucket, hour
    if not HOUR % bucket:
        return bucket, start - (start - hour) % bucket
    return bucket, start


BUCKET_GROWTH = 1.02
"""The percentiles (p50, p95, p99 of a duration) are read from histograms, not from every value sorted (which no
store can do for millions of calls in a panel's time): a value of at least ``LEAST_MS`` falls in bucket ``k >= 1``,
``[LEAST_MS * BUCKET_GROWTH ** (k - 1), LEAST_MS * BUCKET_GROWTH ** k)`` (negative values mirrored, smaller ones in
bucket 0), each bucket keeping its count and its least and greatest value. A quantile is interpolated as DuckDB's
``quantile_cont`` interpolates the sorted values, between the values at the ranks around it, each read as its
bucket's middle within the bucket's least and greatest value: within 1% (``PERCENTILE_ERROR``) of the exact
quantile, and exact where those buckets hold one distinct value. Histograms of hours add up, so the rollups keep them
per hour. An SLO counts a call within its target if it is in the target's bucket or below (to the same resolution)."""
LEAST_MS = 0.001
PERCENTILE_ERROR = (BUCKET_GROWTH - 1) / 2
"""The largest relative error of a percentile read from the histograms."""


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


class StoreUnavailable(Exception):
    """The store cannot be reached now (connection refused, reset or timed out, a name not resolved, the server gone
    in the middle of an answer), so the same call may pass later. Stores raise it for such connection-level
    failures only, the cause chained; the API answers it, and nothing else, with 503 and ``Retry-After``."""


class Store(Protocol):
    """Every call may raise ``StoreUnavailable`` while the store cannot be reached (a server-based store)."""

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

    def check(self) -> None:
        """Return when the store answers now; raise ``StoreUnavailable`` when it cannot be reached (readiness)."""

    def close(self) -> None: ...


# ---------------------------------------------------------------- what every store makes of its queries' rows

Row = Mapping[str, Any]
_Episode = TypeVar("_Episode")


def panel_query(
    name: str, session: str, queries: Mapping[str, str], timelines: Mapping[str, str]
) -> tuple[str, str | None]:
    """The query of the panel ``name`` among a store's ``queries`` (``UnknownPanel`` for another) and the event it is
    anchored on, if any. The ``session`` panel's is one of ``timelines``, by the form of the ``session`` key: a
    session id (``""``); ``e-<event>`` (``e-``); ``<session id>@<event>``, ``u-<event>``, ``c-<event>`` (``run``:
    the run of that event's group that holds it)."""
    if name != "session":
        if name not in queries:
            raise UnknownPanel(name)
        return queries[name], None
    if session[:2] in ("u-", "c-"):
        return timelines["run"], session[2:]
    if session[:2] == "e-":
        return timelines["e-"], session[2:]
    session_id, at, anchor = session.rpartition("@")
    if at and session_id and anchor:
        return timelines["run"], anchor
    return timelines[""], None


def attainment(
    slos: Slos, baselines: Sequence[Row], calls: Callable[[list[str], list[float]], Iterable[Row]], limit: int
) -> list[dict[str, Any]]:
    """The ``slo`` panel: each tool's tier (from ``baselines``: its p95 over the last 7 days) and, over the
    window, its calls within the tier's target, attainment against the objective, and error budget left.
    ``calls(tools, targets)`` runs a store's query of the window: per tool, ``calls``, those ``within`` its
    target and ``p95_ms``."""
    if not baselines:
        return []
    tiers = {row["tool"]: slos.tier_of(row["tool"], row["baseline_p95_ms"]) for row in baselines}
    rows = []
    for row in calls(list(tiers), [slos.tiers[tier] for tier, _ in tiers.values()]):
        tier, how = tiers[row["tool"]]
        bad, allowed = row["calls"] - row["within"], row["calls"] * (1 - slos.objective)
        rows.append({
            "tool": row["tool"], "tier": tier, "assigned": how, "target_ms": slos.tiers[tier],
            "objective": slos.objective, "calls": row["calls"], "within": row["within"],
            "attainment": round(row["within"] / row["calls"], 4), "met": row["within"] >= row["calls"] * slos.objective,
            "budget_remaining": round(1 - bad / allowed, 4), "p95_ms": row["p95_ms"],
        })  # fmt: skip
    return rows[:limit]


def rule_alerts(rules: Rules, rule: str, window: str, text: str, rows: Iterable[Row]) -> list[Alert]:
    """An ``Alert`` for each row (``subject``, ``observed``, ``threshold``) a store's query of ``rule`` found, said
    by ``text`` from the subject, the observed value, the usual one (a spike's threshold over its factor) and
    their ratio."""
    factors = {
        "volume_spike": rules.volume_factor,
        "latency_spike": rules.latency_factor,
        "auth_spike": rules.auth_factor,
    }
    found = []
    for row in rows:
        observed, threshold = float(row["observed"]), float(row["threshold"])
        usual = threshold / factors[rule] if rule in factors else threshold
        said = text.format(subject=row["subject"], observed=observed, usual=usual,
                           ratio=observed / usual if usual else float("inf"))  # fmt: skip
        found.append(Alert(rule, row["subject"], observed, threshold, window, said))
    return found


BURN_WINDOWS = (timedelta(hours=1), timedelta(minutes=5))
"""The windows over which ``slo_burn`` measures how fast a tool spends its latency budget."""


def burn_windows(now: datetime) -> list[Window]:
    """``slo_burn``'s windows, ending at ``now``."""
    return [Window(now - length, now) for length in BURN_WINDOWS]


def slo_burn(hour: Sequence[Row], recent: Sequence[Row], rules: Rules) -> list[Alert]:
    """Tools spending their latency error budget ``rules.slo_burn`` times too fast over 1 hour and 5 minutes (``hour``,
    ``recent``: a project's ``slo`` panel, every tool, over ``burn_windows``)."""
    rates = [{row["tool"]: (row, (1 - row["attainment"]) / (1 - row["objective"])) for row in rows}
             for rows in (hour, recent)]  # fmt: skip
    return [
        Alert("slo_burn", tool, round(burn, 2), rules.slo_burn, "1h and 5m",
              f"{tool}: latency budget burning {burn:.1f}x too fast ({row['tier']}, {row['target_ms']:.0f} ms target)")
        for tool, (row, burn) in rates[0].items()
        if row["calls"] >= rules.slo_min_calls and burn >= rules.slo_burn and rates[1].get(tool, (None, 0))[1] >= rules.slo_burn
    ]  # fmt: skip


def episodes(
    firing: Mapping[tuple[str, str], _Episode], found: Sequence[Alert]
) -> tuple[list[tuple[Alert, _Episode | None]], list[_Episode]]:
    """What ``record_alerts`` changes: each alert ``found`` with its firing episode (``firing``, a store's, by rule
    and subject; None: an episode to start), and the firing episodes no longer found (to resolve)."""
    left = dict(firing)
    matched = [(alert, left.pop((alert.rule, alert.subject), None)) for alert in found]
    return matched, list(left.values())


def transitions(rows: Iterable[Row]) -> list[tuple[int, Transition, str]]:
    """``undelivered``'s answer from a store's rows: an alert's ``id``, columns and ``transition`` (``firing``,
    ``resolved``), and the ``url`` of a webhook that has not received it."""
    return [
        (row["id"], Transition(row["project"], row["rule"], row["subject"], row["transition"], row["observed"],
                               row["threshold"], row["window"], row["since"], row["text"],
                               row["resolved_at"] if row["transition"] == "resolved" else None), row["url"])
        for row in rows
    ]  # fmt: skip


def deletion(
    project: tuple[str, str | None], before: tuple[str, Any], user: tuple[str, str | None]
) -> tuple[str, dict[str, Any]]:
    """What ``delete`` deletes: a store's condition on each value given (not None; the condition names it
    ``project``, ``before`` or ``user``), joined by AND, and those values. Neither ``before`` nor ``user`` given
    (every event) is a ``ValueError``."""
    if before[1] is None and user[1] is None:
        raise ValueError("delete what: events before a time, or a user's events")
    conditions, values = [], {}
    for name, (condition, value) in (("project", project), ("before", before), ("user", user)):
        if value is not None:
            conditions.append(condition)
            values[name] = value
    return " AND ".join(conditions), values

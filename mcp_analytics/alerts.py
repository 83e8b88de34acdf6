"""Deviation alerts: built-in rules evaluated against the store on a schedule, each episode sent to webhooks once.

A rule finds what deviates now (a tool, an auth reason, a tool and a client); an alert is one rule and one
subject. It *fires* when a rule first finds its subject and *resolves* when an evaluation no longer does; the
two transitions of an episode are each delivered once to every webhook (kept in the store, so a restart does
not send them again), retried with backoff until delivered or ``MAX_DELIVERY_ATTEMPTS`` evaluations passed.
"""

from __future__ import annotations

import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

logger = logging.getLogger(__name__)

MAX_DELIVERY_ATTEMPTS = 10
"""Evaluations during which an undelivered transition is tried again (each with its own retries)."""
RETRIES = 3
"""Attempts per delivery within one evaluation, with exponential backoff and jitter."""


@dataclass(frozen=True)
class Rules:
    """The built-in rules' thresholds (``serve --alert-rule name.field=value`` changes one)."""

    volume_factor: float = 3.0
    """volume_spike: a tool's calls in the last hour at this many times its average for the same hour of the 7 days before."""
    volume_min_calls: int = 20
    latency_factor: float = 2.0
    """latency_spike: a tool's p95 over 15 minutes above this many times its p95 over the 24 hours before."""
    latency_min_calls: int = 20
    error_ratio: float = 0.05
    """error_ratio: more than this share of a tool's calls failed by the server or upstream over 15 minutes."""
    error_min_calls: int = 20
    auth_factor: float = 3.0
    """auth_spike: one auth failure reason over 15 minutes at this many times its 15-minute average of the day before."""
    auth_min_failures: int = 10
    new_client_hours: float = 24.0
    """destructive_new_client: a tool said to be destructive called by a client first seen this recently."""
    slo_burn: float = 14.4
    """slo_burn: a tool spending its latency error budget this many times too fast over both 1 hour and 5 minutes."""
    slo_min_calls: int = 20

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Rules:
        """``field=value`` items (``volume_factor=4``, ``error_ratio=0.1``)."""
        changes: dict[str, Any] = {}
        kinds = {name: type(value) for name, value in asdict(cls()).items()}
        for spec in specs:
            name, sep, value = spec.partition("=")
            try:
                changes[name] = kinds[name](value) if sep else None
            except (KeyError, ValueError):
                changes[name] = None
            if changes[name] is None or not changes[name] >= 0:
                raise ValueError(
                    f"an alert threshold is given as field=number, one of {', '.join(kinds)}; not {spec!r}"
                )
        return replace(cls(), **changes)


@dataclass(frozen=True)
class Alert:
    """One rule finding one subject at one evaluation."""

    rule: str
    subject: str
    observed: float
    threshold: float
    window: str
    text: str


@dataclass
class Transition:
    """What a webhook receives: an alert that started firing or resolved."""

    project: str
    rule: str
    subject: str
    state: str
    observed: float
    threshold: float
    window: str
    since: datetime
    text: str
    resolved_at: datetime | None = None

    def payload(self) -> dict[str, Any]:
        """The webhook body; ``text`` is what a Slack-compatible webhook shows."""
        body = asdict(self)
        body["since"] = self.since.isoformat()
        body["resolved_at"] = self.resolved_at and self.resolved_at.isoformat()
        prefix = "FIRING" if self.state == "firing" else "RESOLVED"
        body["text"] = f"[{prefix}] {self.project}: {self.text}"
        return body


class AlertStore(Protocol):
    def projects(self) -> list[str]: ...

    def deviations(self, project: str, now: datetime, rules: Rules) -> list[Alert]: ...

    def record_alerts(self, project: str, found: Sequence[Alert], now: datetime) -> None: ...

    def undelivered(self, webhooks: Sequence[str], not_before: datetime) -> list[tuple[int, Transition, str]]: ...

    def delivered(self, alert_id: int, state: str, url: str, ok: bool) -> None: ...

    def alerts(self, project: str, state: str = "all", limit: int = 1000) -> list[dict[str, Any]]: ...


@dataclass
class Engine:
    """Evaluates the rules for every project and delivers the transitions to the webhooks."""

    store: AlertStore
    rules: Rules = field(default_factory=Rules)
    webhooks: Sequence[str] = ()
    timeout: float = 10.0
    backoff: float = 0.5
    """Seconds of the first retry's backoff (doubled for each next one, with full jitter)."""
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    """Transitions before this are not sent to a webhook that never received anything of them (one added later)."""

    def evaluate(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        for project in self.store.projects():
            self.store.record_alerts(project, self.store.deviations(project, now, self.rules), now)
        if self.webhooks:
            for alert_id, transition, url in self.store.undelivered(self.webhooks, self.started):
                self.store.delivered(alert_id, transition.state, url, self._deliver(url, transition.payload()))

    def _deliver(self, url: str, body: dict[str, Any]) -> bool:
        data = json.dumps(body).encode()
        for attempt in range(RETRIES):
            headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")  # noqa: S310 - configured URL
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - configured URL
                    response.read()
                return True
            except urllib.error.HTTPError as error:
                if 400 <= error.code < 500 and error.code != 429:  # the webhook refuses it: retrying will not help
                    logger.warning("alert webhook %s refused %s: HTTP %d", url, body["rule"], error.code)
                    return False
            except (urllib.error.URLError, OSError):
                pass
            if attempt + 1 < RETRIES:
                time.sleep(random.uniform(0, self.backoff * 2**attempt))  # noqa: S311 - jitter, not security
        logger.warning(
            "alert webhook %s unreachable for %s/%s; tried again next evaluation", url, body["rule"], body["subject"]
        )
        return False

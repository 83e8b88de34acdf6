"""Deviation alerts: every rule provoked for real in a store, sent once per episode to a real webhook, resolved."""

from __future__ import annotations

import itertools
import os
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from mcp_analytics.alerts import Engine, Rules
from mcp_analytics.api import create_app
from mcp_analytics.duckdb_store import DuckDBStore
from mcp_analytics.keys import ApiKeys
from mcp_analytics.models import Event, validated_event
from mcp_analytics.server import in_thread
from mcp_analytics.store import Slos
from tests.apps.analytics_receiver import receiver
from tests.processes import ApiServer

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EXPECTED = {
    ("volume_spike", "search"),
    ("latency_spike", "fetch"),
    ("error_ratio", "billing"),
    ("auth_spike", "expired_token"),
    ("destructive_new_client", "delete_repo by newbie"),
    ("slo_burn", "report"),
}


IDS = itertools.count()


def at(moment: datetime, **fields) -> Event:
    fields.setdefault("type", "mcp:tools/call")
    fields.setdefault("client_name", "veteran")
    return validated_event(event_id=f"e{next(IDS)}", timestamp_ns=int(moment.timestamp() * 1e9), **fields)


def week_with_a_spike_of_each_kind() -> list[Event]:
    """Seven quiet days, then in the last minutes one deviation per rule (and a client first seen days ago)."""
    events = [at(NOW - timedelta(days=3), type="mcp:initialize")]  # the veteran client, seen days ago
    for day in range(1, 8):  # search: 5 calls in the same hour of each day before
        events += [at(NOW - timedelta(days=day, minutes=30 + i), resource="search") for i in range(5)]
    events += [at(NOW - timedelta(minutes=50, seconds=i), resource="search") for i in range(30)]  # 6x its usual
    events += [at(NOW - timedelta(hours=10, minutes=i), resource="fetch", duration_ms=50) for i in range(100)]
    events += [at(NOW - timedelta(minutes=10, seconds=i), resource="fetch", duration_ms=500) for i in range(25)]
    events += [
        at(
            NOW - timedelta(minutes=5, seconds=i),
            resource="billing",
            duration_ms=10,
            is_error=i < 3,
            failure={"origin": "server", "reason": "tool_error"} if i < 3 else None,
        )
        for i in range(20)
    ]
    auth = {
        "type": "mcp:tools/call",
        "resource": "admin",
        "is_error": True,
        "failure": {"origin": "auth", "reason": "expired_token"},
    }
    events += [at(NOW - timedelta(hours=5, minutes=i), **auth) for i in range(20)]
    events += [at(NOW - timedelta(minutes=3, seconds=i), **auth) for i in range(12)]
    events.append(
        at(
            NOW - timedelta(days=2),
            type="mcp:tools/list",
            tools_listed=["delete_repo", "search"],
            destructive_tools=["delete_repo"],
        )
    )
    events.append(at(NOW - timedelta(minutes=20), resource="delete_repo", client_name="newbie"))
    events.append(at(NOW - timedelta(minutes=20), resource="delete_repo"))  # the veteran: not new
    events += [
        at(NOW - timedelta(minutes=40, seconds=i), resource="report", duration_ms=1000 if i % 4 else 100)
        for i in range(40)
    ]
    events += [at(NOW - timedelta(minutes=2, seconds=i), resource="report", duration_ms=1000) for i in range(3)]
    return events


@pytest.fixture
def store():
    store = DuckDBStore(slos=Slos.parse({"tools": {"report": "light", "search": "heavy", "fetch": "heavy",
                                                  "billing": "heavy", "delete_repo": "heavy"}}))  # fmt: skip
    store.add("p", week_with_a_spike_of_each_kind())
    yield store
    store.close()


def firing(store: DuckDBStore) -> set[tuple[str, str]]:
    return {(row["rule"], row["subject"]) for row in store.alerts("p", "firing")}


def test_each_rule_finds_its_deviation_and_nothing_else(store):
    found = {(alert.rule, alert.subject): alert for alert in store.deviations("p", NOW, Rules())}
    assert set(found) == EXPECTED
    assert (found[("volume_spike", "search")].observed, found[("volume_spike", "search")].threshold) == (30.0, 15.0)
    assert found[("latency_spike", "fetch")].observed == 500.0 and found[("latency_spike", "fetch")].threshold == 100.0
    assert found[("error_ratio", "billing")].observed == 0.15
    assert found[("auth_spike", "expired_token")].observed == 12.0
    assert found[("slo_burn", "report")].observed == round((33 / 43) / 0.05, 2)  # 33 of 43 slow, against a 5% budget
    assert found[("volume_spike", "search")].text == "search: 30 calls in the last hour, 6.0x the usual 5.0"
    for alert in found.values():
        assert alert.window and alert.subject.split(" ")[0] in alert.text


def test_a_volume_spike_counts_the_hours_to_their_edges(store):
    """The last hour is ``[now - 1h, now)``; the same hour of a day before is ``(now - k days - 1h, now - k days]``
    shifted back by one microsecond: its first instant counts, the instant ``k`` days before ``now`` does not."""
    us = timedelta(microseconds=1)
    edges = []
    for day in range(1, 8):
        before = NOW - timedelta(days=day)
        edges += [at(before - timedelta(hours=1), resource="edge") for _ in range(2)]  # counted: 14 / 7 a day
        edges += [at(before, resource="edge"), at(before - timedelta(hours=1) - us, resource="edge")]  # not counted
    edges += [at(NOW - timedelta(hours=1), resource="edge") for _ in range(3)]
    edges += [at(NOW - us, resource="edge") for _ in range(3)] + [at(NOW, resource="edge") for _ in range(2)]
    store.add("p", edges)
    found = {(a.rule, a.subject): a for a in store.deviations("p", NOW, Rules(volume_min_calls=6))}
    assert (found[("volume_spike", "edge")].observed, found[("volume_spike", "edge")].threshold) == (6.0, 6.0)
    assert set(found) == EXPECTED | {("volume_spike", "edge")}
    found = {(a.rule, a.subject) for a in store.deviations("p", NOW, Rules(volume_min_calls=6, volume_factor=3.1))}
    assert ("volume_spike", "edge") not in found  # 6 calls against 3.1 times 2


def test_auth_refusals_of_no_reason_are_one_subject(store):
    """A refusal stored without a reason code (a sender that gives none) counts as ``(unknown)``, against the usual of
    such refusals: 10 in the last 15 minutes fire against none the day before, not against 384 (4 per 15 minutes),
    and 12 do."""
    refused = {"resource": "admin", "is_error": True, "failure": {"origin": "auth", "reason": None}}
    store.add("p", [at(NOW - timedelta(minutes=1, seconds=i), **refused) for i in range(10)])
    found = {(a.rule, a.subject): a for a in store.deviations("p", NOW, Rules())}
    assert (found[("auth_spike", "(unknown)")].observed, found[("auth_spike", "(unknown)")].threshold) == (10.0, 3.0)
    store.add("p", [at(NOW - timedelta(hours=2, seconds=i), **refused) for i in range(96 * 4)])
    found = {(a.rule, a.subject): a for a in store.deviations("p", NOW, Rules())}
    assert set(found) == EXPECTED, "10 against 3 times the usual 4"
    store.add("p", [at(NOW - timedelta(minutes=2, seconds=i), **refused) for i in range(2)])
    found = {(a.rule, a.subject): a for a in store.deviations("p", NOW, Rules())}
    assert (found[("auth_spike", "(unknown)")].observed, found[("auth_spike", "(unknown)")].threshold) == (12.0, 12.0)
    store.record_alerts("p", list(found.values()), NOW)
    assert ("auth_spike", "(unknown)") in firing(store)


def test_thresholds_change_what_fires(store):
    quieter = Rules.parse(["error_ratio=0.2", "volume_factor=7", "slo_burn=20"])
    found = {(alert.rule, alert.subject) for alert in store.deviations("p", NOW, quieter)}
    assert found == EXPECTED - {("error_ratio", "billing"), ("volume_spike", "search"), ("slo_burn", "report")}
    with pytest.raises(ValueError, match="field=number"):
        Rules.parse(["volume_factor=loud"])
    with pytest.raises(ValueError, match="no_such_rule"):
        Rules.parse(["no_such_rule=1"])


def test_an_episode_is_sent_once_when_it_fires_and_once_when_it_resolves(store):
    with receiver() as hook:
        engine = Engine(store, webhooks=[hook.url + "/hook"], started=NOW - timedelta(days=30))
        engine.evaluate(NOW)
        assert firing(store) == EXPECTED
        sent = {(r.body["rule"], r.body["subject"]): r.body for r in hook.requests}
        assert set(sent) == EXPECTED and len(hook.requests) == len(EXPECTED)
        body = sent[("error_ratio", "billing")]
        assert body["state"] == "firing" and body["project"] == "p" and body["observed"] == 0.15
        assert body["threshold"] == 0.05 and body["window"] == "15m" and body["since"] == NOW.isoformat()
        assert body["text"] == "[FIRING] p: billing: 15.0% of calls failed (server or upstream) over 15 minutes"

        engine.evaluate(NOW + timedelta(minutes=1))  # still deviating: the same episodes, nothing sent again
        assert len(hook.requests) == len(EXPECTED)

        later = NOW + timedelta(days=2)  # the spikes are past
        engine.evaluate(later)
        resolved = [r.body for r in hook.requests[len(EXPECTED) :]]
        assert {(b["rule"], b["subject"], b["state"]) for b in resolved} == {(*key, "resolved") for key in EXPECTED}
        assert all(b["resolved_at"] == later.isoformat() and b["text"].startswith("[RESOLVED] p: ") for b in resolved)
        engine.evaluate(later + timedelta(minutes=1))
        assert len(hook.requests) == 2 * len(EXPECTED)
    assert firing(store) == set()
    assert {(row["rule"], row["subject"]) for row in store.alerts("p", "resolved")} == EXPECTED


def test_a_failing_webhook_is_retried_until_it_takes_the_alert(store):
    with receiver(*[(503, {}, 0.0)] * 3 * len(EXPECTED)) as hook:  # every first-round attempt fails
        engine = Engine(store, Rules(), [hook.url], started=NOW - timedelta(days=30), backoff=0.01)
        engine.evaluate(NOW)
        assert len(hook.requests) == 3 * len(EXPECTED)  # three attempts each, with backoff
        engine.evaluate(NOW + timedelta(minutes=1))  # the next evaluation delivers them
        delivered = hook.requests[3 * len(EXPECTED) :]
        assert {(r.body["rule"], r.body["subject"]) for r in delivered} == EXPECTED and len(delivered) == len(EXPECTED)
        engine.evaluate(NOW + timedelta(minutes=2))
        assert len(hook.requests) == 4 * len(EXPECTED)


def test_a_restart_sends_nothing_again_and_a_new_webhook_gets_no_past(store):
    with receiver() as first, receiver() as second:
        Engine(store, webhooks=[first.url], started=NOW - timedelta(days=30)).evaluate(NOW)
        restarted = Engine(store, webhooks=[first.url, second.url], started=NOW + timedelta(seconds=30))
        restarted.evaluate(NOW + timedelta(minutes=1))
        assert len(first.requests) == len(EXPECTED) and second.requests == []
        restarted.evaluate(NOW + timedelta(days=2))  # resolutions reach both
        assert len(second.requests) == len(EXPECTED) and all(r.body["state"] == "resolved" for r in second.requests)


def test_the_api_evaluates_on_a_schedule_and_lists_alerts(store):
    with receiver() as hook:
        engine = Engine(store, webhooks=[hook.url], started=datetime.now(UTC) - timedelta(days=3650))
        engine.evaluate(NOW)  # as the schedule would have at NOW
        with in_thread(create_app(store, ApiKeys([("p", "key")]), alerts=engine, alert_interval=0.2)) as url:
            headers = {"Authorization": "Bearer key"}
            listed = httpx.get(f"{url}/v1/alerts?state=resolved", headers=headers).json()
            # the app evaluates at the real time: the 2026-11-20 spikes are long past, so each resolves
            deadline = datetime.now(UTC) + timedelta(seconds=10)
            while len(listed["alerts"]) < len(EXPECTED) and datetime.now(UTC) < deadline:
                listed = httpx.get(f"{url}/v1/alerts?state=resolved", headers=headers).json()
            assert listed["enabled"] is True
            assert {(row["rule"], row["subject"]) for row in listed["alerts"]} == EXPECTED
            assert httpx.get(f"{url}/v1/alerts", headers=headers).json()["alerts"] == []  # firing: none
            assert len(httpx.get(f"{url}/v1/alerts?state=all", headers=headers).json()["alerts"]) == len(EXPECTED)
            assert httpx.get(f"{url}/v1/alerts?state=loud", headers=headers).status_code == 422
            assert httpx.get(f"{url}/v1/alerts").status_code == 401
        assert len(hook.requests) == 2 * len(EXPECTED)


def test_serve_without_alert_evaluation_records_no_alert_and_calls_no_webhook(tmp_path):
    """One instance of a fleet evaluates: the others run with ``MCP_ANALYTICS_ALERT_EVALUATION=0`` (or
    ``--no-alert-evaluation``) and never evaluate, however often ``--alert-interval`` passes, yet list what the
    store holds. The same store served with evaluation (the flag overrides the environment) fires at once."""
    now = datetime.now(UTC)
    failing = [
        at(now - timedelta(minutes=5, seconds=i), resource="billing", is_error=i < 3,
           failure={"origin": "server", "reason": "tool_error"} if i < 3 else None)
        for i in range(20)
    ]  # fmt: skip
    db, headers = tmp_path / "alerts.duckdb", {"Authorization": "Bearer key"}
    env = {**os.environ, "MCP_ANALYTICS_ALERT_EVALUATION": "0"}
    quiet = ApiServer("--db", str(db), "--api-key", "p=key", "--alert-interval", "0.1", log=tmp_path / "quiet.log",
                      env=env)  # fmt: skip
    try:
        quiet.start()
        assert httpx.post(f"{quiet.url}/v1/events", json={"events": failing}, headers=headers).status_code == 200
        time.sleep(1.5)  # fifteen intervals
        listed = httpx.get(f"{quiet.url}/v1/alerts?state=all", headers=headers).json()
        assert listed == {"project": "p", "enabled": True, "evaluated_here": False, "alerts": []}
    finally:
        quiet.stop()
    with receiver() as hook:
        loud = ApiServer("--db", str(db), "--api-key", "p=key", "--alert-evaluation", "--alert-webhook", hook.url,
                         log=tmp_path / "loud.log", env=env)  # fmt: skip
        try:
            loud.start()
            deadline = time.monotonic() + 20
            while not hook.requests and time.monotonic() < deadline:
                time.sleep(0.1)
            listed = httpx.get(f"{loud.url}/v1/alerts", headers=headers).json()
        finally:
            loud.stop()
    assert [(r.body["rule"], r.body["subject"], r.body["state"]) for r in hook.requests] == [
        ("error_ratio", "billing", "firing")
    ]
    assert listed["evaluated_here"] is True
    assert [(row["rule"], row["subject"]) for row in listed["alerts"]] == [("error_ratio", "billing")]


def test_serve_refuses_webhooks_where_alerts_are_not_evaluated(capsys, monkeypatch):
    from mcp_analytics import cli

    assert cli.main(["serve", "--no-alert-evaluation", "--alert-webhook", "http://127.0.0.1:9/hook"]) == 2
    assert "--alert-webhook is called only where alerts are evaluated" in capsys.readouterr().err
    monkeypatch.setenv("MCP_ANALYTICS_ALERT_EVALUATION", "maybe")
    assert cli.main(["serve", "--api-key", "p=k"]) == 2
    assert "MCP_ANALYTICS_ALERT_EVALUATION is one of 1, true, yes, on or 0, false, no, off (any case), not 'maybe'" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        cli.main(["serve", "--alert-interval", "0"])
    assert "a number of seconds above 0, not '0' (--no-alert-evaluation turns evaluation off)" in (
        capsys.readouterr().err
    )

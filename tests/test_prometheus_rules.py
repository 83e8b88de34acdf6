"""The shipped Prometheus rules: ``promtool check rules`` and their unit tests (``promtool test rules``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "mcp-rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "mcp-rules.test.yml"
REQUIRE_ENV = "MCP_ANALYTICS_REQUIRE_PROMETHEUS"


def prometheus_binary(name: str) -> str:
    """``promtool`` or ``prometheus`` (Debian's ``prometheus`` package has both)."""
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{name} is required ({REQUIRE_ENV}=1) but not on PATH (apt install prometheus)")
    pytest.skip(f"{name} not installed (apt install prometheus); set {REQUIRE_ENV}=1 to require it")


def rules_in(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    command = [prometheus_binary("promtool"), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def test_promtool_checks_the_rules():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules_in(RULES))} rules found" in checked.stdout


def test_the_rules_unit_tests_pass():
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_unit_tests_catch_a_changed_threshold(tmp_path):
    """The unit tests pin the thresholds: an error-ratio alert at 50% instead of 5% fails them."""
    text = RULES.read_text()
    assert text.count("> 0.05") == 1
    (tmp_path / RULES.name).write_text(text.replace("> 0.05", "> 0.5"))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path)
    assert tested.returncode == 1
    assert "alertname: MCPToolErrorRatio" in tested.stdout + tested.stderr


def test_every_alert_names_its_analytics_rule_and_says_why():
    alerts = [rule for rule in rules_in(RULES) if "alert" in rule]
    assert {rule["labels"]["rule"] for rule in alerts} == {
        "volume_spike", "latency_spike", "error_ratio", "auth_spike", "slo_burn",
    }  # fmt: skip
    for rule in alerts:
        assert rule["labels"]["severity"] in {"page", "ticket", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]

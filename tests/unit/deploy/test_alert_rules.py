"""The shipped Prometheus alert rules (deploy/prometheus/alerts.yml): valid, and each alert unit-tested
with promtool on series that fire and series that do not (alerts_test.yml, alerts_gc_test.yml).

The same rules are evaluated against a real Prometheus scraping a real dockyard in
tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.server import require_tool

RULES_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
TESTS = sorted(RULES_DIR.glob("alerts*_test.yml"))
# What the issue asks the rules to watch for, at the least.
REQUIRED = {
    "DockyardInstanceDown",
    "DockyardNotReady",
    "DockyardDatabaseUnreachable",
    "DockyardRedisUnreachable",
    "DockyardDiskAlmostFull",
    "DockyardSlowPulls",
    "DockyardPushFailures",
    "DockyardJobsFailing",
    "DockyardGCNotRun",
    "DockyardProjectQuotaAlmostFull",
    "DockyardCertificateExpiresSoon",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=RULES_DIR
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", *(path.name for path in TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_firing_and_the_required_ones_are_shipped() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert names >= REQUIRED, REQUIRED - names
    fired: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    # promtool fails a test whose alert fires for more series than expected, so every input series
    # that is not expected (another instance, job, project or volume) is a case that must not fire.
    assert names == fired, names ^ fired


def test_every_alert_says_what_is_wrong() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]

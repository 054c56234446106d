"""The shipped alerts and dashboard: `promtool check rules` and `promtool test rules` pass, every alert is
unit-tested, and every metric the alerts and the dashboard query is one the operator exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from accelqual.adapters.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "helm" / "accelqual" / "files" / "alerts.yaml"
DASHBOARD = ROOT / "helm" / "accelqual" / "files" / "dashboard.json"
ALERT_TESTS = Path(__file__).resolve().parent / "alerts_test.yaml"
#: The alerts the project promises (DESIGN.md 3.7 and the observability issue).
REQUIRED_ALERTS = {"AccelqualNodeFailedQualification", "AccelqualRunHaltedByFailureBudget", "AccelqualRunStalled",
                   "AccelqualEvidenceBacklogGrowing", "AccelqualOperatorDown"}
METRIC = re.compile(r"\baccelqual_[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool from `make tools` (.tools/bin), else PATH; CI without it is a failure, not a skip."""
    local = ROOT / ".tools" / "bin" / "promtool"
    found = str(local) if local.is_file() and os.access(local, os.X_OK) else shutil.which("promtool")
    if found is None:
        message = ("promtool not found in .tools/bin or on PATH: run `make tools` (tools/fetch-k8s-tools.py "
                   "extracts it from Debian's prometheus package)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False)


def exported_metrics() -> set[str]:
    """Every series name /metrics can carry, from the operator's own registry."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                    "summary": ("_count", "_sum", "_created")}.get(family.type, ("",))
        names |= {family.name + s for s in suffixes}
    return names


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_targets() -> list[dict[str, Any]]:
    doc = json.loads(DASHBOARD.read_text())
    return [t for p in doc["panels"] for t in p.get("targets") or []]


def test_alert_rules_pass_promtool_check(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_alert_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_shipped_and_unit_tested_both_ways() -> None:
    alerts = {r["alert"] for r in rules() if "alert" in r}
    assert alerts >= REQUIRED_ALERTS
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test") or []]
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    stays_quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert fires == alerts, "every alert has a case where it fires"
    assert stays_quiet == alerts, "every alert has a case where it must not fire"
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_alerts_and_dashboard_query_only_metrics_the_operator_exports() -> None:
    exported = exported_metrics()
    used_by_alerts = {m for r in rules() for m in METRIC.findall(r["expr"])}
    used_by_dashboard = {m for t in dashboard_targets() for m in METRIC.findall(t["expr"])}
    assert used_by_alerts and used_by_dashboard
    assert used_by_alerts - exported == set()
    assert used_by_dashboard - exported == set()
    doc = json.loads(DASHBOARD.read_text())
    for variable in doc["templating"]["list"]:
        assert set(METRIC.findall(variable.get("definition", ""))) <= exported, variable["name"]


def test_dashboard_is_a_grafana_dashboard_with_the_promised_panels() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "accelqual"
    panels = doc["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    graphs = [p for p in panels if p["type"] != "row"]
    assert all(p["targets"] and all(t["expr"].strip() and t["refId"] for t in p["targets"]) for p in graphs)
    assert all(p["datasource"]["uid"] == "${datasource}" for p in graphs)
    titles = " | ".join(p["title"] for p in graphs)
    for promised in ("Node verdicts", "Distribution of $check", "Slowest nodes", "Failed nodes",
                     "Evidence backlog"):
        assert promised in titles
    variables = {v["name"] for v in doc["templating"]["list"]}
    used = {m for t in dashboard_targets() for m in re.findall(r"\$(\w+)", t["expr"])}
    assert used <= variables


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses each query as a recording rule (template variables replaced by what Grafana sends)."""
    exprs = [t["expr"].replace("$qualification", ".*").replace("$check", "perf.membw")
             for t in dashboard_targets()]
    rules_file = tmp_path / "dashboard-queries.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]}]}))

    result = run(promtool, "check", "rules", str(rules_file))

    assert result.returncode == 0, result.stdout + result.stderr

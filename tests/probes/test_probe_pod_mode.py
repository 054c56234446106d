"""Pod mode and the report schema: the marked last stdout line, the termination message, round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from accelqual_probes.schema import (
    MAX_VERDICT_BYTES,
    REPORT_MARKER,
    VERDICT_MARKER,
    Category,
    CheckResult,
    Inventory,
    OverallVerdict,
    ProbeReport,
    Verdict,
    termination_message,
)

from tests.probes.probe_helpers import RunCli, marked_report


def test_pod_mode_prints_the_report_as_the_last_marked_line(run_cli: RunCli, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "gpu-node-7")
    log = tmp_path / "termination-log"
    result = run_cli("--device", "cpu", "--checks", "compat.stack,gen.inventory,sec.residual", "--pod",
                     "--termination-log", str(log), with_json=False)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(REPORT_MARKER), "stdout holds nothing but the report line"
    report = marked_report(result.stdout)
    assert report.node == "gpu-node-7"
    assert report.schema_version == "accelqual.io/v2"
    assert [c.id for c in report.checks] == ["compat.stack", "gen.inventory", "sec.residual"]
    # Progress went to stderr as plain lines, without terminal control codes.
    assert "accelqual: [3/3] sec.residual pass" in result.stderr
    assert "\x1b[" not in result.stderr
    message = log.read_text()
    assert message.startswith(VERDICT_MARKER)
    assert len(message.encode()) <= MAX_VERDICT_BYTES
    compact = json.loads(message[len(VERDICT_MARKER):])
    assert compact == {"schemaVersion": "accelqual.io/v1", "verdict": "pass", "failed": [], "errored": [],
                       "reason": "all checks passed"}


def test_pod_mode_reports_failures_in_the_termination_message(run_cli: RunCli, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    result = run_cli("--device", "cpu", "--checks", "gen.inventory,compat.stack", "--inject", "missing-device",
                     "--pod", "--termination-log", str(log), "--node", "n1", with_json=False)
    assert result.code == 1
    report = marked_report(result.stdout)
    assert report.node == "n1" and report.injected_faults == ["missing-device"]
    assert json.loads(log.read_text()[len(VERDICT_MARKER):])["failed"] == ["gen.inventory"]


def test_unwritable_termination_log_is_ignored(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("--device", "cpu", "--checks", "compat.stack", "--pod", "--termination-log",
                     str(tmp_path / "missing" / "log"), with_json=False)
    assert result.code == 0
    assert marked_report(result.stdout).verdict is OverallVerdict.PASS


def _report(checks: list[CheckResult], reason: str) -> ProbeReport:
    now = datetime.now(UTC)
    return ProbeReport(profile="cpu-reference", suite="standard", verdict=OverallVerdict.FAIL, reason=reason,
                       started_at=now, finished_at=now, duration_seconds=0.0,
                       inventory=Inventory(device_type="cpu"), checks=checks)


def test_termination_message_fits_4_kib_whatever_the_report() -> None:
    checks = [CheckResult(id=f"ext.plugin_number_{i:03d}.with_a_long_name_to_fill_the_list", category=Category.GENERAL,
                          verdict=Verdict.FAIL if i % 2 else Verdict.ERROR) for i in range(128)]
    message = termination_message(_report(checks, "failed: " + "x" * 1000))
    assert message.startswith(VERDICT_MARKER)
    assert len(message.encode()) <= MAX_VERDICT_BYTES
    compact = json.loads(message[len(VERDICT_MARKER):])
    assert compact["verdict"] == "fail"
    assert compact["failed"] and compact["failed"][0] == checks[1].id


def test_report_round_trips_through_its_json(standard_report: ProbeReport) -> None:
    text = standard_report.to_json()
    again = ProbeReport.parse_untrusted(text)
    assert again == standard_report
    data = json.loads(text)
    assert data["schemaVersion"] == "accelqual.io/v2"
    check = next(c for c in data["checks"] if c["id"] == "perf.gemm.fp32")
    assert set(check) >= {"id", "category", "verdict", "reason", "measurements", "thresholds", "durationSeconds"}
    assert check["measurements"][0]["unit"] == "TFLOPS"
    assert set(data["inventory"]) >= {"deviceType", "vendor", "model", "count", "devices", "frameworkVersion"}
    assert len(text) < 1_048_576


def test_quick_report_has_checks_in_every_category(run_cli: RunCli) -> None:
    result = run_cli("--device", "cpu", "--suite", "quick")
    assert result.code == 0, result.stderr[-500:]
    assert result.report is not None
    assert {c.category for c in result.report.checks} == set(Category)
    assert all(c.verdict in (Verdict.PASS, Verdict.WARN) for c in result.report.checks), \
        [(c.id, c.reason) for c in result.report.checks if c.verdict not in (Verdict.PASS, Verdict.WARN)]

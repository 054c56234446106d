"""Helpers shared by the probe tests (imported by name; pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from accelqual_probes.schema import REPORT_MARKER, CheckResult, ProbeReport, Severity, Verdict
from accelqual_probes.thresholds import consistent

#: Environment variables the probe reads; tests start without them.
PROBE_ENV = ("ACCELQUAL_INJECT", "ACCELQUAL_PROFILE_JSON", "ACCELQUAL_EXPECT_DEVICES", "NODE_NAME",
             "KUBERNETES_SERVICE_HOST")


@dataclass(frozen=True)
class CliRun:
    """What one `accelqual probe` invocation produced."""

    code: int
    stdout: str
    stderr: str
    report: ProbeReport | None = None

    def check(self, check_id: str) -> CheckResult:
        assert self.report is not None, f"no report (exit {self.code}): {self.stderr[-400:]}"
        return by_id(self.report)[check_id]


#: The `run_cli` fixture: `run_cli("--device", "cpu", ...)`.
RunCli = Callable[..., CliRun]


def by_id(report: ProbeReport) -> dict[str, CheckResult]:
    return {c.id: c for c in report.checks}


def failed_ids(report: ProbeReport) -> set[str]:
    return {c.id for c in report.checks if c.verdict.value == "fail"}


def run_subprocess(args: list[str], timeout: float, env: dict[str, str] | None = None,
                   ) -> subprocess.CompletedProcess[str]:
    """`python -m accelqual_probes ARGS` in a fresh process (exit codes, timing, concurrency)."""
    environment = {k: v for k, v in os.environ.items() if k not in PROBE_ENV}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "accelqual_probes", *args], capture_output=True, text=True,
                          timeout=timeout, env=environment, check=False)


def assert_operator_contract(report: ProbeReport) -> None:
    """What the operator re-checks on every report (see schema.Threshold): every threshold's
    metric is measured in its check, and a passing or warning check has no measurement
    outside a fail-severity threshold."""
    for check in report.checks:
        measured: dict[str, list[float]] = {}
        for m in check.measurements:
            measured.setdefault(m.metric, []).extend(m.values)
        for threshold in check.thresholds:
            assert threshold.metric in measured, f"{check.id}: threshold on unmeasured {threshold.metric}"
            if check.verdict in (Verdict.PASS, Verdict.WARN) and threshold.severity is Severity.FAIL:
                assert consistent(measured[threshold.metric], threshold), \
                    f"{check.id} says {check.verdict.value} but {threshold.metric} violates {threshold.basis}"


def marked_report(stdout: str) -> ProbeReport:
    """The report on the last stdout line, found and validated the way the operator does it."""
    last = stdout.rstrip("\n").splitlines()[-1]
    assert last.startswith(REPORT_MARKER), f"last stdout line is not the report: {last[:120]!r}"
    return ProbeReport.parse_untrusted(last[len(REPORT_MARKER):])

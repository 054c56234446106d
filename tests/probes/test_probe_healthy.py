"""Healthy runs never fail: repeated quick suites, and probes sharing the host's two cores.

Relative-to-reference limits are what makes this hold on a noisy runner: the probe and
its numpy reference are measured in alternating rounds in the same process, so the
contention one probe suffers from another hits both sides of the ratio.
"""

from __future__ import annotations

import concurrent.futures
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from accelqual_probes.catalog import Suite
from accelqual_probes.runner import ProbeRequest, run_probe
from accelqual_probes.schema import Category, OverallVerdict, ProbeReport, Verdict

from tests.probes.probe_helpers import assert_operator_contract, marked_report, run_subprocess


def _assert_healthy(report: ProbeReport) -> None:
    bad = [(c.id, c.verdict.value, c.reason) for c in report.checks if c.verdict not in (Verdict.PASS, Verdict.WARN)]
    assert report.verdict is OverallVerdict.PASS and not bad, bad
    assert_operator_contract(report)


@pytest.mark.parametrize("repetition", range(2))
def test_healthy_quick_suite_passes(repetition: int) -> None:
    report = run_probe(ProbeRequest(device="cpu", suite=Suite.QUICK))
    _assert_healthy(report)


@pytest.mark.slow
@pytest.mark.parametrize("repetition", range(10))
def test_healthy_quick_suite_passes_ten_times(repetition: int) -> None:
    report = run_probe(ProbeRequest(device="cpu", suite=Suite.QUICK))
    _assert_healthy(report)


def test_quick_suite_from_the_console_script_is_fast_and_complete(tmp_path: Path) -> None:
    script = shutil.which("accelqual") or str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "accelqual")
    output = tmp_path / "r.json"
    started = time.monotonic()
    completed = subprocess.run([script, "probe", "--device", "cpu", "--suite", "quick", "--json", str(output)],
                               capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stdout[-1500:] + completed.stderr[-1500:]
    report = ProbeReport.parse_untrusted(output.read_text())
    assert {c.category for c in report.checks} == set(Category)
    # The budget is 10 s on an idle 2-core host (torch import included); the margin here
    # absorbs whatever else the test machine is doing.
    assert elapsed < 20, f"quick suite took {elapsed:.1f}s"


def test_two_probes_sharing_the_host_both_pass(tmp_path: Path) -> None:
    def probe(index: int) -> subprocess.CompletedProcess[str]:
        return run_subprocess(["--device", "cpu", "--suite", "quick", "--pod",
                               "--termination-log", str(tmp_path / f"log-{index}")], timeout=180)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(probe, range(2)))
    for completed in runs:
        assert completed.returncode == 0, completed.stderr[-1500:]
        report = marked_report(completed.stdout)
        _assert_healthy(report)
        assert all(c.verdict is not Verdict.SKIP for c in report.checks)

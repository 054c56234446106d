"""Fixtures of the probe tests: a clean environment, in-process CLI runs, a shared CPU report.

Probe runs happen in-process wherever the behaviour allows (torch is imported once for
the session); only what needs its own process (the exit of a hung run, concurrent
probes) starts one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from accelqual_probes import cli
from accelqual_probes.catalog import Suite
from accelqual_probes.runner import ProbeRequest, run_probe
from accelqual_probes.schema import ProbeReport

from tests.probes.probe_helpers import PROBE_ENV, CliRun, RunCli


@pytest.fixture(autouse=True)
def _clean_probe_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's environment (a CI pod, an exported ACCELQUAL_INJECT) must not leak into tests."""
    for name in PROBE_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> RunCli:
    """Run `accelqual probe ARGS` in-process; the report is read back from a --json file."""
    counter = iter(range(1_000_000))

    def run(*args: str, with_json: bool = True) -> CliRun:
        argv = list(args)
        json_path = tmp_path / f"report-{next(counter)}.json"
        if with_json and "--json" not in argv:
            argv += ["--json", str(json_path)]
        code = cli.main(argv, hard_exit=False)
        captured = capsys.readouterr()
        report = ProbeReport.parse_untrusted(json_path.read_text()) if json_path.exists() else None
        return CliRun(code, captured.out, captured.err, report)

    return run


@pytest.fixture(scope="session")
def standard_report() -> ProbeReport:
    """One healthy standard-suite run on the CPU, shared by the per-check tests."""
    return run_probe(ProbeRequest(device="cpu", suite=Suite.STANDARD))

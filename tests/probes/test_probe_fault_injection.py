"""Each injected fault is caught by the check that owns it, and only by the checks that should.

The faults perturb the real device path (see devices/faulty.py); these tests run the
quick suite through the CLI exactly as a probe pod would, and read the JSON report.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from accelqual_probes.schema import MAX_VERDICT_BYTES, VERDICT_MARKER, Verdict

from tests.probes.probe_helpers import RunCli, assert_operator_contract, failed_ids, marked_report, run_subprocess

#: fault -> (the owning check, words its reason must contain, checks allowed to fail with it).
FAULTS = {
    "slow-compute=0.25": ("perf.gemm.fp32", "tflops", {"perf.gemm.fp32", "perf.gemm.bf16"}),
    "slow-memory=0.25": ("perf.membw", "gbps", {"perf.membw"}),
    "corrupt=0.001": ("rel.stress", "silent data corruption",
                      {"rel.stress", "func.dtypes", "train.step", "infer.accuracy"}),
    "missing-device": ("gen.inventory", "devices 0 count < 1", {"gen.inventory"}),
    "memory-shortfall=0.5": ("gen.memory.capacity", "usable_gb", {"gen.memory.capacity"}),
    "bad-dtype=fp16": ("func.dtypes", "fp16", {"func.dtypes"}),
    "residual-memory": ("sec.residual", "leaked_bytes", {"sec.residual"}),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_is_caught_by_its_owning_check(run_cli: RunCli, fault: str) -> None:
    owner, symptom, allowed = FAULTS[fault]
    result = run_cli("--device", "cpu", "--suite", "quick", "--inject", fault)
    assert result.code == 1, result.stderr[-600:]
    assert result.report is not None
    assert result.report.injected_faults == [fault]
    owning = result.check(owner)
    assert owning.verdict is Verdict.FAIL
    assert symptom in owning.reason
    assert owner in failed_ids(result.report) <= allowed, f"unexpected failures: {failed_ids(result.report)}"
    errored = [c.id for c in result.report.checks if c.verdict is Verdict.ERROR]
    assert not errored, f"{fault} made checks error: {errored}"
    assert_operator_contract(result.report)


def test_corruption_is_named_as_silent_data_corruption_by_the_stress_check(run_cli: RunCli) -> None:
    result = run_cli("--device", "cpu", "--checks", "rel.stress,func.dtypes", "--inject", "corrupt=0.01")
    assert result.code == 1
    assert "result elements changed between identical GEMMs" in result.check("rel.stress").reason
    assert result.check("func.dtypes").verdict is Verdict.FAIL


def test_bad_dtype_names_the_dtype_and_spares_the_performance_checks(run_cli: RunCli) -> None:
    result = run_cli("--device", "cpu", "--checks", "func.dtypes,perf.gemm.fp16,perf.gemm.fp32",
                     "--inject", "bad-dtype=fp16")
    assert result.code == 1
    reason = result.check("func.dtypes").reason
    assert reason.startswith("fp16:") and "max_rel_error.fp16" in reason
    assert "fp32:" not in reason.split(";")[0]
    assert result.check("perf.gemm.fp16").verdict is Verdict.PASS
    assert result.check("perf.gemm.fp32").verdict in (Verdict.PASS, Verdict.WARN)


def test_slow_memory_does_not_fail_gemm_and_slow_compute_does_not_fail_bandwidth(run_cli: RunCli) -> None:
    memory = run_cli("--device", "cpu", "--checks", "perf.gemm.fp32,perf.membw", "--inject", "slow-memory=0.25")
    assert failed_ids(memory.report) == {"perf.membw"}  # type: ignore[arg-type]
    compute = run_cli("--device", "cpu", "--checks", "perf.gemm.fp32,perf.membw", "--inject", "slow-compute=0.25")
    assert failed_ids(compute.report) == {"perf.gemm.fp32"}  # type: ignore[arg-type]


def test_slow_compute_is_measured_by_training_and_inference(run_cli: RunCli) -> None:
    def rate(args: tuple[str, ...], check: str, metric: str) -> float:
        result = run_cli("--device", "cpu", "--suite", "quick", "--checks", check, *args)
        return result.check(check).values_of(metric)[0]

    healthy = rate((), "infer.throughput", "samples_per_s")
    slowed = rate(("--inject", "slow-compute=0.2"), "infer.throughput", "samples_per_s")
    assert slowed < 0.8 * healthy
    healthy = rate((), "train.step", "tokens_per_s")
    slowed = rate(("--inject", "slow-compute=0.2"), "train.step", "tokens_per_s")
    assert slowed < 0.8 * healthy


def test_faults_from_the_environment_are_injected(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELQUAL_INJECT", "missing-device")
    result = run_cli("--device", "cpu", "--checks", "gen.inventory,compat.stack")
    assert result.code == 1
    assert result.report is not None and result.report.injected_faults == ["missing-device"]


def test_expected_device_count_comes_from_the_node(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELQUAL_EXPECT_DEVICES", "2")
    result = run_cli("--device", "cpu", "--checks", "gen.inventory")
    assert result.code == 1
    assert "devices 1 count < 2" in result.check("gen.inventory").reason


def test_hung_check_errors_at_its_timeout_and_the_process_exits_promptly(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    started = time.monotonic()
    completed = run_subprocess(["--device", "cpu", "--checks", "compat.stack,perf.launch,gen.inventory",
                                "--inject", "hang=perf.launch", "--timeout-scale", "0.02", "--pod",
                                "--termination-log", str(log)], timeout=60)
    elapsed = time.monotonic() - started
    assert completed.returncode == 2, completed.stderr[-800:]
    report = marked_report(completed.stdout)
    assert report.verdict.value == "inconclusive"
    hung = next(c for c in report.checks if c.id == "perf.launch")
    assert hung.verdict is Verdict.ERROR and "timed out" in hung.reason
    assert next(c for c in report.checks if c.id == "gen.inventory").verdict is Verdict.PASS
    message = log.read_text()
    assert message.startswith(VERDICT_MARKER) and len(message.encode()) <= MAX_VERDICT_BYTES
    assert '"errored":["perf.launch"]' in message
    # torch import plus a 1.2 s timeout: the stuck thread must not keep the process alive.
    assert elapsed < 30, f"hung run took {elapsed:.1f}s"

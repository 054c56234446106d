"""Every check on the CPU reference device with real torch: verdicts, measurements, limits, reasons."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelqual_probes import catalog
from accelqual_probes.catalog import Suite
from accelqual_probes.runner import ProbeRequest, run_probe
from accelqual_probes.schema import Category, CheckResult, ProbeReport, Verdict

from tests.probes.probe_helpers import assert_operator_contract, by_id

#: Checks that need an accelerator (or CUDA specifically) and skip on a CPU.
ACCELERATOR_CHECKS = {c.id for c in catalog.CHECKS if c.accelerator_only}
#: Checks with no subject on a CPU host: no driver, no tf32 path.
CPU_NOT_APPLICABLE = {"sec.firmware": "no driver version", "perf.gemm.tf32": "tf32"}
#: The primary measurements each check must report on a CPU.
EXPECTED_METRICS = {
    "gen.inventory": {"devices", "expected_devices", "memory_gb"},
    "gen.memory.capacity": {"usable_gb", "requested_gb"},
    "func.dtypes": {f"max_rel_error.{d}" for d in ("fp64", "fp32", "fp16", "bf16", "fp8", "int8")},
    "func.ops": {"ops_failed", "ops_tested"},
    "perf.gemm.fp64": {"tflops", "reference_tflops", "fraction_of_reference"},
    "perf.gemm.fp32": {"tflops", "reference_tflops", "fraction_of_reference"},
    "perf.gemm.fp16": {"tflops", "reference_tflops"},
    "perf.gemm.bf16": {"tflops", "reference_tflops"},
    "perf.gemm.fp8": {"tflops", "reference_tflops"},
    "perf.gemm.int8": {"tflops", "reference_tflops"},
    "perf.membw": {"gbps", "reference_gbps", "triad_gbps"},
    "perf.launch": {"launch_us"},
    "compat.models": {"models_failed", "rel_error.cnn", "rel_error.encoder", "rel_error.decoder_lm"},
    "rel.stress": {"mismatches", "cv", "tflops"},
    "rel.memtest": {"bad_words", "tested_gb"},
    "sec.residual": {"leaked_bytes", "scanned_bytes"},
    "sec.privileges": {"uid", "capabilities", "api_token"},
    "train.step": {"tokens_per_s", "mfu_vs_reference", "loss_first", "loss_last", "trajectory_deviation"},
    "infer.latency": {"p50_ms", "p99_ms"},
    "infer.throughput": {"samples_per_s", "best_batch"},
    "infer.accuracy": {"agreement"},
}
RUNNABLE = sorted(set(catalog.suite_checks(Suite.STANDARD)) - ACCELERATOR_CHECKS - set(CPU_NOT_APPLICABLE))


def test_standard_suite_covers_the_whole_catalog_but_full_only_checks(standard_report: ProbeReport) -> None:
    assert [c.id for c in standard_report.checks] == catalog.suite_checks(Suite.STANDARD)
    assert {c.id for c in catalog.CHECKS} - {c.id for c in standard_report.checks} == {"compat.compile",
                                                                                      "rel.burnin"}
    assert standard_report.verdict.value == "pass", standard_report.reason


@pytest.mark.parametrize("check_id", RUNNABLE)
def test_check_passes_on_a_healthy_cpu_with_its_measurements(standard_report: ProbeReport, check_id: str) -> None:
    result = by_id(standard_report)[check_id]
    # sec.privileges warns when the tests run as root outside a pod; the bf16-like floors never warn.
    assert result.verdict in (Verdict.PASS, Verdict.WARN), f"{check_id}: {result.reason}"
    if check_id != "sec.privileges":
        assert result.verdict is Verdict.PASS or check_id.startswith(("perf.", "rel.stress")), result.reason
    metrics = {m.metric for m in result.measurements}
    assert EXPECTED_METRICS.get(check_id, set()) <= metrics, f"{check_id} lacks {EXPECTED_METRICS[check_id] - metrics}"
    assert result.reason
    assert result.duration_seconds >= 0


@pytest.mark.parametrize("check_id", sorted(ACCELERATOR_CHECKS))
def test_accelerator_check_is_skipped_on_cpu_with_a_reason(standard_report: ProbeReport, check_id: str) -> None:
    result = by_id(standard_report)[check_id]
    assert result.verdict is Verdict.SKIP
    assert "needs an accelerator" in result.reason


@pytest.mark.parametrize(("check_id", "words"), sorted(CPU_NOT_APPLICABLE.items()))
def test_check_without_a_subject_on_cpu_is_skipped(standard_report: ProbeReport, check_id: str, words: str) -> None:
    result = by_id(standard_report)[check_id]
    assert result.verdict is Verdict.SKIP and words in result.reason


def test_report_keeps_the_operator_contract(standard_report: ProbeReport) -> None:
    assert_operator_contract(standard_report)


def test_limits_are_declared_with_their_basis(standard_report: ProbeReport) -> None:
    checks = by_id(standard_report)
    gemm = checks["perf.gemm.fp32"].thresholds[0]
    assert gemm.metric == "tflops" and gemm.min is not None and "numpy fp32 reference" in gemm.basis
    bandwidth = checks["perf.membw"].thresholds[0]
    assert "numpy copy reference" in bandwidth.basis
    assert checks["perf.launch"].thresholds[0].max == 50.0
    assert checks["func.ops"].thresholds[0].max == 0
    assert checks["infer.accuracy"].thresholds[0].min == 0.99
    capacity = checks["gen.memory.capacity"].thresholds[0]
    assert "requested" in capacity.basis


def test_measured_gemm_is_comparable_with_its_reference(standard_report: ProbeReport) -> None:
    result = by_id(standard_report)["perf.gemm.fp32"]
    values = {r.metric: r.value for r in result.readings()}
    # Same shape and FLOP formula: a healthy CPU's torch GEMM lands near numpy's.
    assert 0.5 <= values["fraction_of_reference"] <= 3.0
    assert values["tflops"] / values["reference_tflops"] == pytest.approx(values["fraction_of_reference"])


def test_training_follows_the_recorded_trajectory(standard_report: ProbeReport) -> None:
    values = {r.metric: r.value for r in by_id(standard_report)["train.step"].readings()}
    assert values["loss_last"] < 0.85 * values["loss_first"]
    assert values["trajectory_deviation"] < 0.05


def test_every_category_is_exercised(standard_report: ProbeReport) -> None:
    ran = {c.category for c in standard_report.checks if c.verdict in (Verdict.PASS, Verdict.WARN)}
    assert ran == set(Category)


def test_burnin_runs_for_the_requested_seconds() -> None:
    report = run_probe(ProbeRequest(device="cpu", suite=Suite.FULL, checks=["rel.burnin"], burnin_seconds=1.0))
    result: CheckResult = report.checks[0]
    assert result.verdict is Verdict.PASS, result.reason
    assert 1.0 <= result.duration_seconds < 10.0
    rounds = {r.metric: r.value for r in result.readings()}["rounds"]
    assert rounds >= 1


@pytest.mark.slow
def test_graph_compilation_matches_eager_on_cpu() -> None:
    report = run_probe(ProbeRequest(device="cpu", suite=Suite.FULL, checks=["compat.compile"]))
    result = report.checks[0]
    assert result.verdict in (Verdict.PASS, Verdict.SKIP), result.reason
    if result.verdict is Verdict.PASS:
        assert {m.metric for m in result.measurements} >= {"compile_s", "rel_error"}


def test_recorded_trajectory_is_what_the_documented_command_produces(tmp_path: Path) -> None:
    from accelqual_probes.checks import training

    committed = training.load_reference()
    assert committed["command"] == training.RECORD_COMMAND
    fresh = training.record(tmp_path / "reference.json")
    assert fresh["recipe"] == committed["recipe"]
    assert fresh["losses"] == pytest.approx(committed["losses"], abs=1e-5)

"""The same probes on a real accelerator (run with `pytest -m gpu` on a GPU machine)."""

from __future__ import annotations

import pytest
import torch
from accelqual_probes.catalog import Suite
from accelqual_probes.runner import ProbeRequest, run_probe
from accelqual_probes.schema import ProbeReport, Verdict

from tests.probes.probe_helpers import by_id

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_report() -> ProbeReport:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return run_probe(ProbeRequest(device="cuda", suite=Suite.STANDARD))


def test_standard_suite_on_cuda_has_no_errors(cuda_report: ProbeReport) -> None:
    errors = [(c.id, c.reason) for c in cuda_report.checks if c.verdict is Verdict.ERROR]
    assert not errors


def test_gemm_is_judged_against_the_nominal_peak(cuda_report: ProbeReport) -> None:
    result = by_id(cuda_report)["perf.gemm.bf16"]
    metrics = {m.metric for m in result.measurements}
    assert {"tflops", "fraction_of_nominal"} <= metrics
    assert "nominal bf16 peak" in result.thresholds[0].basis


def test_numerics_and_residual_memory_pass_on_cuda(cuda_report: ProbeReport) -> None:
    checks = by_id(cuda_report)
    for check_id in ("func.dtypes", "func.ops", "compat.models", "rel.stress", "sec.residual", "train.step",
                     "infer.accuracy"):
        assert checks[check_id].verdict in (Verdict.PASS, Verdict.WARN), (check_id, checks[check_id].reason)

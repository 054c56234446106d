"""The CPU device's measurement primitives: threads, GEMM into an output, the memcpy copy, bandwidth arrays."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from accelqual_probes.catalog import Suite
from accelqual_probes.checks.function import gemm_operands
from accelqual_probes.devices import with_faults
from accelqual_probes.devices.cpu import CpuBackend
from accelqual_probes.faults import FaultPlan
from accelqual_probes.runner import ProbeRequest, run_probe
from accelqual_probes.schema import ProbeReport, Verdict

from tests.probes.probe_helpers import by_id


@pytest.mark.parametrize("dtype", ["fp32", "fp64", "bf16", "int8", "fp8"])
def test_gemm_into_a_preallocated_output_equals_the_allocating_gemm(dtype: str) -> None:
    backend = CpuBackend()
    a, b = gemm_operands(backend, 0, dtype, 64, seed=3)
    out = backend.matmul_output(a, b)
    assert backend.matmul(a, b, out) is out
    assert torch.equal(out, backend.matmul(a, b))


def test_a_slowed_gemm_still_writes_the_exact_result_into_its_output() -> None:
    backend = with_faults(CpuBackend(), FaultPlan(slow_compute=0.25))
    a, b = gemm_operands(backend, 0, "fp32", 64, seed=3)
    out = backend.matmul_output(a, b)
    backend.matmul(a, b, out)
    assert torch.equal(out, a @ b)


def test_cpu_copy_moves_the_bytes_between_distinct_contiguous_buffers() -> None:
    backend = CpuBackend()
    src = torch.randn(1 << 16)
    dst = torch.zeros(1 << 16)
    backend.copy_(dst, src)
    assert torch.equal(dst, src)


def test_cpu_copy_falls_back_to_torch_for_strided_or_converting_copies() -> None:
    backend = CpuBackend()
    src = torch.randn(32, 32, dtype=torch.float64)
    strided = torch.zeros(32, 32).t()
    backend.copy_(strided, src)
    assert torch.equal(strided, src.float())


def test_bandwidth_arrays_shrink_to_what_a_short_device_grants() -> None:
    report = run_probe(ProbeRequest(device="cpu", suite=Suite.QUICK, checks=["perf.membw"],
                                    faults=FaultPlan(memory_shortfall=0.25)))
    result = report.checks[0]
    assert result.verdict in (Verdict.PASS, Verdict.WARN), result.reason
    assert "MiB arrays (of 256 MiB wanted)" in result.reason


def test_gemm_reason_names_the_size_it_measured(standard_report: ProbeReport) -> None:
    reason = by_id(standard_report)["perf.gemm.fp32"].reason
    chosen = reason.split("n=")[1].split(" ")[0]
    assert chosen in reason.split("(the fastest of ")[1].split(")")[0].split(", ")


@pytest.mark.skipif(not torch.backends.mkl.is_available() or (os.cpu_count() or 1) < 2,  # type: ignore[no-untyped-call]
                    reason="needs torch's MKL and two cores to tell one thread from two")
def test_gemms_in_a_check_thread_run_at_the_probe_thread_count() -> None:
    # A fresh thread starts with the libraries' default thread count; the session pins it.
    code = (
        "import threading, torch\n"
        "from accelqual_probes.devices.cpu import CpuBackend\n"
        "backend = CpuBackend(threads=1)\n"
        "def check():\n"
        "    with backend.session('perf.gemm.fp32'):\n"
        "        a = torch.ones(64, 64)\n"
        "        backend.matmul(a, a)\n"
        "thread = threading.Thread(target=check)\n"
        "thread.start()\n"
        "thread.join()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MKL_VERBOSE": "1"},
                          capture_output=True, text=True, check=True, timeout=120)
    threads = [part for part in done.stdout.split() if part.startswith("NThr:")]
    assert threads and set(threads) == {"NThr:1"}, done.stdout[-500:]

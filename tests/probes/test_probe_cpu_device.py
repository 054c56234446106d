"""The CPU device's measurement primitives: threads, GEMM into an output, its kernels, bandwidth arrays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from accelqual_probes.catalog import Suite
from accelqual_probes.checks.function import gemm_operands
from accelqual_probes.devices import hostblas, with_faults
from accelqual_probes.devices.cpu import HOST_BLAS_KERNEL, MEMCPY_KERNEL, CpuBackend
from accelqual_probes.faults import FaultPlan
from accelqual_probes.hostinfo import last_level_cache_bytes
from accelqual_probes.runner import ProbeRequest, run_probe
from accelqual_probes.schema import ProbeReport, Verdict
from torch.utils._python_dispatch import TorchDispatchMode

from tests.probes.probe_helpers import by_id

#: Whether numpy's BLAS could be pinned here (the CPU device offers it as a GEMM kernel only then).
HOST_BLAS = HOST_BLAS_KERNEL in CpuBackend().gemm_kernels(torch.float64)
needs_host_blas = pytest.mark.skipif(not HOST_BLAS, reason="numpy's BLAS is not an OpenBLAS this process can pin")


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


@needs_host_blas
@pytest.mark.parametrize("dtype", ["fp32", "fp64"])
def test_the_host_blas_kernel_computes_the_gemm_into_its_output(dtype: str) -> None:
    backend = CpuBackend()
    a, b = gemm_operands(backend, 0, dtype, 96, seed=3)
    out = backend.matmul_output(a, b)
    assert backend.matmul(a, b, out, HOST_BLAS_KERNEL) is out
    torch.testing.assert_close(out, a @ b)  # another BLAS: the same product up to rounding


@pytest.mark.parametrize("kernel", [None, "torch", HOST_BLAS_KERNEL])
def test_repeated_gemms_leave_the_product_in_the_output(kernel: str | None) -> None:
    backend = CpuBackend()
    if kernel not in (None, *backend.gemm_kernels(torch.float64)):
        pytest.skip("numpy's BLAS is not an OpenBLAS this process can pin")
    a, b = gemm_operands(backend, 0, "fp64", 48, seed=3)
    out = backend.matmul_output(a, b)
    backend.matmul_repeated(a, b, out, 3, kernel)
    torch.testing.assert_close(out, a @ b)


def test_the_host_blas_kernel_is_offered_only_for_the_dtypes_numpy_multiplies() -> None:
    backend = CpuBackend()
    for dtype in (torch.float16, torch.bfloat16, torch.int8, torch.float8_e4m3fn):
        assert backend.gemm_kernels(dtype) == ("torch",)
    assert backend.gemm_kernels(torch.float32)[0] == "torch", "torch's kernel stays the default"


def test_a_kernel_the_device_does_not_offer_is_refused_by_name() -> None:
    backend = CpuBackend()
    a = torch.ones(4, 4, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"no GEMM kernel 'host-blas' \(offered: torch\)"):
        backend.matmul(a, a, kernel=HOST_BLAS_KERNEL)  # numpy has no bf16
    with pytest.raises(ValueError, match="no GEMM kernel 'cublas'"):
        backend.matmul_repeated(a, a, torch.empty(4, 4, dtype=torch.bfloat16), 2, "cublas")
    with pytest.raises(ValueError, match=r"no copy kernel 'dma' \(offered: memcpy, torch\)"):
        backend.copy_(torch.zeros(4), torch.ones(4), "dma")


def test_the_host_blas_operator_hands_what_numpy_cannot_take_to_torch() -> None:
    a = torch.randn(16, 24, dtype=torch.float64)
    b = torch.randn(32, 24, dtype=torch.float64).t()  # a transposed view
    out = torch.empty(16, 32, dtype=torch.float64)
    torch.testing.assert_close(hostblas.run(a, b, out), a @ b)
    half = torch.randn(8, 8).to(torch.bfloat16)
    torch.testing.assert_close(hostblas.run(half, half, torch.empty(8, 8, dtype=torch.bfloat16)), half @ half)


class _CountingMode(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's __init_subclass__
    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.calls: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        self.calls.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@needs_host_blas
def test_compute_faults_reach_the_host_blas_kernel() -> None:
    # The kernel is a torch operator, so the fault layer's dispatch mode slows and corrupts it
    # exactly as it does torch's GEMM: a fault perturbs the path the measurement takes.
    a, b = gemm_operands(CpuBackend(), 0, "fp64", 32, seed=3)
    slowed = with_faults(CpuBackend(), FaultPlan(slow_compute=0.25))
    out = torch.empty(32, 32, dtype=torch.float64)
    with _CountingMode() as counting:
        for _ in range(2):
            slowed.matmul(a, b, out, HOST_BLAS_KERNEL)
    assert counting.calls.count("accelqual.host_mm") == 8, counting.calls
    torch.testing.assert_close(out, a @ b)
    # A timed loop runs its GEMMs in one operator call, and the fault repeats the whole call.
    with _CountingMode() as counting:
        slowed.matmul_repeated(a, b, out, 5, HOST_BLAS_KERNEL)
    assert counting.calls.count("accelqual.host_mm") == 4, counting.calls
    torch.testing.assert_close(out, a @ b)
    corrupted = with_faults(CpuBackend(), FaultPlan(corrupt=1.0))
    corrupted.matmul(a, b, out, HOST_BLAS_KERNEL)
    assert not torch.equal(out, hostblas.run(a, b, torch.empty_like(out)))


@pytest.mark.parametrize("kernel", [None, MEMCPY_KERNEL, "torch"])
def test_cpu_copy_moves_the_bytes_between_distinct_contiguous_buffers(kernel: str | None) -> None:
    backend = CpuBackend()
    assert backend.copy_kernels() == (MEMCPY_KERNEL, "torch")
    src = torch.randn(1 << 16)
    dst = torch.zeros(1 << 16)
    backend.copy_(dst, src, kernel)
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


def test_gemm_reason_names_the_size_and_kernel_it_measured(standard_report: ProbeReport) -> None:
    reason = by_id(standard_report)["perf.gemm.fp32"].reason
    chosen = reason.split("n=")[1].split(" ")[0]
    assert chosen in reason.split("(the fastest of ")[1].split(")")[0].split(", ")
    if HOST_BLAS:
        kernel = reason.split(", kernel ")[1].split(" ")[0]
        assert kernel in ("torch", HOST_BLAS_KERNEL)
        assert "(the faster of torch, host-blas)" in reason
    assert "kernel" not in by_id(standard_report)["perf.gemm.bf16"].reason, "one kernel: nothing to choose"


def test_bandwidth_reason_names_the_copy_kernel_it_measured(standard_report: ProbeReport) -> None:
    reason = by_id(standard_report)["perf.membw"].reason
    assert reason.split("copy kernel ")[1].split(" ")[0] in (MEMCPY_KERNEL, "torch")
    assert "(the faster of memcpy, torch)" in reason


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


def _cache(root: Path, cpu: int, index: int, level: int, kind: str, size: str, shared: str) -> None:
    path = root / f"cpu{cpu}" / "cache" / f"index{index}"
    path.mkdir(parents=True)
    for name, value in (("level", str(level)), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
        (path / name).write_text(value + "\n")


def test_last_level_cache_is_summed_over_its_instances(tmp_path: Path) -> None:
    # Two core complexes with an L3 each (as AMD CPUs report), private L2s and an instruction cache.
    for cpu in range(4):
        _cache(tmp_path, cpu, 0, 1, "Instruction", "32K", str(cpu))
        _cache(tmp_path, cpu, 2, 2, "Unified", "1024K", str(cpu))
        _cache(tmp_path, cpu, 3, 3, "Unified", "32768K", "0-1" if cpu < 2 else "2-3")
    assert last_level_cache_bytes(tmp_path) == 64 << 20


def test_last_level_cache_is_unknown_without_sysfs(tmp_path: Path) -> None:
    assert last_level_cache_bytes(tmp_path) is None
    _cache(tmp_path, 0, 0, 2, "Unified", "not a size", "0")
    assert last_level_cache_bytes(tmp_path) is None

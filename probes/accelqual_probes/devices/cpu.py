"""The CPU as a device: the reference device of CI, laptops and the simulated fleet.

Inventory comes from /proc (model name, MemTotal); allocations are bounded so a probe
never squeezes the host it shares with other probes or workloads. torch and numpy
BLAS are pinned to the same small thread count (`ACCELQUAL_CPU_THREADS`, default 1):
probes that share a host then measure alike, and the two libraries' spin-waiting
thread pools cannot distort each other's timings.

A host CPU has more than one good kernel for what the performance checks measure, and
which is faster depends on the CPU, so the device offers both and the checks measure
each. Copies: the C library's `memcpy` (the default; non-temporal stores for copies
beyond the size glibc takes for its cache, which it reads from CPUID and can overstate
on virtual machines) and `Tensor.copy_`'s vectorised loop (regular stores; faster on an
AMD EPYC host whose `memcpy` did not stream). fp32/fp64 GEMM: torch's MKL (the default)
and numpy's OpenBLAS (`hostblas`).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from accelqual_probes import reference
from accelqual_probes.devices import hostblas
from accelqual_probes.devices.base import DEFAULT_KERNEL, BackendSpec, DeviceBackend, unknown_kernel
from accelqual_probes.hostinfo import read_cpuinfo, read_meminfo

ENV_CPU_THREADS = "ACCELQUAL_CPU_THREADS"
#: Upper bound of what the capacity check allocates on a CPU host, whatever its size. Every
#: page is touched to prove it real, and first-touch faults cost ~1 ms per MiB on virtual
#: machines: 256 MiB keeps the capacity check under half a second.
CPU_ALLOCATION_CAP = 256 << 20
#: Upper bound of a measurement's short-lived buffers: two 256 MiB bandwidth arrays, each
#: several times a server CPU's last-level cache (the STREAM rule) and large enough for
#: `memcpy` to stream past the caches (glibc does above 3/4 of the cache size it detects).
CPU_SCRATCH_CAP = 512 << 20
#: Share of the host's available memory (or cgroup headroom) a probe may take.
CPU_ALLOCATION_SHARE = 0.10
#: Allocations from this size up ask for transparent huge pages, as numpy does for its arrays:
#: a streaming copy then takes 512 times fewer TLB misses (2-6% more copy bandwidth measured).
HUGEPAGE_MIN_BYTES = 4 << 20
#: The CPU device's kernels (see the module docstring); the first of each is the default.
MEMCPY_KERNEL = "memcpy"
HOST_BLAS_KERNEL = "host-blas"
_HUGEPAGE = 2 << 20
_MADV_HUGEPAGE = 14


def cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes the current memory cgroup can still grow by (v2, then v1), or None if unlimited."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit_text = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit_text == "max" or not limit_text.isdigit() or int(limit_text) >= 1 << 60:
            return None
        return max(0, int(limit_text) - usage)
    return None


class CpuBackend(DeviceBackend):
    """The host CPU as one device."""

    kind = "cpu"
    accelerator = False

    def __init__(self, threads: int | None = None) -> None:
        env_threads = os.environ.get(ENV_CPU_THREADS, "")
        self.threads = threads or (int(env_threads) if env_threads.isdigit() and int(env_threads) > 0 else 1)
        torch.set_num_threads(self.threads)
        # numpy's BLAS is a GEMM kernel of this device only where it can be pinned like torch's.
        self._host_blas = reference.set_blas_threads(self.threads)
        self.vendor, self._model = read_cpuinfo()

    def device_count(self) -> int:
        return 1

    def device_name(self, index: int) -> str:
        return self._model

    def torch_device(self, index: int) -> torch.device:
        return torch.device("cpu")

    def synchronize(self, index: int | None = None) -> None:
        """CPU ops are synchronous."""

    def memory_total(self, index: int) -> int:
        return read_meminfo().get("MemTotal", 0)

    def allocation_limit(self, index: int) -> int:
        return _host_share(CPU_ALLOCATION_CAP)

    def scratch_limit(self, index: int) -> int:
        return _host_share(CPU_SCRATCH_CAP)

    @contextmanager
    def session(self, check_id: str) -> Iterator[None]:
        # OpenMP's and MKL's thread counts belong to each thread: a check's worker thread starts
        # with the libraries' defaults (every core) until torch initialises it lazily on its first
        # large parallel op, so small GEMMs ran two-threaded and, on a busy host, stalled ~15 ms
        # at each barrier. Pinned here, before the check's first op.
        torch.set_num_threads(self.threads)
        yield

    def empty(self, numel: int, dtype: torch.dtype, index: int) -> torch.Tensor:
        tensor = super().empty(numel, dtype, index)
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes >= HUGEPAGE_MIN_BYTES:
            advise_hugepages(tensor.data_ptr(), nbytes)
        return tensor

    def gemm_kernels(self, dtype: torch.dtype) -> tuple[str, ...]:
        if self._host_blas and dtype in hostblas.HOST_BLAS_DTYPES:
            return (DEFAULT_KERNEL, HOST_BLAS_KERNEL)
        return (DEFAULT_KERNEL,)

    def matmul(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None,
               kernel: str | None = None) -> torch.Tensor:
        if kernel == HOST_BLAS_KERNEL and kernel in self.gemm_kernels(a.dtype):
            return hostblas.run(a, b, self.matmul_output(a, b) if out is None else out)
        return super().matmul(a, b, out, kernel)

    def matmul_repeated(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, repeats: int,
                        kernel: str | None = None) -> None:
        if kernel == HOST_BLAS_KERNEL and kernel in self.gemm_kernels(a.dtype):
            hostblas.run(a, b, out, repeats)
        else:
            super().matmul_repeated(a, b, out, repeats, kernel)

    def copy_kernels(self) -> tuple[str, ...]:
        return (MEMCPY_KERNEL, DEFAULT_KERNEL)

    def copy_(self, dst: torch.Tensor, src: torch.Tensor, kernel: str | None = None) -> None:
        if kernel in (None, MEMCPY_KERNEL) and _memcpy_compatible(dst, src):
            ctypes.memmove(dst.data_ptr(), src.data_ptr(), src.numel() * src.element_size())
        elif kernel in (None, MEMCPY_KERNEL, DEFAULT_KERNEL):
            dst.copy_(src)
        else:
            raise unknown_kernel(self.kind, "copy", kernel, self.copy_kernels())

    def runtime_version(self) -> str | None:
        capability = torch.backends.cpu.get_cpu_capability()
        return f"{capability}, {self.threads} thread(s)"

    def spec(self) -> BackendSpec:
        return BackendSpec(kind=self.kind, cpu_threads=self.threads)


def _host_share(cap: int) -> int:
    """`cap`, or less where the host's available memory or the cgroup's headroom is short (whole MiB)."""
    info = read_meminfo()
    available = info.get("MemAvailable", info.get("MemFree", 0))
    bounds = [cap, int(available * CPU_ALLOCATION_SHARE)]
    headroom = cgroup_headroom()
    if headroom is not None:
        bounds.append(int(headroom * CPU_ALLOCATION_SHARE))
    return max(0, min(bounds)) // (1 << 20) * (1 << 20)


def _memcpy_compatible(dst: torch.Tensor, src: torch.Tensor) -> bool:
    """Whether `dst.copy_(src)` is a plain byte copy between distinct, contiguous CPU buffers."""
    if dst.device.type != "cpu" or src.device.type != "cpu" or dst.dtype != src.dtype:
        return False
    if dst.shape != src.shape or not (dst.is_contiguous() and src.is_contiguous()) or dst.requires_grad:
        return False
    size = src.numel() * src.element_size()
    low, high = sorted((dst.data_ptr(), src.data_ptr()))
    return low + size <= high  # no overlap


def advise_hugepages(address: int, nbytes: int) -> bool:
    """Ask Linux to back the whole huge pages inside [address, address + nbytes) with huge pages.

    Only effective before the pages are first touched; False where madvise is unavailable or refuses.
    """
    start = -(-address // _HUGEPAGE) * _HUGEPAGE
    end = (address + nbytes) // _HUGEPAGE * _HUGEPAGE
    if end <= start or not sys.platform.startswith("linux"):
        return False
    try:
        madvise = _libc().madvise
    except (OSError, AttributeError):
        return False
    return int(madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_HUGEPAGE)) == 0


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)

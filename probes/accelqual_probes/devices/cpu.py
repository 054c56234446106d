"""The CPU as a device: the reference device of CI, laptops and the simulated fleet.

Inventory comes from /proc (model name, MemTotal); allocations are bounded so a probe
never squeezes the host it shares with other probes or workloads. Memory copies go
through the C library's `memcpy`, the copy kernel tuned for this CPU (it switches to
non-temporal stores for copies larger than the caches, as STREAM-class copies need,
which `Tensor.copy_`'s vectorised loop does not). torch and numpy
BLAS are pinned to the same small thread count (`ACCELQUAL_CPU_THREADS`, default 1):
probes that share a host then measure alike, and the two libraries' spin-waiting
thread pools cannot distort each other's timings.
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
from accelqual_probes.devices.base import BackendSpec, DeviceBackend
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
        reference.set_blas_threads(self.threads)
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

    def copy_(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        if _memcpy_compatible(dst, src):
            ctypes.memmove(dst.data_ptr(), src.data_ptr(), src.numel() * src.element_size())
        else:
            dst.copy_(src)

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

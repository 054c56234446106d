"""In-run reference measurements on the host with numpy, outside the device path.

The `cpu-reference` profile judges the CPU "device" (torch) against these: numpy BLAS
GEMM for compute and a plain numpy copy for bandwidth (between the probe's own arrays),
on the same shapes and with the same FLOP/byte formulas. Injected faults live in the device layer and never touch
numpy, so a reference taken in the same run stays a healthy yardstick, and because it
is measured alternately with the probe, host contention slows both alike.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

_blas_lock = threading.Lock()
_blas_setter: Callable[[int], None] | bool | None = False  # False: not looked up yet


def _find_blas_setter() -> Callable[[int], None] | None:
    """numpy's OpenBLAS `set_num_threads`, found among the loaded libraries (no threadpoolctl)."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower() and "/" in line}
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for symbol in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                       "openblas_set_num_threads"):
            if hasattr(lib, symbol):
                setter = getattr(lib, symbol)
                setter.argtypes = [ctypes.c_int]
                setter.restype = None
                return partial(_call_c, setter)
    return None


def _call_c(function: Any, threads: int) -> None:
    function(threads)


def set_blas_threads(threads: int) -> bool:
    """Pin numpy's BLAS to `threads` threads, so the reference uses the same cores as the probe.

    Idle BLAS and OpenMP pools spin-wait after a call; when numpy and torch alternate with
    more than one thread each, each library's spinning threads steal the other's cores
    and both measurements become noise. Returns whether the setting could be applied.
    """
    global _blas_setter
    with _blas_lock:
        if _blas_setter is False:
            _blas_setter = _find_blas_setter()
        setter = _blas_setter
    if setter is None or setter is True:
        return False
    setter(threads)
    return True


NP_DTYPES: dict[str, type[np.floating]] = {"fp64": np.float64, "fp32": np.float32}


class GemmReference:
    """numpy GEMM of an `n x n` problem; FLOPs counted as `2 n^3`, like the probe's."""

    def __init__(self, n: int, dtype: str, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        np_dtype = NP_DTYPES.get(dtype, np.float32)
        self.a: npt.NDArray[np.floating] = rng.standard_normal((n, n)).astype(np_dtype)
        self.b: npt.NDArray[np.floating] = rng.standard_normal((n, n)).astype(np_dtype)
        self.out: npt.NDArray[np.floating] = np.empty((n, n), dtype=np_dtype)
        self.flops = 2.0 * n**3

    def run(self, repeats: int) -> None:
        for _ in range(repeats):
            np.matmul(self.a, self.b, out=self.out)


class CopyReference:
    """A plain numpy copy from `src` to `dst`; bytes moved counted as `2 x nbytes` (read + write)."""

    def __init__(self, dst: npt.NDArray[Any], src: npt.NDArray[Any]) -> None:
        self.dst, self.src = dst, src
        self.bytes_moved = 2.0 * src.nbytes

    @classmethod
    def of_size(cls, nbytes: int) -> CopyReference:
        """A copy between two arrays of its own."""
        count = max(1, nbytes // 8)
        return cls(np.zeros(count, dtype=np.float64), np.ones(count, dtype=np.float64))

    def run(self, repeats: int) -> None:
        for _ in range(repeats):
            np.copyto(self.dst, self.src)


def gemm_fp64(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The fp64 host reference of a GEMM (numerics checks)."""
    return np.asarray(np.matmul(a, b), dtype=np.float64)

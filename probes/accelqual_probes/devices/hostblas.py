"""The host's other BLAS as a torch operator: numpy's GEMM into a preallocated output.

torch's CPU wheels carry Intel MKL, whose kernels take a slower code path on CPUs of
other vendors: on an AMD EPYC host numpy's OpenBLAS ran fp64 and fp32 GEMMs 5-15% faster
than `torch.mm` at the same sizes, single-threaded. The CPU device offers both kernels
to the GEMM performance check, which measures the faster one, as it measures the fastest
size: the figure is the device's GEMM throughput, not one library's.

It is a registered operator (`torch.ops.accelqual.host_mm.out`), not a bare numpy call,
so that dispatch modes see it as they see `aten.mm`: the fault layer slows and corrupts
it exactly as it does torch's GEMM.
"""

from __future__ import annotations

import numpy as np
import torch

#: The dtypes numpy's BLAS multiplies (the others stay with torch's kernels).
HOST_BLAS_DTYPES = {torch.float32: "fp32", torch.float64: "fp64"}

# Kept for the life of the process: the operator is defined for as long as its library object lives.
_LIBRARY = torch.library.Library("accelqual", "DEF")  # type: ignore[no-untyped-call]
_LIBRARY.define("host_mm.out(Tensor a, Tensor b, int repeats=1, *, Tensor(a!) out) -> Tensor(a!)")  # type: ignore[no-untyped-call]


def run(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, repeats: int = 1) -> torch.Tensor:
    """`out = a @ b`, `repeats` times back to back, through the operator (so that dispatch modes see it).

    One operator call does all the repeats: a call through torch's dispatcher costs ~7 us of
    Python, a fifth of a 96x96 fp64 GEMM, which a loop of bare numpy calls does not pay.
    """
    result: torch.Tensor = host_mm(a, b, repeats, out=out)
    return result


def supports(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether `host_mm` multiplies these operands itself rather than handing them to torch."""
    tensors = (a, b, out)
    return (a.dtype in HOST_BLAS_DTYPES and all(t.dtype is a.dtype for t in tensors)
            and all(t.device.type == "cpu" and t.dim() == 2 and t.is_contiguous() and not t.requires_grad
                    for t in tensors)
            and a.shape[1] == b.shape[0] and tuple(out.shape) == (a.shape[0], b.shape[1]))


def _host_mm_out(a: torch.Tensor, b: torch.Tensor, repeats: int = 1, *, out: torch.Tensor) -> torch.Tensor:
    if supports(a, b, out):
        matmul, left, right, result = np.matmul, a.numpy(), b.numpy(), out.numpy()
        for _ in range(repeats):
            matmul(left, right, out=result)
    else:  # views, other dtypes or devices: torch's kernel, so the operator is total
        for _ in range(repeats):
            torch.mm(a, b, out=out)
    return out


_LIBRARY.impl("host_mm.out", _host_mm_out, "CPU")  # type: ignore[no-untyped-call]

host_mm = torch.ops.accelqual.host_mm

"""The fault layer: a `DeviceBackend` that wraps a real one and perturbs its primitives.

Nothing here replaces a measurement: every fault makes the real path misbehave, and
the checks find out by measuring as they always do.

- `slow-compute=F`: GEMM/convolution ops run `1/F` times (the extra runs are real work
  on the same operands, inside the timed region), so every GEMM, training and
  inference measurement slows down while numpy references do not.
- `corrupt=RATE`: a random bit flips in that share of elements of GEMM/convolution
  results (silent data corruption).
- `bad-dtype=DTYPE`: GEMM results of one dtype carry a systematic error.
- `slow-memory=F`: `copy_`/`triad` move `1/F` times the bytes.
- `missing-device`: the backend reports one device fewer.
- `memory-shortfall=F`: allocations beyond F of the device's allocatable memory fail.
- `residual-memory`: memory freed by one process is handed, unscrubbed, to the next
  process's allocation (through a pool directory shared by the processes of a run).
- `hang=CHECK`: the device never answers while that check runs.

Compute faults act through a torch dispatch mode entered by `compute()`; modes are
thread-local, so only the check that opened the scope is affected, and references
computed outside it stay healthy.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from accelqual_probes.devices.base import BackendSpec, DeviceBackend, DeviceIds, DeviceOutOfMemoryError
from accelqual_probes.devices.hostblas import host_mm
from accelqual_probes.devices.nvml import Nvml
from accelqual_probes.faults import FaultPlan

_aten = torch.ops.aten
#: The compute-heavy ops (forward and backward of GEMM and convolution, and the CPU device's
#: host-BLAS GEMM) that compute faults target.
#: Under autograd a mode sees the decomposed ops (mm, addmm, convolution); under
#: inference_mode it sees the composite ones (linear, matmul, conv2d) before they decompose.
COMPUTE_OPS = frozenset({
    _aten.mm, _aten.addmm, _aten.bmm, _aten.baddbmm, _aten.addmv, _aten.mv, _aten.dot,
    _aten.linear, _aten.matmul, _aten.einsum,
    _aten.convolution, _aten._convolution, _aten.conv1d, _aten.conv2d, _aten.conv3d, _aten.convolution_backward,
    _aten._scaled_mm, _aten._int_mm, host_mm,
})
_FLOAT8 = (torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz)
_DTYPE_NAMES = {torch.float64: "fp64", torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_BIT_VIEWS = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}
#: Relative error `bad-dtype` adds to each element (alternating sign): far above any dtype's rounding.
BAD_DTYPE_ERROR = 0.125
#: Largest freed buffer a `residual-memory` allocator carries over to the next process.
RESIDUE_CAP = 256 << 20


def op_dtype(args: tuple[Any, ...], out: torch.Tensor) -> str | None:
    """The catalog dtype a GEMM ran in: fp8/int8 by their inputs, tf32 by the CUDA math mode."""
    inputs = [a for a in args if isinstance(a, torch.Tensor)]
    if any(t.dtype in _FLOAT8 for t in inputs):
        return "fp8"
    if any(t.dtype is torch.int8 for t in inputs):
        return "int8"
    if out.dtype is torch.float32 and out.device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return _DTYPE_NAMES.get(out.dtype)


class ComputeFaultMode(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's __init_subclass__
    """Slows, corrupts or skews GEMM/convolution results that run under it."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in dynamo's disable(), which imports the
        # whole compiler (~2 s) on the first op. Nothing is compiled under this mode.
        return False

    def __init__(self, plan: FaultPlan) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.plan = plan
        self.rng = np.random.default_rng()
        # Fractional extra work carried between ops, so `1/F` holds on average exactly.
        self._carry = 0.0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func.overloadpacket not in COMPUTE_OPS:
            return out
        if self.plan.slow_compute is not None:
            self._extra_work(func, args, kwargs)
        return _map_tensors(out, lambda t: self._perturb(t, args))

    def _extra_work(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        assert self.plan.slow_compute is not None
        self._carry += 1.0 / self.plan.slow_compute - 1.0
        repeats = math.floor(self._carry)
        self._carry -= repeats
        scratch = dict(kwargs)
        if isinstance(scratch.get("out"), torch.Tensor):
            scratch["out"] = torch.empty_like(scratch["out"])
        for _ in range(repeats):
            func(*args, **scratch)

    def _perturb(self, out: torch.Tensor, args: tuple[Any, ...]) -> torch.Tensor:
        if out.numel() == 0 or out.dtype is torch.bool or out.is_complex():
            return out
        if self.plan.bad_dtype is not None and op_dtype(args, out) == self.plan.bad_dtype:
            out = _skew(out)
        if self.plan.corrupt is not None:
            out = self._flip_bits(out, self.plan.corrupt)
        return out

    def _flip_bits(self, out: torch.Tensor, rate: float) -> torch.Tensor:
        numel = out.numel()
        flips = min(int(self.rng.binomial(numel, rate)), 1 << 20)
        if flips == 0:
            return out
        out = out if out.is_contiguous() else out.contiguous()
        width = out.element_size()
        int_dtype = _BIT_VIEWS[width]
        positions = torch.from_numpy(self.rng.integers(0, numel, size=flips)).to(out.device)
        bits = self.rng.integers(0, 8 * width, size=flips)
        np_int = {8: np.int64, 4: np.int32, 2: np.int16, 1: np.uint8}[width]
        masks = np.left_shift(np.ones(flips, dtype=np_int), bits.astype(np_int))
        flat = out.view(-1).view(int_dtype)
        flat[positions] = flat[positions] ^ torch.from_numpy(masks).to(out.device)
        return out


def _skew(out: torch.Tensor) -> torch.Tensor:
    """A systematic per-element error, alternating in sign (a broken tensor-core path)."""
    out = out if out.is_contiguous() else out.contiguous()
    signs = (torch.arange(out.numel(), device=out.device) % 2 * 2 - 1).view(out.shape)
    if out.is_floating_point():
        out.mul_(1 + BAD_DTYPE_ERROR * signs.to(out.dtype))
    else:
        out.add_(signs.to(out.dtype))
    return out


def _map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, tuple | list):
        return type(value)(_map_tensors(v, fn) for v in value)
    return value


class FaultyBackend(DeviceBackend):
    """`inner` with the faults of `plan` applied to its primitives."""

    def __init__(self, inner: DeviceBackend, plan: FaultPlan, owns_pool: bool = False) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.accelerator = inner.accelerator
        self.vendor = inner.vendor
        if plan.residual_memory and plan.residual_pool is None:
            plan = plan.with_pool(tempfile.mkdtemp(prefix="accelqual-residual-"))
            owns_pool = True
        self.plan = plan
        self.owns_pool = owns_pool
        self._local = threading.local()
        self._lock = threading.Lock()
        self._caps: dict[int, int] = {}
        self._live: dict[int, int] = {}
        self._allocations: dict[int, tuple[int, int]] = {}
        self._residue: torch.Tensor | None = None

    # -- discovery: a missing device is simply not reported -----------------------------------
    def device_count(self) -> int:
        count = self.inner.device_count()
        return max(0, count - 1) if self.plan.missing_device else count

    def device_name(self, index: int) -> str:
        return self.inner.device_name(index)

    def torch_device(self, index: int) -> torch.device:
        return self.inner.torch_device(index)

    def synchronize(self, index: int | None = None) -> None:
        self.inner.synchronize(index)

    def memory_total(self, index: int) -> int:
        return self.inner.memory_total(index)

    def allocation_limit(self, index: int) -> int:
        return self.inner.allocation_limit(index)

    def scratch_limit(self, index: int) -> int:
        return self.inner.scratch_limit(index)

    def driver_version(self) -> str | None:
        return self.inner.driver_version()

    def torch_dtype(self, name: str) -> torch.dtype:
        return self.inner.torch_dtype(name)

    def trim(self) -> None:
        self.inner.trim()

    def runtime_version(self) -> str | None:
        return self.inner.runtime_version()

    def device_ids(self, index: int) -> DeviceIds:
        return self.inner.device_ids(index)

    def nvml(self) -> Nvml | None:
        nvml = self.inner.nvml()
        return Nvml(nvml.lib, nvml.handles[: self.device_count()]) if nvml is not None else None

    # -- compute ----------------------------------------------------------------------------------
    @contextmanager
    def _compute_scope(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth or not self.plan.perturbs_compute:
            # Nested scopes would apply the faults twice; an empty plan needs no mode at all.
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        self._local.depth = 1
        try:
            with ComputeFaultMode(self.plan):
                yield
        finally:
            self._local.depth = 0

    def compute(self) -> AbstractContextManager[None]:
        return self._compute_scope()

    def gemm_kernels(self, dtype: torch.dtype) -> tuple[str, ...]:
        return self.inner.gemm_kernels(dtype)

    def matmul(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None,
               kernel: str | None = None) -> torch.Tensor:
        with self._compute_scope():
            return self.inner.matmul(a, b, out, kernel)

    def matmul_repeated(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, repeats: int,
                        kernel: str | None = None) -> None:
        with self._compute_scope():
            self.inner.matmul_repeated(a, b, out, repeats, kernel)

    def matmul_output(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.inner.matmul_output(a, b)

    @contextmanager
    def session(self, check_id: str) -> Iterator[None]:
        if check_id in self.plan.hang:
            # The device stops answering: nothing wakes this thread; the runner abandons it.
            threading.Event().wait()
        with self.inner.session(check_id):
            yield

    # -- memory traffic ---------------------------------------------------------------------------
    def _memory_repeats(self) -> int:
        if self.plan.slow_memory is None:
            return 0
        carry = getattr(self._local, "carry", 0.0) + 1.0 / self.plan.slow_memory - 1.0
        repeats = math.floor(carry)
        self._local.carry = carry - repeats
        return repeats

    def copy_kernels(self) -> tuple[str, ...]:
        return self.inner.copy_kernels()

    def copy_(self, dst: torch.Tensor, src: torch.Tensor, kernel: str | None = None) -> None:
        for _ in range(1 + self._memory_repeats()):
            self.inner.copy_(dst, src, kernel)

    def triad(self, out: torch.Tensor, b: torch.Tensor, c: torch.Tensor, scalar: float) -> None:
        for _ in range(1 + self._memory_repeats()):
            self.inner.triad(out, b, c, scalar)

    # -- allocation ---------------------------------------------------------------------------------
    def empty(self, numel: int, dtype: torch.dtype, index: int) -> torch.Tensor:
        nbytes = numel * torch.empty((), dtype=dtype).element_size()
        if self.plan.memory_shortfall is not None:
            with self._lock:
                cap = self._caps.setdefault(index, int(self.plan.memory_shortfall * self.inner.allocation_limit(index)))
                if self._live.get(index, 0) + nbytes > cap:
                    raise DeviceOutOfMemoryError(f"{self.kind}:{index}: out of memory allocating {nbytes} bytes")
                self._live[index] = self._live.get(index, 0) + nbytes
        tensor = self.inner.empty(numel, dtype, index)
        if self.plan.memory_shortfall is not None:
            key = tensor.data_ptr()
            self._allocations[key] = (index, nbytes)
            weakref.finalize(tensor, self._release, key)
        if self.plan.residual_memory:
            self._serve_residue(tensor)
        return tensor

    def _release(self, key: int) -> None:
        with self._lock:
            entry = self._allocations.pop(key, None)
            if entry is not None:
                index, nbytes = entry
                self._live[index] = self._live.get(index, 0) - nbytes

    def free(self, tensor: torch.Tensor) -> None:
        self._release(tensor.data_ptr())
        if self.plan.residual_memory and tensor.numel() * tensor.element_size() <= RESIDUE_CAP:
            # The allocator keeps the freed block as it is, without scrubbing it.
            self._residue = tensor.detach()
            return
        self.inner.free(tensor)

    def _serve_residue(self, tensor: torch.Tensor) -> None:
        """Hand out what a previous process left in the pool, as a non-scrubbing allocator would."""
        pool = self.plan.residual_pool
        if pool is None:
            return
        for slot in sorted(Path(pool).glob("slot-*.bin")):
            claimed = slot.with_name(f"claimed-{os.getpid()}-{slot.name}")
            try:
                slot.rename(claimed)  # atomic: one process claims one slot
            except OSError:
                continue
            data = torch.from_numpy(np.fromfile(claimed, dtype=np.uint8))
            claimed.unlink(missing_ok=True)
            raw = tensor.view(-1).view(torch.uint8)
            count = min(raw.numel(), data.numel())
            raw[:count].copy_(data[:count])
            return

    def close(self) -> None:
        pool = self.plan.residual_pool
        if self._residue is not None and pool is not None and not self.owns_pool and Path(pool).is_dir():
            # This process ends: what it freed stays behind in the pool for the next one.
            data = self._residue.contiguous().view(-1).view(torch.uint8).cpu().numpy()
            handle, tmp = tempfile.mkstemp(dir=pool, prefix="writing-")
            with os.fdopen(handle, "wb") as out:
                out.write(data.tobytes())
            os.replace(tmp, os.path.join(pool, f"slot-{os.getpid()}.bin"))
        self._residue = None
        if self.owns_pool and pool is not None:
            for leftover in Path(pool).glob("*"):
                leftover.unlink(missing_ok=True)
            if Path(pool).is_dir():
                Path(pool).rmdir()
        self.inner.close()

    def spec(self) -> BackendSpec:
        inner = self.inner.spec()
        return BackendSpec(kind=inner.kind, faults=self.plan, cpu_threads=inner.cpu_threads)

"""The device backend interface: discovery, inventory and the primitives checks measure through.

Every check reaches the hardware through a `DeviceBackend`: `matmul`, `copy_`, `triad`,
`empty`/`free` and the `compute()` scope around model code. Keeping these few
primitives in one place is what lets `faulty.FaultyBackend` inject a defect into the
real measurement path of exactly the checks that should see it. Vendor modules
(`torch_npu`, `pynvml`, ...) are imported lazily by the concrete backends.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch

from accelqual_probes import __version__
from accelqual_probes.devices.nvml import Nvml
from accelqual_probes.faults import FaultPlan
from accelqual_probes.schema import DeviceInfo, Inventory

#: Device kinds the probe knows, in the order `--device auto` tries them (cpu last).
ACCELERATOR_KINDS = ("cuda", "npu", "mlu", "xpu", "musa")
DEVICE_KINDS = ("cpu", *ACCELERATOR_KINDS)
#: The kernel every backend's `matmul` and `copy_` use unless told otherwise: torch's own.
DEFAULT_KERNEL = "torch"

def unknown_kernel(kind: str, what: str, kernel: str, offered: tuple[str, ...]) -> ValueError:
    """The error of a kernel name a backend does not offer (a caller's mistake, never a device's)."""
    return ValueError(f"{kind}: no {what} kernel {kernel!r} (offered: {', '.join(offered)})")


#: torch dtypes by the catalog's dtype names. tf32 is fp32 storage with tensor-core math.
TORCH_DTYPES: dict[str, torch.dtype] = {
    "fp64": torch.float64,
    "fp32": torch.float32,
    "tf32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8": torch.float8_e4m3fn,
    "int8": torch.int8,
}


class DeviceUnavailableError(RuntimeError):
    """The requested device kind is not present or its vendor stack cannot be loaded."""


class DeviceOutOfMemoryError(RuntimeError):
    """An allocation on the device failed for lack of memory."""


@dataclass(frozen=True)
class BackendSpec:
    """A picklable recipe to reopen the same backend (and faults) in a child process."""

    kind: str
    faults: FaultPlan = field(default_factory=FaultPlan)
    cpu_threads: int = 1


@dataclass(frozen=True)
class DeviceIds:
    """Identifiers of one device where the vendor stack exposes them."""

    serial: str | None = None
    uuid: str | None = None
    bus_id: str | None = None


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether a torch error means 'no memory' (CUDA raises a subclass, CPU a plain RuntimeError)."""
    if isinstance(exc, torch.OutOfMemoryError | DeviceOutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class DeviceBackend(ABC):
    """One kind of device on this machine; indices run from 0 to `device_count() - 1`."""

    kind: str = "cpu"
    accelerator: bool = False
    vendor: str = ""

    # -- discovery ---------------------------------------------------------------------------
    @abstractmethod
    def device_count(self) -> int: ...

    @abstractmethod
    def device_name(self, index: int) -> str: ...

    @abstractmethod
    def torch_device(self, index: int) -> torch.device: ...

    @abstractmethod
    def synchronize(self, index: int | None = None) -> None:
        """Wait until queued work on the device has finished (timing boundaries)."""

    @abstractmethod
    def memory_total(self, index: int) -> int:
        """Bytes of memory the device reports (inventory, the capacity check's nominal)."""

    @abstractmethod
    def allocation_limit(self, index: int) -> int:
        """Bytes a probe may try to allocate on the device without harming the host."""

    def scratch_limit(self, index: int) -> int:
        """Bytes a measurement's short-lived buffers (the bandwidth arrays) may take at once."""
        return self.allocation_limit(index)

    def driver_version(self) -> str | None:
        return None

    def runtime_version(self) -> str | None:
        return None

    def device_ids(self, index: int) -> DeviceIds:
        return DeviceIds()

    def devices(self) -> list[int]:
        return list(range(self.device_count()))

    def torch_dtype(self, name: str) -> torch.dtype:
        """The torch dtype of a catalog dtype name on this device (fp8 flavours differ by vendor)."""
        return TORCH_DTYPES[name]

    def trim(self) -> None:
        """Return cached, unused device memory to the driver before measuring capacity."""
        return None

    # -- primitives the checks measure through -------------------------------------------------
    def gemm_kernels(self, dtype: torch.dtype) -> tuple[str, ...]:
        """The GEMM kernels `matmul` offers for operands of `dtype`, the default first.

        The GEMM performance check measures each and reports the fastest; every other
        caller uses the default.
        """
        return (DEFAULT_KERNEL,)

    def matmul(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None,
               kernel: str | None = None) -> torch.Tensor:
        """One dense GEMM; fp8 and int8 use the scaled/integer kernels (fp32/int32 results).

        `out` (2-D operands only) receives the result, so a timed loop allocates nothing.
        `kernel` is one of `gemm_kernels(a.dtype)`; None is the default.
        """
        if kernel not in (None, DEFAULT_KERNEL):
            raise unknown_kernel(self.kind, "GEMM", kernel, self.gemm_kernels(a.dtype))
        if a.dtype in (torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e4m3fnuz):
            one = torch.ones((), dtype=torch.float32, device=a.device)
            # _scaled_mm wants the second operand column-major; operands made for it already are
            # (checks.function.gemm_operands), others are transposed here, inside the timed call.
            b = b if b.t().is_contiguous() else b.t().contiguous().t()
            if out is None:
                return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.float32)
            return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.float32, out=out)
        if a.dtype is torch.int8:
            return torch._int_mm(a, b) if out is None else torch._int_mm(a, b, out=out)
        return a @ b if out is None else torch.mm(a, b, out=out)

    def matmul_repeated(self, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, repeats: int,
                        kernel: str | None = None) -> None:
        """`repeats` GEMMs into `out` back to back: a timed loop (a kernel may run it without
        returning to Python between GEMMs)."""
        for _ in range(repeats):
            self.matmul(a, b, out, kernel)

    def matmul_output(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """An uninitialised tensor `matmul(a, b, out=...)` can write its result into."""
        dtype = {torch.int8: torch.int32}.get(a.dtype, torch.float32 if a.element_size() == 1 else a.dtype)
        return torch.empty(a.shape[0], b.shape[1], dtype=dtype, device=a.device)

    def copy_kernels(self) -> tuple[str, ...]:
        """The copy kernels `copy_` offers, the default first (the bandwidth check measures each)."""
        return (DEFAULT_KERNEL,)

    def copy_(self, dst: torch.Tensor, src: torch.Tensor, kernel: str | None = None) -> None:
        """Device memory copy (STREAM copy): reads `src`, writes `dst`; `kernel` is one of `copy_kernels()`
        (None: the default)."""
        if kernel not in (None, DEFAULT_KERNEL):
            raise unknown_kernel(self.kind, "copy", kernel, self.copy_kernels())
        dst.copy_(src)

    def triad(self, out: torch.Tensor, b: torch.Tensor, c: torch.Tensor, scalar: float) -> None:
        """STREAM triad `out = b + scalar * c`: two reads and one write per element."""
        torch.add(b, c, alpha=scalar, out=out)

    def empty(self, numel: int, dtype: torch.dtype, index: int) -> torch.Tensor:
        """Uninitialized device memory, as an allocator hands it out; OOM is `DeviceOutOfMemoryError`."""
        try:
            return torch.empty(numel, dtype=dtype, device=self.torch_device(index))
        except (RuntimeError, MemoryError) as exc:
            if isinstance(exc, MemoryError) or is_out_of_memory(exc):
                raise DeviceOutOfMemoryError(f"{self.kind}:{index}: cannot allocate {numel} x {dtype}") from None
            raise

    def free(self, tensor: torch.Tensor) -> None:
        """Give memory back to the device (the caller drops its reference)."""
        del tensor

    def compute(self) -> AbstractContextManager[None]:
        """The scope of device compute (models, GEMMs); the fault layer perturbs what runs in it."""
        return nullcontext()

    @contextmanager
    def session(self, check_id: str) -> Iterator[None]:
        """Entered by the runner around one check's run, in the check's worker thread."""
        yield

    def spec(self) -> BackendSpec:
        return BackendSpec(kind=self.kind)

    def close(self) -> None:
        """Release what the backend holds (NVML handles, fault pools); the CPU holds nothing."""
        return None

    def nvml(self) -> Nvml | None:
        """NVML with one handle per device, in device order, where `pynvml` works (CUDA on NVIDIA)."""
        return None

    # -- inventory -------------------------------------------------------------------------------
    def inventory(self) -> Inventory:
        devices: list[DeviceInfo] = []
        for index in self.devices():
            ids = self.device_ids(index)
            devices.append(DeviceInfo(
                index=index, name=self.device_name(index)[:253], memory_bytes=self.memory_total(index),
                serial=ids.serial, uuid=ids.uuid, bus_id=ids.bus_id,
            ))
        return Inventory(
            hostname=socket.gethostname()[:253],
            device_type=self.kind,
            vendor=self.vendor[:253],
            model=devices[0].name if devices else "",
            count=len(devices),
            devices=devices,
            driver_version=_short(self.driver_version()),
            runtime_version=_short(self.runtime_version()),
            framework_version=f"torch {torch.__version__}",
            probe_version=__version__,
            python_version=platform.python_version(),
            kernel=_short(os.uname().release if hasattr(os, "uname") else sys.platform),
        )


def _short(text: str | None) -> str | None:
    return text[:253] if text else None

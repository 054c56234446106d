"""Device backends: open the one `--device` names (or detect it), wrapped in the fault layer.

`open_backend` is the single way the runner, and the child processes of checks such as
`sec.residual`, obtain a device; vendor stacks are imported only for the kind asked for.
"""

from __future__ import annotations

from accelqual_probes.devices.base import (
    ACCELERATOR_KINDS,
    DEVICE_KINDS,
    TORCH_DTYPES,
    BackendSpec,
    DeviceBackend,
    DeviceOutOfMemoryError,
    DeviceUnavailableError,
    is_out_of_memory,
)
from accelqual_probes.faults import FaultPlan

__all__ = [
    "ACCELERATOR_KINDS",
    "DEVICE_KINDS",
    "TORCH_DTYPES",
    "BackendSpec",
    "DeviceBackend",
    "DeviceOutOfMemoryError",
    "DeviceUnavailableError",
    "detect_kind",
    "is_out_of_memory",
    "open_backend",
    "reopen",
    "with_faults",
]


def _open_plain(kind: str, cpu_threads: int | None = None) -> DeviceBackend:
    if kind == "cpu":
        from accelqual_probes.devices.cpu import CpuBackend

        return CpuBackend(threads=cpu_threads)
    if kind not in ACCELERATOR_KINDS:
        raise DeviceUnavailableError(f"unknown device {kind!r}; devices: auto, {', '.join(DEVICE_KINDS)}")
    if kind == "cuda":
        from accelqual_probes.devices.accelerator import CudaBackend

        return CudaBackend()
    from accelqual_probes.devices.accelerator import TorchAcceleratorBackend

    return TorchAcceleratorBackend(kind)


def detect_kind() -> str:
    """The first accelerator kind with a visible device, else `cpu` (`--device auto`)."""
    from accelqual_probes.devices.accelerator import device_module, plugin_present

    for kind in ACCELERATOR_KINDS:
        if not plugin_present(kind):
            continue
        try:
            module = device_module(kind)
            if module.is_available() and module.device_count() > 0:
                return kind
        except Exception:  # a broken vendor stack: keep looking, cpu is the fallback
            continue
    return "cpu"


def open_backend(kind: str, cpu_threads: int | None = None) -> DeviceBackend:
    """The backend of `kind` (`auto` detects an accelerator, else the CPU).

    Raises `DeviceUnavailableError` with a one-line reason when the kind is unknown or absent.
    """
    resolved = detect_kind() if kind == "auto" else kind
    return _open_plain(resolved, cpu_threads)


def with_faults(backend: DeviceBackend, faults: FaultPlan) -> DeviceBackend:
    """`backend` behind the fault layer when faults are planned (unchanged otherwise)."""
    if faults.empty:
        return backend
    from accelqual_probes.devices.faulty import FaultyBackend

    return FaultyBackend(backend, faults)


def reopen(spec: BackendSpec) -> DeviceBackend:
    """The backend a parent process described with `spec()`, in a child process."""
    backend = _open_plain(spec.kind, spec.cpu_threads)
    if spec.faults.empty:
        return backend
    from accelqual_probes.devices.faulty import FaultyBackend

    return FaultyBackend(backend, spec.faults, owns_pool=False)

"""What the CUDA-only checks share: NVML access and the node's peer cards with NCCL.

Each helper raises `NotApplicableError` with the reason when its subject is missing, so
the calling check is skipped on other devices, on single-card nodes or without NVML.
"""

from __future__ import annotations

import importlib
from typing import Any

from accelqual_probes.devices.nvml import Nvml
from accelqual_probes.evidence import NotApplicableError
from accelqual_probes.registry import CheckContext


def require_cuda(ctx: CheckContext) -> None:
    if ctx.device.kind != "cuda":
        raise NotApplicableError(f"implemented for CUDA devices; this run is on {ctx.device.kind}")


def nvml_or_skip(ctx: CheckContext, what: str) -> Nvml:
    """NVML for a CUDA device, or skip: `what` names the value that would be unreadable."""
    require_cuda(ctx)
    nvml = ctx.device.nvml()
    if nvml is None:
        raise NotApplicableError(f"NVML (pynvml) is not available, so {what} is not readable")
    return nvml


def cuda_peers(ctx: CheckContext) -> list[int]:
    """The node's CUDA devices when there are at least two of them."""
    require_cuda(ctx)
    devices = ctx.devices
    if len(devices) < 2:
        raise NotApplicableError(f"needs at least 2 devices; {len(devices)} visible")
    return devices


def nccl() -> Any:
    """`torch.cuda.nccl` (single-process collectives over all local cards); an untyped module."""
    return importlib.import_module("torch.cuda.nccl")

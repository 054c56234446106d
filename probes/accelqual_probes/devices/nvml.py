"""Optional NVML access (`pynvml` from nvidia-ml-py): serials, link state, ECC, clocks, power.

Never required: when `pynvml` is missing or NVML cannot initialise, every caller gets
None and the checks that need NVML skip with that reason. Handles are matched to CUDA
device indices by UUID, because CUDA and NVML may enumerate devices in different
orders (CUDA_DEVICE_ORDER, CUDA_VISIBLE_DEVICES).
"""

from __future__ import annotations

import importlib
from typing import Any


class Nvml:
    """An initialised NVML library and the handles of the CUDA-visible devices."""

    def __init__(self, lib: Any, handles: list[Any]) -> None:
        self.lib = lib
        self.handles = handles

    def call(self, name: str, *args: Any) -> Any:
        """`lib.<name>(*args)`, or None when the call is unsupported on this device/driver."""
        function = getattr(self.lib, name, None)
        if function is None:
            return None
        try:
            return function(*args)
        except Exception:  # NVMLError_NotSupported and friends: the value is simply not readable
            return None

    def close(self) -> None:
        self.call("nvmlShutdown")


def text(value: Any) -> str | None:
    """NVML returns bytes in old bindings, str in new ones."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def open_nvml(cuda_uuids: list[str | None]) -> Nvml | None:
    """NVML with one handle per CUDA device (by UUID, else by index), or None."""
    try:
        lib = importlib.import_module("pynvml")
        lib.nvmlInit()
    except Exception:
        return None
    handles: list[Any] = []
    for index, uuid in enumerate(cuda_uuids):
        handle = None
        if uuid:
            for candidate in (uuid, f"GPU-{uuid}"):
                try:
                    handle = lib.nvmlDeviceGetHandleByUUID(candidate)
                    break
                except Exception:
                    continue
        if handle is None:
            try:
                handle = lib.nvmlDeviceGetHandleByIndex(index)
            except Exception:
                handle = None
        handles.append(handle)
    return Nvml(lib, handles)

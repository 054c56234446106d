"""Accelerator backends over torch's device modules: cuda (NVIDIA and ROCm), npu, mlu, xpu, musa.

All of them expose the same `torch.<kind>` API (`device_count`, `synchronize`,
`get_device_name`, `get_device_properties`, `empty_cache`), so one class serves them;
the vendor's torch plugin (`torch_npu`, `torch_mlu`, `torch_musa`) is imported only
when that kind is asked for or probed by `--device auto`. CUDA adds NVML identities
and versions where `pynvml` is importable.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from accelqual_probes.devices.base import BackendSpec, DeviceBackend, DeviceIds, DeviceUnavailableError
from accelqual_probes.devices.nvml import Nvml, open_nvml, text

#: torch plugin module that registers each kind with torch (None: built into torch).
PLUGINS: dict[str, str | None] = {"cuda": None, "npu": "torch_npu", "mlu": "torch_mlu", "xpu": None,
                                  "musa": "torch_musa"}
VENDORS = {"cuda": "NVIDIA", "npu": "Huawei", "mlu": "Cambricon", "xpu": "Intel", "musa": "Moore Threads"}
#: Share of a device's memory a probe may allocate: the rest is left to the runtime's own needs.
ACCELERATOR_ALLOCATION_SHARE = 0.95


def plugin_present(kind: str) -> bool:
    """Whether the kind's torch plugin is installed, found without importing it."""
    plugin = PLUGINS.get(kind)
    return plugin is None or importlib.util.find_spec(plugin) is not None


def device_module(kind: str) -> ModuleType:
    """`torch.<kind>` after importing the vendor plugin; `DeviceUnavailableError` when absent."""
    plugin = PLUGINS.get(kind)
    if plugin is not None:
        try:
            importlib.import_module(plugin)
        except Exception as exc:  # a broken vendor stack is as absent as a missing one
            raise DeviceUnavailableError(f"{kind}: cannot import {plugin}: {str(exc).splitlines()[0][:160]}") from None
    module = getattr(torch, kind, None)
    if not isinstance(module, ModuleType):
        raise DeviceUnavailableError(f"{kind}: this torch build has no torch.{kind}")
    return module


class TorchAcceleratorBackend(DeviceBackend):
    """Devices of one accelerator kind, driven through `torch.<kind>`."""

    accelerator = True

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.vendor = VENDORS.get(kind, kind)
        self.module = device_module(kind)
        try:
            available = bool(self.module.is_available()) and int(self.module.device_count()) > 0
        except Exception as exc:
            raise DeviceUnavailableError(f"{kind}: {str(exc).splitlines()[0][:160]}") from None
        if not available:
            raise DeviceUnavailableError(f"{kind}: no {kind} device is visible to this process")

    def device_count(self) -> int:
        return int(self.module.device_count())

    def device_name(self, index: int) -> str:
        return str(self.module.get_device_name(index))

    def torch_device(self, index: int) -> torch.device:
        return torch.device(self.kind, index)

    def synchronize(self, index: int | None = None) -> None:
        indices = self.devices() if index is None else [index]
        for i in indices:
            self.module.synchronize(i)

    def _properties(self, index: int) -> Any:
        return self.module.get_device_properties(index)

    def memory_total(self, index: int) -> int:
        try:
            return int(self._properties(index).total_memory)
        except Exception:
            return int(self.module.mem_get_info(index)[1])

    def allocation_limit(self, index: int) -> int:
        return int(self.memory_total(index) * ACCELERATOR_ALLOCATION_SHARE)

    def free(self, tensor: torch.Tensor) -> None:
        del tensor
        # Return cached blocks to the driver, so the next allocation (or process) really
        # goes through the device allocator.
        self.trim()

    def trim(self) -> None:
        empty_cache = getattr(self.module, "empty_cache", None)
        if empty_cache is not None:
            empty_cache()

    def runtime_version(self) -> str | None:
        version = getattr(torch.version, self.kind, None)
        return f"{self.kind} {version}" if version else None

    def spec(self) -> BackendSpec:
        return BackendSpec(kind=self.kind)


class CudaBackend(TorchAcceleratorBackend):
    """NVIDIA (CUDA) and AMD (ROCm/HIP) GPUs: torch reports both as `cuda`."""

    def __init__(self) -> None:
        super().__init__("cuda")
        self.rocm = bool(getattr(torch.version, "hip", None))
        self.vendor = "AMD" if self.rocm else "NVIDIA"
        self._nvml: Nvml | bool | None = False  # False: not opened yet

    def nvml(self) -> Nvml | None:
        if self._nvml is False:
            # ROCm GPUs are not NVML devices (amdsmi would be their equivalent).
            self._nvml = None if self.rocm else open_nvml([self._uuid(i) for i in self.devices()])
        if isinstance(self._nvml, Nvml) and any(h is not None for h in self._nvml.handles):
            return self._nvml
        return None

    def _uuid(self, index: int) -> str | None:
        uuid = getattr(self._properties(index), "uuid", None)
        return str(uuid) if uuid is not None else None

    def driver_version(self) -> str | None:
        nvml = self.nvml()
        if nvml is not None:
            version = text(nvml.call("nvmlSystemGetDriverVersion"))
            if version:
                return version
        if self.rocm:
            try:
                return "amdgpu " + Path("/sys/module/amdgpu/version").read_text().strip()
            except OSError:
                return None
        return None

    def torch_dtype(self, name: str) -> torch.dtype:
        # MI300-class GPUs (gfx94x) implement the "fnuz" fp8 variant, not OCP e4m3.
        if name == "fp8" and self.rocm:
            arch = str(getattr(self._properties(0), "gcnArchName", ""))
            if arch.startswith("gfx94"):
                return torch.float8_e4m3fnuz
        return super().torch_dtype(name)

    def runtime_version(self) -> str | None:
        if self.rocm:
            return f"HIP {torch.version.hip}"
        return f"CUDA {torch.version.cuda}" if torch.version.cuda else None

    def device_ids(self, index: int) -> DeviceIds:
        nvml = self.nvml()
        handle = nvml.handles[index] if nvml is not None and index < len(nvml.handles) else None
        if nvml is not None and handle is not None:
            pci = nvml.call("nvmlDeviceGetPciInfo", handle)
            return DeviceIds(
                serial=text(nvml.call("nvmlDeviceGetSerial", handle)),
                uuid=text(nvml.call("nvmlDeviceGetUUID", handle)),
                bus_id=text(getattr(pci, "busId", None)),
            )
        props = self._properties(index)
        bus = getattr(props, "pci_bus_id", None)
        domain = getattr(props, "pci_domain_id", None)
        device = getattr(props, "pci_device_id", None)
        bus_id = f"{domain:08x}:{bus:02x}:{device:02x}.0" if None not in (bus, domain, device) else None
        return DeviceIds(uuid=self._uuid(index), bus_id=bus_id)

    def close(self) -> None:
        if isinstance(self._nvml, Nvml):
            self._nvml.close()
        self._nvml = None

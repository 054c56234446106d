"""The host's CPU and memory as /proc describes them: for the CPU backend's inventory and the benchmarks.

Torch-free, so that code which must not load torch (the control-plane benchmark and its
calibration process, the document generator) reads the machine the same way the probe does.
"""

from __future__ import annotations

import platform
from pathlib import Path

_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}


def read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> tuple[str, str]:
    """(vendor, model name) of the first CPU in /proc/cpuinfo; platform values as fallback."""
    vendor, model = "", ""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "vendor_id" and not vendor:
            vendor = _VENDORS.get(value, value)
        elif key in ("model name", "Model", "cpu model") and not model:
            model = value
        elif key == "CPU implementer" and not vendor:
            vendor = "ARM"
    return vendor or platform.machine(), model or platform.processor() or platform.machine() or "cpu"


def read_meminfo(path: Path = Path("/proc/meminfo")) -> dict[str, int]:
    """/proc/meminfo in bytes (`MemTotal`, `MemAvailable`, ...)."""
    out: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def describe_cpu() -> str:
    """"Vendor model" of this host's CPU, without repeating the vendor when the model name starts with it."""
    vendor, model = read_cpuinfo()
    return model if model.lower().startswith(vendor.lower()) else f"{vendor} {model}"

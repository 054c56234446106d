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


def last_level_cache_bytes(root: Path = Path("/sys/devices/system/cpu")) -> int | None:
    """Bytes of last-level cache on this host, summed over its instances (sysfs), or None if unknown.

    What the kernel reports per cache instance, which on AMD CPUs is one core complex's L3:
    CPUID's figure (glibc's, `getconf LEVEL3_CACHE_SIZE`) can be the whole socket's, ten
    times larger on a virtual machine that sees two cores.
    """
    instances: dict[tuple[int, str], int] = {}
    for index in root.glob("cpu[0-9]*/cache/index[0-9]*"):
        try:
            level = int((index / "level").read_text().strip())
            kind = (index / "type").read_text().strip()
            shared = (index / "shared_cpu_list").read_text().strip()
            size = _size_bytes((index / "size").read_text().strip())
        except (OSError, ValueError):
            continue
        if kind in ("Unified", "Data") and size:
            instances[(level, shared)] = size
    if not instances:
        return None
    top = max(level for level, _ in instances)
    return sum(size for (level, _), size in instances.items() if level == top)


def _size_bytes(text: str) -> int:
    """A sysfs cache size ("32768K", "1M", "512") in bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)

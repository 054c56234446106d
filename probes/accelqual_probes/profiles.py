"""`CardProfile`: a card model's nominal specs and the pass criteria derived from them.

The same model is the spec of the `CardProfile` custom resource and the file format
of `accelqual probe --profile PATH`. Built-in profiles carry vendor datasheet values
(dense, no sparsity). `cpu-reference` is special: its performance limits are
fractions of a reference measurement taken on the same machine in the same run, so
it holds on any CPU (CI runners, laptops, the simulated fleet).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from accelqual_probes.catalog import BY_ID, Basis, CheckSpec
from accelqual_probes.schema import CHECK_ID_PATTERN, FiniteFloat, Threshold
from accelqual_probes.thresholds import ThresholdRule, resolve

PROFILE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

#: PCIe per-lane payload bandwidth in GB/s by generation (after line encoding).
PCIE_LANE_GBS = {3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class HostLink(_Model):
    generation: Annotated[int, Field(ge=1, le=7)]
    width: Annotated[int, Field(ge=1, le=32)]

    @property
    def gbps(self) -> float:
        return PCIE_LANE_GBS.get(self.generation, 0.0) * self.width


class StackPolicy(_Model):
    """Allow- and deny-lists for versions (`compat.stack`, `sec.firmware`); regular expressions."""

    allowed_drivers: list[Annotated[str, Field(max_length=128)]] = []
    denied_drivers: list[Annotated[str, Field(max_length=128)]] = []
    min_framework: Annotated[str, Field(max_length=32)] | None = None


class CardProfileSpec(_Model):
    """Nominal specs of one card model and the per-check limits applied to it."""

    display_name: Annotated[str, Field(max_length=128)]
    vendor: Annotated[str, Field(max_length=64)]
    #: torch device type the probe runs on (`cuda` also for ROCm).
    device_type: Annotated[str, Field(pattern=r"^(cpu|cuda|npu|mlu|xpu|musa)$")]
    #: Extended resource the probe pod requests (all of them on the node).
    resource_name: Annotated[str, Field(max_length=253)] | None = None
    #: Case-insensitive substrings of a device name or node product label that select this profile.
    match: list[Annotated[str, Field(max_length=128)]] = []
    peak_tflops: dict[Annotated[str, Field(pattern=r"^(fp64|fp64_tensor|fp32|tf32|fp16|bf16|fp8|int8)$")],
                      Annotated[FiniteFloat, Field(gt=0)]] = {}
    memory_gb: Annotated[FiniteFloat, Field(gt=0)] | None = None
    memory_bandwidth_gbs: Annotated[FiniteFloat, Field(gt=0)] | None = None
    host_link: HostLink | None = None
    interconnect_gbs: Annotated[FiniteFloat, Field(gt=0)] | None = None
    tdp_watts: Annotated[FiniteFloat, Field(gt=0)] | None = None
    #: Performance limits are fractions of an in-run reference measurement, not of nominal values.
    relative_to_reference: bool = False
    stack: StackPolicy = StackPolicy()
    thresholds: dict[Annotated[str, Field(pattern=CHECK_ID_PATTERN)], ThresholdRule] = {}

    def basis(self, check: CheckSpec) -> tuple[float | None, str]:
        """The nominal value a check's fractions refer to, and its name for reasons."""
        if check.basis is Basis.PEAK and check.dtype is not None:
            peak = self.peak_tflops.get(check.dtype)
            if check.dtype == "fp64" and "fp64_tensor" in self.peak_tflops:
                peak = self.peak_tflops["fp64_tensor"]
            return peak, f"nominal {check.dtype} peak"
        if check.basis is Basis.MEMORY:
            return self.memory_gb, "nominal memory"
        if check.basis is Basis.MEMBW:
            return self.memory_bandwidth_gbs, "nominal bandwidth"
        if check.basis is Basis.HOSTLINK:
            return (self.host_link.gbps if self.host_link else None), "nominal host link"
        if check.basis is Basis.INTERCONNECT:
            return self.interconnect_gbs, "nominal interconnect"
        return None, ""

    def rule(self, check_id: str) -> ThresholdRule:
        """The catalog's default rule for `check_id` with this profile's overrides applied."""
        spec = BY_ID.get(check_id)
        default = spec.default_rule if spec is not None else ThresholdRule()
        return default.merged(self.thresholds.get(check_id))

    def threshold(self, check_id: str, basis: float | None = None, basis_name: str = "") -> Threshold:
        """The concrete threshold for a check; `basis` overrides the nominal (reference profiles)."""
        spec = BY_ID[check_id]
        if basis is None:
            basis, basis_name = self.basis(spec)
        return resolve(spec.metric, spec.unit, self.rule(check_id), basis, basis_name)


class NamedProfile(_Model):
    name: Annotated[str, Field(max_length=63, pattern=PROFILE_NAME_PATTERN)]
    spec: CardProfileSpec


def _peaks(fp64: float, fp64_tensor: float | None, fp32: float, tf32: float | None, half: float,
           fp8: float | None, int8: float | None) -> dict[str, float]:
    values = {"fp64": fp64, "fp64_tensor": fp64_tensor, "fp32": fp32, "tf32": tf32, "fp16": half,
              "bf16": half, "fp8": fp8, "int8": int8}
    return {k: v for k, v in values.items() if v is not None}


# Vendor nominal values, dense (DESIGN.md section 6). INT8 is TOPS, stored with the TFLOPS.
BUILTIN: dict[str, CardProfileSpec] = {
    "a100-80gb-sxm": CardProfileSpec(
        display_name="NVIDIA A100 80GB SXM", vendor="NVIDIA", device_type="cuda", resource_name="nvidia.com/gpu",
        match=["A100"], peak_tflops=_peaks(9.7, 19.5, 19.5, 156, 312, None, 624), memory_gb=80,
        memory_bandwidth_gbs=2039, host_link=HostLink(generation=4, width=16), interconnect_gbs=600,
        tdp_watts=400,
    ),
    "h100-sxm": CardProfileSpec(
        display_name="NVIDIA H100 SXM", vendor="NVIDIA", device_type="cuda", resource_name="nvidia.com/gpu",
        match=["H100"], peak_tflops=_peaks(34, 67, 67, 494.5, 989.5, 1979, 1979), memory_gb=80,
        memory_bandwidth_gbs=3350, host_link=HostLink(generation=5, width=16), interconnect_gbs=900,
        tdp_watts=700,
    ),
    "h200-sxm": CardProfileSpec(
        display_name="NVIDIA H200 SXM", vendor="NVIDIA", device_type="cuda", resource_name="nvidia.com/gpu",
        match=["H200"], peak_tflops=_peaks(34, 67, 67, 494.5, 989.5, 1979, 1979), memory_gb=141,
        memory_bandwidth_gbs=4800, host_link=HostLink(generation=5, width=16), interconnect_gbs=900,
        tdp_watts=700,
    ),
    "mi300x": CardProfileSpec(
        display_name="AMD Instinct MI300X", vendor="AMD", device_type="cuda", resource_name="amd.com/gpu",
        match=["MI300X"], peak_tflops=_peaks(81.7, 163.4, 163.4, 653.7, 1307.4, 2614.9, 2614.9), memory_gb=192,
        memory_bandwidth_gbs=5300, host_link=HostLink(generation=5, width=16), tdp_watts=750,
    ),
    "ascend-910b2": CardProfileSpec(
        display_name="Huawei Ascend 910B2", vendor="Huawei", device_type="npu", resource_name="huawei.com/Ascend910",
        match=["910B2", "Ascend910B2"], peak_tflops={"fp16": 354.0, "bf16": 354.0}, memory_gb=64,
        memory_bandwidth_gbs=1600,
    ),
    "cpu-reference": CardProfileSpec(
        display_name="CPU reference device", vendor="any", device_type="cpu", match=["cpu"],
        relative_to_reference=True,
        # Fractions of this machine's own reference measurement (numpy BLAS for GEMM, a plain
        # numpy copy for bandwidth), taken in the same run. A healthy CPU sits near 1.0 for
        # fp32 and copies; torch's fp64 GEMM (MKL) reaches 0.6-0.9 of OpenBLAS on AMD hosts.
        # The floors leave room for noisy shared runners and catch a device slowed by half.
        # CPUs without native bf16/fp16/int8/fp8 GEMM run them through fallback kernels at
        # 1-30% of the fp32 reference (0.7% seen with three probes on two cores): those
        # floors (fractions of the fp32 reference, no warning band) only catch a path that
        # is broken or pathologically slow.
        thresholds={
            "perf.gemm.fp64": ThresholdRule(min_fraction=0.35, warn_fraction=0.5),
            "perf.gemm.fp32": ThresholdRule(min_fraction=0.5, warn_fraction=0.7),
            "perf.gemm.bf16": ThresholdRule(min_fraction=0.002, warn_fraction=None),
            "perf.gemm.fp16": ThresholdRule(min_fraction=0.002, warn_fraction=None),
            "perf.gemm.fp8": ThresholdRule(min_fraction=0.002, warn_fraction=None),
            "perf.gemm.int8": ThresholdRule(min_fraction=0.002, warn_fraction=None),
            "perf.membw": ThresholdRule(min_fraction=0.4, warn_fraction=0.6),
            "gen.memory.capacity": ThresholdRule(min_fraction=0.9),
        },
    ),
}

DEFAULT_PROFILE = "cpu-reference"


class ProfileError(ValueError):
    """A profile could not be found or loaded; the message is one line."""


def builtin(name: str) -> CardProfileSpec:
    try:
        return BUILTIN[name]
    except KeyError:
        raise ProfileError(f"unknown profile {name!r}; built-in profiles: {', '.join(sorted(BUILTIN))}") from None


def auto_select(device_name: str, profiles: dict[str, CardProfileSpec] | None = None) -> str | None:
    """The profile whose `match` substrings best fit a device name or node product label.

    The longest matching substring wins, so `H100 NVL` can have its own profile beside `H100`.
    """
    candidates = profiles if profiles is not None else BUILTIN
    needle = device_name.lower()
    best: tuple[int, str] | None = None
    for name, spec in candidates.items():
        for pattern in spec.match:
            if pattern and pattern.lower() in needle and (best is None or len(pattern) > best[0]):
                best = (len(pattern), name)
    return best[1] if best else None


def load_file(path: Path) -> NamedProfile:
    """Load a profile from YAML/JSON: either `{name, spec}` or a whole `CardProfile` object."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read profile {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"profile {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"profile {path} is not a mapping")
    if "metadata" in data:
        data = {"name": (data.get("metadata") or {}).get("name"), "spec": data.get("spec")}
    try:
        return NamedProfile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ProfileError(f"profile {path} is invalid at {where}: {first['msg']}") from None


def name_is_valid(name: str) -> bool:
    return bool(re.match(PROFILE_NAME_PATTERN, name)) and len(name) <= 63

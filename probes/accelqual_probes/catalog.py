"""The catalog of built-in checks and suites: ids, categories, primary metrics and default limits.

Torch-free, so the operator can validate `checks`/`skipChecks` of a Qualification
and know which metric of each check to compare across a fleet without importing
the implementations. The implementations register against these ids (`registry`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from accelqual_probes.schema import Category
from accelqual_probes.thresholds import ThresholdRule


class Suite(StrEnum):
    QUICK = "quick"
    STANDARD = "standard"
    FULL = "full"


class Basis(StrEnum):
    """What a check's fraction limits are fractions of."""

    NONE = "none"
    PEAK = "peak"  # profile.peakTflops[dtype]
    MEMORY = "memory"  # profile.memoryGB
    MEMBW = "membw"  # profile.memoryBandwidthGBs
    HOSTLINK = "hostlink"  # derived from profile.hostLink
    INTERCONNECT = "interconnect"  # profile.interconnectGBs
    REFERENCE = "reference"  # an in-run reference measurement on the same machine


@dataclass(frozen=True)
class CheckSpec:
    """What the operator and the docs need to know about a check."""

    id: str
    category: Category
    title: str
    method: str
    #: The measurement compared with thresholds and, for `fleet_compare` checks, across nodes.
    metric: str = ""
    unit: str = ""
    basis: Basis = Basis.NONE
    default_rule: ThresholdRule = field(default_factory=ThresholdRule)
    #: Higher is better for the metric (throughput); False for latency-like metrics.
    higher_is_better: bool = True
    #: Performance-like checks whose metric is compared against the pool's peers.
    fleet_compare: bool = False
    suites: frozenset[Suite] = frozenset({Suite.STANDARD, Suite.FULL})
    accelerator_only: bool = False
    #: The dtype of a per-dtype check (`perf.gemm.bf16` -> "bf16").
    dtype: str | None = None


_ALL = frozenset({Suite.QUICK, Suite.STANDARD, Suite.FULL})
_STD = frozenset({Suite.STANDARD, Suite.FULL})
_FULL = frozenset({Suite.FULL})

GEMM_DTYPES = ("fp64", "fp32", "tf32", "fp16", "bf16", "fp8", "int8")
# Healthy-card fractions of nominal differ per dtype (public A100 runs: fp16 ~81%, fp32 ~98%).
_GEMM_MIN = {"fp64": 0.7, "fp32": 0.7, "tf32": 0.6, "fp16": 0.6, "bf16": 0.6, "fp8": 0.5, "int8": 0.5}
_QUICK_GEMM = {"fp32", "bf16"}


def _gemm(dtype: str) -> CheckSpec:
    return CheckSpec(
        id=f"perf.gemm.{dtype}",
        category=Category.PERFORMANCE,
        title=f"Dense GEMM throughput, {dtype}",
        method="sustained square matmul at the fastest of a few sizes, best of repeated timed rounds after warm-up",
        metric="tflops",
        unit="TFLOPS",
        basis=Basis.PEAK,
        default_rule=ThresholdRule(min_fraction=_GEMM_MIN[dtype], warn_fraction=_GEMM_MIN[dtype] + 0.1),
        fleet_compare=True,
        suites=_ALL if dtype in _QUICK_GEMM else _STD,
        dtype=dtype,
    )


CHECKS: tuple[CheckSpec, ...] = (
    # general
    CheckSpec("gen.inventory", Category.GENERAL, "Device inventory",
              "device count, model and driver compared with the node's expectation",
              metric="devices", unit="count", suites=_ALL),
    CheckSpec("gen.memory.capacity", Category.GENERAL, "Usable device memory",
              "allocate in chunks until failure or the bound, compare with nominal",
              metric="usable_gb", unit="GB", basis=Basis.MEMORY,
              default_rule=ThresholdRule(min_fraction=0.9), suites=_ALL),
    CheckSpec("gen.hostlink", Category.GENERAL, "Host link",
              "negotiated PCIe generation and width vs the profile", metric="link_width", unit="lanes",
              suites=_STD, accelerator_only=True),
    CheckSpec("gen.h2d", Category.GENERAL, "Host-to-device bandwidth",
              "pinned-memory copy host to device", metric="gbps", unit="GB/s", basis=Basis.HOSTLINK,
              default_rule=ThresholdRule(min_fraction=0.6), fleet_compare=True, suites=_STD,
              accelerator_only=True),
    CheckSpec("gen.d2h", Category.GENERAL, "Device-to-host bandwidth",
              "pinned-memory copy device to host", metric="gbps", unit="GB/s", basis=Basis.HOSTLINK,
              default_rule=ThresholdRule(min_fraction=0.6), fleet_compare=True, suites=_STD,
              accelerator_only=True),
    # function
    CheckSpec("func.dtypes", Category.FUNCTION, "GEMM numerics per dtype",
              "GEMM in each supported dtype vs an fp64 CPU reference, per-dtype tolerance",
              metric="max_rel_error", unit="", suites=_ALL),
    CheckSpec("func.ops", Category.FUNCTION, "Operator coverage",
              "common operators forward and backward vs a CPU reference", metric="ops_failed", unit="count",
              default_rule=ThresholdRule(max=0), suites=_STD),
    CheckSpec("func.p2p", Category.FUNCTION, "Peer access",
              "peer-to-peer access and copies among the node's cards", metric="pairs_failed", unit="count",
              default_rule=ThresholdRule(max=0), suites=_STD, accelerator_only=True),
    CheckSpec("func.collectives", Category.FUNCTION, "Collectives correctness",
              "all-reduce, all-gather and broadcast results across the node's cards",
              metric="errors", unit="count", default_rule=ThresholdRule(max=0), suites=_STD,
              accelerator_only=True),
    # performance
    *(_gemm(d) for d in GEMM_DTYPES),
    CheckSpec("perf.membw", Category.PERFORMANCE, "Device memory bandwidth",
              "STREAM-style copy and triad over buffers much larger than caches", metric="gbps",
              unit="GB/s", basis=Basis.MEMBW, default_rule=ThresholdRule(min_fraction=0.6, warn_fraction=0.7),
              fleet_compare=True, suites=_ALL),
    CheckSpec("perf.allreduce", Category.PERFORMANCE, "All-reduce bus bandwidth",
              "all-reduce across the node's cards, bus bandwidth", metric="busbw_gbps", unit="GB/s",
              basis=Basis.INTERCONNECT, default_rule=ThresholdRule(min_fraction=0.5), fleet_compare=True,
              suites=_STD, accelerator_only=True),
    CheckSpec("perf.launch", Category.PERFORMANCE, "Kernel launch latency",
              "median latency of tiny kernels", metric="launch_us", unit="us",
              default_rule=ThresholdRule(max=50.0), higher_is_better=False, suites=_STD),
    # compatibility
    CheckSpec("compat.stack", Category.COMPATIBILITY, "Software stack",
              "framework, driver and runtime versions vs the profile's allow-list", suites=_ALL),
    CheckSpec("compat.models", Category.COMPATIBILITY, "Model zoo",
              "a CNN, a transformer encoder and a decoder LM build, run and match reference numerics",
              metric="models_failed", unit="count", default_rule=ThresholdRule(max=0), suites=_STD),
    CheckSpec("compat.compile", Category.COMPATIBILITY, "Graph compilation",
              "torch.compile of a small model where the device supports it", suites=_FULL),
    # reliability
    CheckSpec("rel.stress", Category.RELIABILITY, "Sustained load",
              "repeated GEMM under load: throughput stability (CV) and silent data corruption",
              metric="mismatches", unit="count", default_rule=ThresholdRule(max=0), suites=_ALL),
    CheckSpec("rel.memtest", Category.RELIABILITY, "Device memory test",
              "write/read patterns over a large share of device memory", metric="bad_words",
              unit="count", default_rule=ThresholdRule(max=0), suites=_ALL),
    CheckSpec("rel.ecc", Category.RELIABILITY, "ECC counters",
              "uncorrectable error delta and retired pages where readable", metric="uncorrectable",
              unit="count", default_rule=ThresholdRule(max=0), suites=_STD, accelerator_only=True),
    CheckSpec("rel.thermal", Category.RELIABILITY, "Thermals under load",
              "temperature and throttle reasons while loaded", metric="temperature_c", unit="C",
              default_rule=ThresholdRule(max=90.0), higher_is_better=False, suites=_STD,
              accelerator_only=True),
    CheckSpec("rel.burnin", Category.RELIABILITY, "Burn-in",
              "long sustained mixed load with periodic result verification", metric="mismatches",
              unit="count", default_rule=ThresholdRule(max=0), suites=_FULL),
    # security
    CheckSpec("sec.residual", Category.SECURITY, "Residual memory",
              "a second process must not read what a first process left in device memory",
              metric="leaked_bytes", unit="bytes", default_rule=ThresholdRule(max=0), suites=_ALL),
    CheckSpec("sec.isolation", Category.SECURITY, "Partition isolation",
              "MIG/VF partitions cannot see each other's memory where partitions exist", suites=_STD,
              accelerator_only=True),
    CheckSpec("sec.privileges", Category.SECURITY, "Least privilege",
              "the probe runs without root, capabilities or an API token it does not need", suites=_STD),
    CheckSpec("sec.firmware", Category.SECURITY, "Firmware and driver lists",
              "firmware/driver versions vs the profile's allow- and deny-lists", suites=_STD),
    # training
    CheckSpec("train.step", Category.TRAINING, "Training steps",
              "a small decoder LM trained N steps: tokens/s, MFU, loss decreasing and on the reference "
              "trajectory", metric="tokens_per_s", unit="tokens/s", fleet_compare=True, suites=_ALL),
    CheckSpec("train.scaling", Category.TRAINING, "Data-parallel scaling",
              "scaling efficiency of data-parallel training across the node's cards",
              metric="efficiency", unit="", default_rule=ThresholdRule(min=0.7), suites=_STD,
              accelerator_only=True),
    # inference
    CheckSpec("infer.latency", Category.INFERENCE, "Inference latency",
              "p50/p99 latency at batch 1", metric="p99_ms", unit="ms", higher_is_better=False,
              fleet_compare=True, suites=_ALL),
    CheckSpec("infer.throughput", Category.INFERENCE, "Inference throughput",
              "samples/s at the best batch size", metric="samples_per_s", unit="samples/s",
              fleet_compare=True, suites=_ALL),
    CheckSpec("infer.accuracy", Category.INFERENCE, "Inference accuracy",
              "outputs vs the fp32 reference: top-1 agreement", metric="agreement", unit="",
              default_rule=ThresholdRule(min=0.99), suites=_ALL),
    CheckSpec("infer.efficiency", Category.INFERENCE, "Energy efficiency",
              "throughput per watt where power is readable", metric="samples_per_joule",
              unit="samples/J", suites=_STD, accelerator_only=True),
)

BY_ID: dict[str, CheckSpec] = {c.id: c for c in CHECKS}

#: Third-party checks (entry-point group `accelqual.checks`) must use this prefix,
#: so the operator can accept ids it has no catalog entry for without accepting typos.
EXTENSION_PREFIX = "ext."


def suite_checks(suite: Suite) -> list[str]:
    """Check ids of a suite, in catalog order."""
    return [c.id for c in CHECKS if suite in c.suites]


def select(suite: Suite, checks: list[str] | None = None, skip: list[str] | None = None) -> list[str]:
    """The ids to run: explicit `checks` if given (in their order), else the suite's; minus `skip`."""
    chosen = list(dict.fromkeys(checks)) if checks else suite_checks(suite)
    skipped = set(skip or ())
    return [c for c in chosen if c not in skipped]


def unknown_ids(ids: list[str]) -> list[str]:
    """Ids that are neither built-in nor namespaced as extensions."""
    return [i for i in ids if i not in BY_ID and not i.startswith(EXTENSION_PREFIX)]

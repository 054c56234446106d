"""Fault plans: which defects to inject into the device layer of a probe run, parsed from text.

`--inject FAULT` (repeatable) and the `ACCELQUAL_INJECT` environment variable
(comma-separated) name the faults; `FaultPlan.parse` validates them at the boundary.
The plan itself is inert and torch-free: `devices.faulty.FaultyBackend` applies it by
perturbing the backend's real primitives (compute ops, copies, allocation, device
count), so every fault is seen only through the measurement path of the check that
owns it. The simulated fleet injects faults this way into otherwise healthy nodes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from accelqual_probes import catalog

ENV_INJECT = "ACCELQUAL_INJECT"

#: Dtype names accepted by `bad-dtype=`; the same names as the catalog's GEMM dtypes.
FAULT_DTYPES = catalog.GEMM_DTYPES

#: Each fault's value syntax, for error messages and `--help`.
FAULT_SYNTAX: dict[str, str] = {
    "slow-compute": "slow-compute=F (0<F<1: compute throughput scaled to F)",
    "slow-memory": "slow-memory=F (0<F<1: memory bandwidth scaled to F)",
    "corrupt": "corrupt=RATE (0<RATE<=1: share of compute results with a flipped bit)",
    "missing-device": "missing-device (one device fewer than expected)",
    "memory-shortfall": "memory-shortfall=F (0<F<1: allocatable memory limited to F)",
    "bad-dtype": f"bad-dtype=DTYPE ({'|'.join(FAULT_DTYPES)}: wrong GEMM numerics in that dtype)",
    "residual-memory": "residual-memory (freed memory reaches the next process unscrubbed)",
    "hang": "hang=CHECK (that check never returns)",
}


class FaultSpecError(ValueError):
    """An `--inject` value could not be understood; the message is one line."""


@dataclass(frozen=True)
class FaultPlan:
    """The faults of one run; an empty plan leaves the device untouched."""

    slow_compute: float | None = None
    slow_memory: float | None = None
    corrupt: float | None = None
    missing_device: bool = False
    memory_shortfall: float | None = None
    bad_dtype: str | None = None
    residual_memory: bool = False
    hang: frozenset[str] = field(default_factory=frozenset)
    #: Directory through which a `residual-memory` allocator hands freed memory to the next
    #: process; set by the runner when it opens the device, shared by its child processes.
    residual_pool: str | None = None

    @property
    def empty(self) -> bool:
        return not self.labels()

    @property
    def perturbs_compute(self) -> bool:
        return self.slow_compute is not None or self.corrupt is not None or self.bad_dtype is not None

    def labels(self) -> list[str]:
        """The faults in their `--inject` spelling, for the report's `injectedFaults`."""
        out: list[str] = []
        if self.slow_compute is not None:
            out.append(f"slow-compute={self.slow_compute:g}")
        if self.slow_memory is not None:
            out.append(f"slow-memory={self.slow_memory:g}")
        if self.corrupt is not None:
            out.append(f"corrupt={self.corrupt:g}")
        if self.missing_device:
            out.append("missing-device")
        if self.memory_shortfall is not None:
            out.append(f"memory-shortfall={self.memory_shortfall:g}")
        if self.bad_dtype is not None:
            out.append(f"bad-dtype={self.bad_dtype}")
        if self.residual_memory:
            out.append("residual-memory")
        out.extend(f"hang={check_id}" for check_id in sorted(self.hang))
        return out

    def with_pool(self, path: str | None) -> FaultPlan:
        return replace(self, residual_pool=path)

    @classmethod
    def parse(cls, values: Iterable[str]) -> FaultPlan:
        """Build a plan from `--inject` values; raises `FaultSpecError` naming the bad value."""
        plan = cls()
        for raw in values:
            text = raw.strip()
            if not text:
                continue
            name, has_value, value = text.partition("=")
            name, value = name.strip(), value.strip()
            if name not in FAULT_SYNTAX:
                raise FaultSpecError(f"unknown fault {name!r}; faults: {', '.join(FAULT_SYNTAX)}")
            plan = _apply(plan, name, value if has_value else None, text)
        return plan

    @classmethod
    def from_sources(cls, cli_values: Iterable[str], environ: dict[str, str] | None = None) -> FaultPlan:
        """`--inject` values plus the comma-separated `ACCELQUAL_INJECT` of the environment."""
        env = os.environ if environ is None else environ
        from_env = [v for v in env.get(ENV_INJECT, "").split(",") if v.strip()]
        return cls.parse([*from_env, *cli_values])


def _apply(plan: FaultPlan, name: str, value: str | None, text: str) -> FaultPlan:
    flag_faults = {"missing-device", "residual-memory"}
    if name in flag_faults:
        if value is not None:
            raise FaultSpecError(f"fault {name!r} takes no value: {FAULT_SYNTAX[name]}")
        return replace(plan, missing_device=True) if name == "missing-device" else replace(plan, residual_memory=True)
    if value is None or not value:
        raise FaultSpecError(f"fault {name!r} needs a value: {FAULT_SYNTAX[name]}")
    if name == "bad-dtype":
        if value not in FAULT_DTYPES:
            raise FaultSpecError(f"bad-dtype {value!r} is not one of {', '.join(FAULT_DTYPES)}")
        return replace(plan, bad_dtype=value)
    if name == "hang":
        if catalog.unknown_ids([value]):
            raise FaultSpecError(f"hang={value}: unknown check id")
        return replace(plan, hang=plan.hang | {value})
    number = _number(text, value)
    if name == "corrupt":
        if not 0 < number <= 1:
            raise FaultSpecError(f"{text}: the rate must be in (0, 1]")
        return replace(plan, corrupt=number)
    if not 0 < number < 1:
        raise FaultSpecError(f"{text}: the factor must be in (0, 1)")
    if name == "slow-compute":
        return replace(plan, slow_compute=number)
    if name == "slow-memory":
        return replace(plan, slow_memory=number)
    return replace(plan, memory_shortfall=number)


def _number(text: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise FaultSpecError(f"{text}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise FaultSpecError(f"{text}: {value!r} is not a finite number")
    return number

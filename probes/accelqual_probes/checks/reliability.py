"""Reliability checks: sustained load with SDC detection, memory patterns, ECC, thermals, burn-in.

Silent data corruption is found by determinism: the same GEMM on the same operands
must give bit-identical results on every iteration and on every card of the node, so
any differing bit is a fault, however small its numeric effect. Memory is tested
with the classic patterns (solid, checkerboard, walking ones, address-derived).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from accelqual_probes.checks.function import gemm_operands
from accelqual_probes.checks.multicard import nvml_or_skip
from accelqual_probes.devices.base import DeviceOutOfMemoryError
from accelqual_probes.devices.nvml import Nvml
from accelqual_probes.evidence import Evidence
from accelqual_probes.registry import CheckContext, CheckParams, Sizing, check
from accelqual_probes.schema import Severity, Verdict
from accelqual_probes.thresholds import ThresholdRule, resolve

_BITS = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}


def bit_mismatches(result: torch.Tensor, golden: torch.Tensor) -> int:
    """Elements whose bits differ (NaN-safe: compares the raw words, not the values)."""
    view = _BITS[result.element_size()]
    return int(torch.count_nonzero(result.contiguous().view(view) != golden.contiguous().view(view)).item())


class StressParams(CheckParams):
    n: int = 4096
    dtype: str = "bf16"
    iterations: int = 50
    #: Seconds of GEMMs per iteration (the repeats are calibrated to it).
    iteration_s: float = 0.05
    #: Largest coefficient of variation of per-iteration throughput before it counts as unstable.
    max_cv: float = 0.15

    @classmethod
    def for_run(cls, sizing: Sizing) -> StressParams:
        if sizing.accelerator:
            return cls(n=4096, dtype="bf16", iterations=20 if sizing.quick else 100, iteration_s=0.05)
        return cls(n=256, dtype="fp32", iterations=10 if sizing.quick else 30, iteration_s=0.02)


@check("rel.stress", params=StressParams, timeout_s=300)
def stress(ctx: CheckContext, params: StressParams) -> Evidence:
    """Repeated GEMMs: bit-exact against the first result and across cards; throughput CV."""
    evidence = Evidence()
    mismatches: list[tuple[float, int | None]] = []
    cvs: list[tuple[float, int | None]] = []
    first_golden: torch.Tensor | None = None
    for index in ctx.devices:
        a, b = gemm_operands(ctx.device, index, params.dtype, params.n, seed=31)
        golden = ctx.device.matmul(a, b)
        ctx.device.synchronize(index)
        bad = 0
        if first_golden is None:
            first_golden = golden.cpu()
        else:
            bad += bit_mismatches(golden.cpu(), first_golden)
            if bad:
                evidence.note(f"device {index} differs from device {ctx.devices[0]} in {bad} elements")
        start = time.perf_counter()
        ctx.device.matmul(a, b)
        ctx.device.synchronize(index)
        repeats = max(1, int(params.iteration_s / max(time.perf_counter() - start, 1e-7)))
        rates: list[float] = []
        for _ in range(params.iterations):
            ctx.checkpoint()
            started = time.perf_counter()
            for _ in range(repeats):
                bad += bit_mismatches(ctx.device.matmul(a, b), golden)
            ctx.device.synchronize(index)
            rates.append(repeats / (time.perf_counter() - started))
        mean = sum(rates) / len(rates)
        cv = (sum((r - mean) ** 2 for r in rates) / len(rates)) ** 0.5 / mean
        mismatches.append((float(bad), index))
        cvs.append((cv, index))
        evidence.measure("mismatches", bad, "count", index)
        evidence.measure("cv", cv, "", index)
        evidence.measure("tflops", 2.0 * params.n**3 * mean / 1e12, "TFLOPS", index)
    verdict = evidence.judge(ctx.threshold(), mismatches, label="silent data corruption")
    if verdict is Verdict.FAIL:
        evidence.note(f"{int(sum(v for v, _ in mismatches))} result elements changed between identical GEMMs")
    # A CPU host is shared (other probes, the OS): unstable throughput is worth a warning
    # there, while on a dedicated accelerator it signals throttling and fails.
    severity = Severity.FAIL if ctx.device.accelerator else Severity.WARN
    cv_threshold = resolve("cv", "", ThresholdRule(max=params.max_cv), None, "stability limit")
    evidence.judge(cv_threshold.model_copy(update={"severity": severity}), cvs, label="throughput stability")
    return evidence


#: 32-bit test patterns: solid, checkerboards, walking ones.
PATTERNS = (0x00000000, 0xFFFFFFFF, 0xAAAAAAAA, 0x55555555, 0x00000001, 0x00000080, 0x00008000,
            0x00800000, 0x80000000)


def _signed(word: int) -> int:
    return word - (1 << 32) if word >= 1 << 31 else word


class MemtestParams(CheckParams):
    #: Share of the device's allocatable memory to test (accelerators).
    fraction: float = 0.5
    #: Bytes to test on a CPU host.
    cpu_bytes: int = 128 << 20
    chunk_words: int = 1 << 24

    @classmethod
    def for_run(cls, sizing: Sizing) -> MemtestParams:
        return cls(fraction=0.1 if sizing.quick else 0.5, cpu_bytes=(32 << 20) if sizing.quick else (128 << 20),
                   # Host scratch buffers pay first-touch faults: keep them small on a CPU.
                   chunk_words=(1 << 24) if sizing.accelerator else (1 << 20))


def _allocate_most(ctx: CheckContext, index: int, nbytes: int) -> torch.Tensor:
    """As large an int32 buffer as the device grants, halving from `nbytes` down to 1 MiB."""
    while True:
        try:
            return ctx.device.empty(nbytes // 4, torch.int32, index)
        except DeviceOutOfMemoryError:
            if nbytes <= 1 << 20:
                raise
            nbytes //= 2


#: Odd multiplier that spreads word addresses over distinct 31-bit values: unique within
#: any 2^31 consecutive words, and small enough that address x multiplier fits in int64.
_ADDRESS_MULTIPLIER = 40503


def _address_words(start: int, scratch: torch.Tensor, out: torch.Tensor, invert: bool) -> torch.Tensor:
    """The address-derived words of `[start, start + len(out))`, computed into `out` (int32).

    Addresses are computed in int64 (`scratch`): a buffer on a large card has more words
    than int32 can count.
    """
    torch.arange(start, start + out.numel(), dtype=torch.int64, out=scratch)
    scratch.bitwise_and_(0xFFFFFFFF).mul_(_ADDRESS_MULTIPLIER).bitwise_and_(0x7FFFFFFF)
    out.copy_(scratch)
    return out.bitwise_not_() if invert else out


def memtest_pass(buffer: torch.Tensor, chunk: int, sync: Callable[[], None],
                 checkpoint: Callable[[], None]) -> int:
    """Write and verify every pattern over `buffer`; returns the number of bad words.

    Scratch tensors are allocated once: fresh host allocations would pay page faults on
    every pattern and dominate the time on a CPU host.
    """
    bad = 0
    chunk = min(chunk, buffer.numel())
    mismatch = torch.empty(chunk, dtype=torch.bool, device=buffer.device)
    expected = torch.empty(chunk, dtype=torch.int32, device=buffer.device)
    scratch = torch.empty(chunk, dtype=torch.int64, device=buffer.device)

    def count(start: int, stop: int, value: torch.Tensor | int) -> int:
        width = stop - start
        torch.ne(buffer[start:stop], value, out=mismatch[:width])
        return int(torch.count_nonzero(mismatch[:width]).item())

    for word in PATTERNS:
        checkpoint()
        buffer.fill_(_signed(word))
        sync()
        bad += sum(count(s, min(s + chunk, buffer.numel()), _signed(word)) for s in range(0, buffer.numel(), chunk))
    for invert in (False, True):
        for start in range(0, buffer.numel(), chunk):
            checkpoint()
            stop = min(start + chunk, buffer.numel())
            buffer[start:stop].copy_(_address_words(start, scratch[: stop - start], expected[: stop - start], invert))
        sync()
        for start in range(0, buffer.numel(), chunk):
            stop = min(start + chunk, buffer.numel())
            bad += count(start, stop, _address_words(start, scratch[: stop - start], expected[: stop - start], invert))
    return bad


@check("rel.memtest", params=MemtestParams, timeout_s=600)
def memtest(ctx: CheckContext, params: MemtestParams) -> Evidence:
    """Patterns written and read back over a large share of each device's memory."""
    evidence = Evidence()
    values: list[tuple[float, int | None]] = []
    for index in ctx.devices:
        limit = ctx.device.allocation_limit(index)
        want = int(limit * params.fraction) if ctx.device.accelerator else min(params.cpu_bytes, limit)
        try:
            buffer = _allocate_most(ctx, index, max(want, 1 << 20))
        except DeviceOutOfMemoryError as exc:
            evidence.finding(Verdict.ERROR, f"device {index}: no memory to test: {exc}")
            continue
        def sync(index: int = index) -> None:
            ctx.device.synchronize(index)

        try:
            bad = memtest_pass(buffer, params.chunk_words, sync, ctx.checkpoint)
            tested = buffer.numel() * 4
        finally:
            ctx.device.free(buffer)
            del buffer
        values.append((float(bad), index))
        evidence.measure("bad_words", bad, "count", index)
        evidence.measure("tested_gb", tested / 1e9, "GB", index)
    if values:
        evidence.judge(ctx.threshold(), values)
    return evidence


def gemm_load(ctx: CheckContext, seconds: float, tick: Callable[[], None], n: int = 8192) -> int:
    """Keep every device busy with bf16 GEMMs for `seconds`, calling `tick` between rounds."""
    operands = {i: gemm_operands(ctx.device, i, "bf16", n, seed=41) for i in ctx.devices}
    rounds = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ctx.checkpoint()
        with ctx.device.compute():
            for _ in range(8):
                for a, b in operands.values():
                    ctx.device.matmul(a, b)
        ctx.device.synchronize(None)
        tick()
        rounds += 1
    return rounds


class LoadParams(CheckParams):
    load_s: float = 20.0

    @classmethod
    def for_run(cls, sizing: Sizing) -> LoadParams:
        return cls(load_s=5.0 if sizing.quick else 20.0)


def _nvml_const(nvml: Nvml, name: str, default: int) -> int:
    value = getattr(nvml.lib, name, default)
    return value if isinstance(value, int) else default


@check("rel.ecc", params=LoadParams, timeout_s=180)
def ecc(ctx: CheckContext, params: LoadParams) -> Evidence:
    """Uncorrectable ECC errors during a load, plus retired pages and row-remapping failures."""
    nvml = nvml_or_skip(ctx, "the ECC state")
    uncorrected = _nvml_const(nvml, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1)
    volatile = _nvml_const(nvml, "NVML_VOLATILE_ECC", 0)

    def counts() -> list[int | None]:
        return [nvml.call("nvmlDeviceGetTotalEccErrors", nvml.handles[i], uncorrected, volatile) for i in ctx.devices]

    evidence = Evidence()
    before = counts()
    gemm_load(ctx, params.load_s, lambda: None)
    after = counts()
    values: list[tuple[float, int | None]] = []
    for position, index in enumerate(ctx.devices):
        handle = nvml.handles[index]
        mode = nvml.call("nvmlDeviceGetEccMode", handle)
        if isinstance(mode, tuple | list) and mode and mode[0] == 0:
            evidence.finding(Verdict.WARN, f"device {index}: ECC is disabled")
        first, last = before[position], after[position]
        if first is None or last is None:
            evidence.note(f"device {index}: ECC counters not readable")
            continue
        values.append((float(last - first), index))
        evidence.measure("uncorrectable", last - first, "count", index)
        evidence.measure("uncorrectable_total", last, "count", index)
        remapped = nvml.call("nvmlDeviceGetRemappedRows", handle)
        if isinstance(remapped, tuple | list) and len(remapped) >= 4:
            evidence.measure("remapped_rows_uncorrectable", float(remapped[1]), "count", index)
            if remapped[3]:
                evidence.finding(Verdict.FAIL, f"device {index}: row remapping failed (memory must be replaced)")
            elif remapped[2]:
                evidence.finding(Verdict.WARN, f"device {index}: row remapping pending (needs a GPU reset)")
        pending = nvml.call("nvmlDeviceGetRetiredPagesPendingStatus", handle)
        if pending:
            evidence.finding(Verdict.WARN, f"device {index}: page retirement pending (needs a GPU reset)")
    if not values:
        evidence.finding(Verdict.ERROR, "ECC error counters are not readable on any device")
        return evidence
    evidence.judge(ctx.threshold(), values)
    return evidence


#: NVML clock-event (throttle) reasons that mean the card is too hot or power-braked.
THERMAL_REASONS = {0x8: "hardware slowdown", 0x20: "software thermal slowdown", 0x40: "hardware thermal slowdown",
                   0x80: "hardware power brake"}


@check("rel.thermal", params=LoadParams, timeout_s=180)
def thermal(ctx: CheckContext, params: LoadParams) -> Evidence:
    """Temperature and throttle reasons sampled while every card runs GEMMs."""
    nvml = nvml_or_skip(ctx, "the temperature")
    sensor = _nvml_const(nvml, "NVML_TEMPERATURE_GPU", 0)
    peak: dict[int, float] = {}
    reasons: dict[int, set[str]] = {i: set() for i in ctx.devices}

    def sample() -> None:
        for index in ctx.devices:
            handle = nvml.handles[index]
            temperature = nvml.call("nvmlDeviceGetTemperature", handle, sensor)
            if isinstance(temperature, int | float):
                peak[index] = max(peak.get(index, 0.0), float(temperature))
            mask = nvml.call("nvmlDeviceGetCurrentClocksEventReasons", handle)
            if mask is None:
                mask = nvml.call("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
            if isinstance(mask, int):
                reasons[index].update(name for bit, name in THERMAL_REASONS.items() if mask & bit)

    gemm_load(ctx, params.load_s, sample)
    evidence = Evidence()
    for index, names in reasons.items():
        if names:
            evidence.finding(Verdict.FAIL, f"device {index} throttled under load: {', '.join(sorted(names))}")
    if not peak:
        evidence.finding(Verdict.ERROR, "temperature is not readable on any device")
        return evidence
    for index, value in peak.items():
        evidence.measure("temperature_c", value, "C", index)
    evidence.judge(ctx.threshold(), [(v, i) for i, v in peak.items()])
    return evidence


class BurninParams(CheckParams):
    seconds: float = 60.0
    n: int = 4096
    dtype: str = "bf16"

    @classmethod
    def for_run(cls, sizing: Sizing) -> BurninParams:
        if sizing.accelerator:
            return cls(seconds=sizing.burnin_seconds, n=4096, dtype="bf16")
        return cls(seconds=sizing.burnin_seconds, n=256, dtype="fp32")


@check("rel.burnin", params=BurninParams, timeout_s=120, timeout_per_burnin_s=1.0)
def burnin(ctx: CheckContext, params: BurninParams) -> Evidence:
    """`--burnin-seconds` of GEMMs verified bit for bit, interleaved with memory patterns."""
    evidence = Evidence()
    goldens = {}
    operands = {}
    for index in ctx.devices:
        operands[index] = gemm_operands(ctx.device, index, params.dtype, params.n, seed=43)
        goldens[index] = ctx.device.matmul(*operands[index])
    scratch = {i: _allocate_most(ctx, i, 16 << 20) for i in ctx.devices}
    bad = {i: 0 for i in ctx.devices}
    rounds = 0
    deadline = time.monotonic() + params.seconds
    try:
        while time.monotonic() < deadline or rounds == 0:
            ctx.checkpoint()
            for index in ctx.devices:
                for _ in range(8):
                    bad[index] += bit_mismatches(ctx.device.matmul(*operands[index]), goldens[index])
                bad[index] += memtest_pass(scratch[index], 1 << 22, lambda: None, ctx.checkpoint)
            rounds += 1
    finally:
        for buffer in scratch.values():
            ctx.device.free(buffer)
    for index, count in bad.items():
        evidence.measure("mismatches", count, "count", index)
    evidence.measure("rounds", rounds, "count")
    evidence.judge(ctx.threshold(), [(float(v), i) for i, v in bad.items()])
    return evidence

"""Performance checks: dense GEMM per dtype, memory bandwidth, all-reduce and launch latency.

Against a nominal profile the basis is the datasheet value; against `cpu-reference`
it is a numpy measurement of the same problem (same shape, same FLOP or byte formula)
taken in alternating rounds with the probe, so that host contention slows both and
only a slower device path moves the ratio. Every figure is the best of several timed
rounds after warm-up. A GEMM is measured at the fastest of a few square sizes (kernels
peak at different sizes per dtype and device) into a preallocated output, and with the
faster kernel where the device offers two (a CPU: torch's MKL and numpy's OpenBLAS for
fp32/fp64); a copy with the faster of the device's copy kernels (a CPU: `memcpy` and
`Tensor.copy_`). The reason names the size and kernel measured.
`benchmarks/probe_fidelity.py` compares these figures with the best reference
measurements of the same machine.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable

import torch

from accelqual_probes import reference, timing
from accelqual_probes.checks.function import dtype_support, gemm_operands, tf32_math
from accelqual_probes.checks.multicard import cuda_peers, nccl
from accelqual_probes.devices.base import DeviceOutOfMemoryError
from accelqual_probes.evidence import Evidence, NotApplicableError
from accelqual_probes.registry import CheckContext, CheckParams, Sizing, check
from accelqual_probes.schema import Verdict

TFLOP = 1e12
GB = 1e9
#: Dtypes whose throughput a host CPU reference says nothing about: judged by the
#: profile's low floors (fractions of the fp32 reference), not by a like-for-like ratio.
LIKE_FOR_LIKE = {"fp64": "fp64", "fp32": "fp32"}


class GemmParams(CheckParams):
    #: Square sizes tried before the measurement, smallest first (halved for fp64 on accelerators);
    #: the fastest one is measured. Kernels peak at different sizes: BLAS is flat beyond a few
    #: hundred, the fallback kernels of CPUs without native low-precision GEMM fall off a cliff
    #: beyond the L2 cache (~200), and fp8, converted to fp32 on such CPUs, gains up to ~2500.
    sizes: tuple[int, ...] = (4096, 8192)
    #: The walk up the ladder stops after this many sizes in a row that were not the fastest so
    #: far (BLAS dips at powers of two), or at a size below half the fastest (a kernel's cliff).
    patience: int = 3
    #: A size whose single GEMM would take longer than this, extrapolated from the previous size, is not tried.
    max_call_s: float = 0.5
    rounds: int = 5
    #: Seconds one timed round should last (the repeats per round are calibrated to it).
    round_s: float = 0.1
    #: Seconds all timed rounds may take: long GEMMs get fewer rounds, never fewer than 4.
    budget_s: float = 60.0
    #: Seconds the timed rounds should span at least (more rounds than `rounds` for short GEMMs).
    window_s: float = 0.0
    #: Interleaved passes over the sizes with cheap calls after the walk (see `_fastest_size`).
    retime_passes: int = 3
    #: Seconds of timed samples per size while choosing it (at least 3 samples, at most 10).
    sweep_s: float = 0.0

    @classmethod
    def for_run(cls, sizing: Sizing) -> GemmParams:
        if sizing.accelerator:
            return cls(sizes=(4096, 8192) if sizing.quick else (4096, 8192, 16384), rounds=5, round_s=0.1)
        # A shared CPU host preempts its processes every few milliseconds: rounds of a single GEMM
        # (the best of many) see the undisturbed speed that long rounds rarely do.
        # The host's fast moments come and go within tenths of a second: 16 rounds of short GEMMs
        # (~0.1 s) often fell entirely in a slow stretch and read 10-20% low, so rounds of short
        # GEMMs continue until they span `window_s`.
        if sizing.quick:
            return cls(sizes=(96, 128, 160, 192, 256, 384, 512, 768), rounds=12, round_s=0.002, max_call_s=0.05,
                       budget_s=1.0, sweep_s=0.02, window_s=0.1, retime_passes=2)
        return cls(sizes=(96, 128, 160, 192, 256, 384, 512, 768, 1024, 1536, 2048, 2560), rounds=16, round_s=0.002,
                   max_call_s=0.6, budget_s=1.5, sweep_s=0.02, window_s=0.3)


#: A size with long calls (beyond RETIME_MAX_CALL_S) is measured only when it beats every size
#: with short calls by more than this: long calls are more exposed to preemption on a shared host.
LONG_CALL_GAIN = 0.03
#: Sizes whose GEMM takes at most this long are timed again, in `GemmParams.retime_passes` interleaved passes.
RETIME_MAX_CALL_S = 0.05
#: Only cheap sizes within this share of the walk's fastest cheap size are timed again (a kernel
#: past its cliff, or MKL's fp32 at n=96, at 0.3-0.6x, cannot win and costs time in every pass).
RETIME_SHARE = 0.7


def _candidate_sizes(params: GemmParams, dtype: str, accelerator: bool) -> list[int]:
    return sorted({n // 2 if accelerator and dtype == "fp64" else n for n in params.sizes})


#: A GEMM candidate: (kernel, size).
_Key = tuple[str, int]


class _Gemm:
    """Operands and output of one GEMM size, and the timed work over them."""

    def __init__(self, ctx: CheckContext, index: int, dtype: str, n: int, kernel: str) -> None:
        self.device = ctx.device
        self.n = n
        self.kernel = kernel
        self.a, self.b = gemm_operands(ctx.device, index, dtype, n, seed=5 + index)
        self.out = ctx.device.matmul_output(self.a, self.b)
        self.flops = 2.0 * n**3
        #: FLOP/s seen while choosing the size.
        self.rate = 0.0

    @property
    def key(self) -> _Key:
        return self.kernel, self.n

    def run(self, repeats: int) -> None:
        self.device.matmul_repeated(self.a, self.b, self.out, repeats, self.kernel)


def _fastest_size(ctx: CheckContext, index: int, dtype: str, params: GemmParams,
                  sync: Callable[[], None]) -> _Gemm:
    """The size (and kernel, where the device offers more than one) to measure: the ladder
    walked smallest first for each kernel, then the sizes with cheap calls timed again in
    `params.retime_passes` interleaved passes; the fastest of those, unless a size with long
    calls beats it by more than `LONG_CALL_GAIN`.

    A shared host's slow phases last seconds, longer than a pass over the small sizes, and a
    size timed in a fast one looks faster than it is. So the cheap sizes are ranked by their
    median over the passes (the walk counts as one) of their rate relative to the fastest size
    of the same pass, a comparison within one phase: the highest rate of any pass picked
    sizes 35% slower than the best in some runs (n=96 for MKL's fp32)."""
    rates: dict[_Key, float] = {}
    cheap: dict[_Key, _Gemm] = {}
    walked_last: dict[_Key, _Gemm] = {}
    kernels = ctx.device.gemm_kernels(ctx.device.torch_dtype(dtype))
    for kernel in kernels:
        last: _Gemm | None = None
        walked: list[float] = []
        misses = 0
        for n in _candidate_sizes(params, dtype, ctx.device.accelerator):
            if last is not None and (2.0 * n**3 / last.rate > params.max_call_s or misses >= params.patience
                                     or last.rate < 0.5 * max(walked)):
                break
            ctx.checkpoint()
            last = _Gemm(ctx, index, dtype, n, kernel)
            rate = _time_size(last, params, sync, ctx)
            misses = 0 if rate > max(walked, default=0.0) else misses + 1
            walked.append(rate)
            rates[last.key] = rate
            if last.flops / rate <= RETIME_MAX_CALL_S:
                cheap[last.key] = last
        assert last is not None
        walked_last[last.key] = last
    fastest_walked = max((rates[key] for key in cheap), default=0.0)
    cheap = {key: gemm for key, gemm in cheap.items() if rates[key] >= RETIME_SHARE * fastest_walked}
    passes = [{key: rates[key] for key in cheap}]
    for _ in range(params.retime_passes if len(cheap) > 1 else 0):
        passes.append({key: _time_size(gemm, params, sync, ctx) for key, gemm in cheap.items()})
    for key in cheap:
        rates[key] = max(p[key] for p in passes)
    chosen = max(rates, key=lambda key: rates[key])
    if cheap:
        share = {key: statistics.median(p[key] / max(p.values()) for p in passes) for key in cheap}
        fastest_cheap = max(cheap, key=lambda key: (share[key], rates[key]))
        if rates[chosen] <= (1 + LONG_CALL_GAIN) * rates[fastest_cheap]:
            chosen = fastest_cheap
    gemm = cheap.get(chosen) or walked_last.get(chosen) or _Gemm(ctx, index, dtype, chosen[1], chosen[0])
    gemm.rate = rates[chosen]
    return gemm


def _time_size(gemm: _Gemm, params: GemmParams, sync: Callable[[], None], ctx: CheckContext) -> float:
    """FLOP/s of the best of a few samples after a warm-up call; also kept as `gemm.rate`."""
    gemm.run(1)  # warm-up: the output's first touch, the library's kernel choice
    single = timing.best_of(gemm.run, 1, 1, sync, ctx.checkpoint)
    repeats = max(1, math.ceil(params.round_s / 2 / single))
    samples = max(3, min(10, int(params.sweep_s / (single * repeats))))
    # Rounds of `repeats` calls, as the measurement takes them: a lone call of a tiny GEMM can
    # run faster than a sustained loop of them, and would make the tiny sizes look fastest.
    gemm.rate = gemm.flops / timing.best_of(gemm.run, repeats, samples, sync, ctx.checkpoint)
    return gemm.rate


def timed_rounds(params: GemmParams, call_s: float, interleaved: bool) -> int:
    """Timed rounds of a GEMM whose call takes `call_s` within the budget (a reference interleaved
    with the probe doubles a round); `benchmarks/probe_fidelity.py` gives its references as many."""
    round_s = max(params.round_s, call_s) * (2 if interleaved else 1)
    wanted = max(params.rounds, math.ceil(params.window_s / round_s))
    return max(min(4, params.rounds), min(wanted, int(params.budget_s / round_s)))


def _rounds(params: GemmParams, gemm: _Gemm, interleaved: bool) -> int:
    return timed_rounds(params, gemm.flops / gemm.rate, interleaved)


def _gemm(ctx: CheckContext, params: GemmParams) -> Evidence:
    dtype = ctx.spec.dtype or "fp32"
    unsupported = dtype_support(ctx, dtype)
    if unsupported is not None:
        raise NotApplicableError(unsupported)
    nominal = ctx.profile.peak_tflops.get(dtype)
    if not ctx.relative and nominal is None:
        raise NotApplicableError(f"profile {ctx.profile_name} declares no {dtype} peak")
    evidence = Evidence()
    values: list[tuple[float, int | None]] = []
    sizes: list[str] = []
    kernels: list[str] = []
    basis: float | None = None
    for index in ctx.devices:
        ref_tflops = 0.0
        sync = _sync(ctx, index)
        try:
            with tf32_math(dtype == "tf32"):
                gemm = _fastest_size(ctx, index, dtype, params, sync)
                probe_repeats = timing.calibrate(gemm.run, sync, params.round_s)
                if ctx.relative:
                    ref = reference.GemmReference(gemm.n, LIKE_FOR_LIKE.get(dtype, "fp32"))
                    ref_repeats = timing.calibrate(ref.run, lambda: None, params.round_s)
                    seconds, ref_seconds = timing.interleaved(gemm.run, probe_repeats, ref.run, ref_repeats,
                                                              _rounds(params, gemm, True), sync, ctx.checkpoint)
                    ref_tflops = ref.flops / ref_seconds / TFLOP
                    basis = ref_tflops if basis is None else min(basis, ref_tflops)
                else:
                    seconds = timing.best_of(gemm.run, probe_repeats, _rounds(params, gemm, False), sync,
                                             ctx.checkpoint)
        except RuntimeError as exc:
            if ctx.relative or nominal is None:
                raise NotApplicableError(f"{dtype} GEMM is not supported: {str(exc).splitlines()[0][:160]}") from None
            evidence.finding(Verdict.FAIL, f"device {index}: profile declares a {dtype} peak but the GEMM failed: "
                                           f"{str(exc).splitlines()[0][:160]}")
            continue
        tflops = gemm.flops / seconds / TFLOP
        values.append((tflops, index))
        sizes.append(str(gemm.n))
        kernels.append(gemm.kernel)
        evidence.measure("tflops", tflops, "TFLOPS", index)
        if ctx.relative:
            evidence.measure("reference_tflops", ref_tflops, "TFLOPS", index)
        del gemm
    if not values:
        return evidence
    if ctx.relative:
        assert basis is not None
        name = f"numpy {LIKE_FOR_LIKE.get(dtype, 'fp32')} reference"
        evidence.judge(ctx.threshold(basis=basis, basis_name=name), values, ctx.warn_below(basis))
        for value, where in values:
            evidence.measure("fraction_of_reference", value / basis, "", where)
    else:
        evidence.judge(ctx.threshold(), values, ctx.warn_below())
        for value, where in values:
            evidence.measure("fraction_of_nominal", value / (nominal or 1.0), "", where)
    tried = _candidate_sizes(params, dtype, ctx.device.accelerator)
    offered = ctx.device.gemm_kernels(ctx.device.torch_dtype(dtype))
    evidence.note(f"n={','.join(dict.fromkeys(sizes))} (the fastest of {', '.join(map(str, tried))})"
                  + (f", kernel {','.join(dict.fromkeys(kernels))} (the faster of {', '.join(offered)})"
                     if len(offered) > 1 else ""))
    return evidence


def _sync(ctx: CheckContext, index: int) -> Callable[[], None]:
    return lambda: ctx.device.synchronize(index)


@check("perf.gemm.fp64", params=GemmParams, timeout_s=180)
@check("perf.gemm.fp32", params=GemmParams, timeout_s=180)
@check("perf.gemm.tf32", params=GemmParams, timeout_s=180)
@check("perf.gemm.fp16", params=GemmParams, timeout_s=180)
@check("perf.gemm.bf16", params=GemmParams, timeout_s=180)
@check("perf.gemm.fp8", params=GemmParams, timeout_s=180)
@check("perf.gemm.int8", params=GemmParams, timeout_s=180)
def gemm(ctx: CheckContext, params: GemmParams) -> Evidence:
    """Sustained square GEMM throughput of the check's dtype (`perf.gemm.<dtype>`)."""
    return _gemm(ctx, params)


class BandwidthParams(CheckParams):
    #: Bytes per array: far larger than any cache, so the copy streams from memory.
    nbytes: int = 1 << 30
    rounds: int = 6
    #: Smallest arrays the check falls back to when the device cannot hold two of `nbytes`.
    min_nbytes: int = 64 << 20
    #: Interleaved passes, one copy per kernel each, that choose the copy kernel where the device has several.
    kernel_passes: int = 3

    @classmethod
    def for_run(cls, sizing: Sizing) -> BandwidthParams:
        if sizing.accelerator:
            return cls(nbytes=1 << 30, rounds=6)
        # Two 256 MiB arrays: several times a server CPU's last-level cache (the STREAM rule) and
        # beyond the size where memcpy streams past the caches. Where memory is short (a small
        # host, memory-shortfall) the arrays shrink to what the device grants, down to 16 MiB.
        return cls(nbytes=256 << 20, rounds=8 if sizing.quick else 12, min_nbytes=16 << 20)


def _bandwidth_buffers(ctx: CheckContext, index: int, params: BandwidthParams,
                       evidence: Evidence) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Two float32 arrays of `nbytes` (or the largest halving of it the device grants), filled."""
    nbytes = max(params.min_nbytes, min(params.nbytes, ctx.device.scratch_limit(index) // 2))
    failure = ""
    while nbytes >= params.min_nbytes:
        b: torch.Tensor | None = None
        try:
            # The source first: allocations of this size are mappings placed downwards, so the
            # destination lies below the source, and memcpy's streaming copy ran 5-8% faster that
            # way than upwards (measured alternating on one host; numpy's `ones` then `zeros` does
            # the same). The check reports the faster layout of two equally valid ones.
            b = ctx.device.empty(nbytes // 4, torch.float32, index)
            a = ctx.device.empty(nbytes // 4, torch.float32, index)
        except DeviceOutOfMemoryError as exc:
            failure = str(exc)
            if b is not None:
                ctx.device.free(b)
            del b
            nbytes //= 2
            continue
        if nbytes < params.nbytes:
            evidence.note(f"device {index}: {nbytes >> 20} MiB arrays (of {params.nbytes >> 20} MiB wanted)"
                          + (f" after: {failure}" if failure else ""))
        b.fill_(1.0)
        a.fill_(0.0)
        return a, b
    evidence.finding(Verdict.ERROR, f"device {index}: cannot allocate the bandwidth buffers: {failure}")
    return None


def _fastest_copy_kernel(ctx: CheckContext, dst: torch.Tensor, src: torch.Tensor, params: BandwidthParams,
                         sync: Callable[[], None], evidence: Evidence) -> str:
    """The copy kernel to measure, each of the device's kernels warmed up first.

    Chosen before the measurement, by the median over `params.kernel_passes` interleaved
    passes of each kernel's speed relative to the pass's fastest, so that a slow phase of the
    host does not decide it; the measurement then times one kernel, as a reference would.
    Taking the better of two kernels in every round would add a statistic of the noise."""
    kernels = ctx.device.copy_kernels()
    for kernel in kernels:
        ctx.device.copy_(dst, src, kernel)
    sync()
    if len(kernels) == 1:
        return kernels[0]
    shares: dict[str, list[float]] = {kernel: [] for kernel in kernels}
    for _ in range(params.kernel_passes):
        speed = {kernel: 1.0 / timing.best_of(functools.partial(_copies, ctx, dst, src, kernel), 1, 1,
                                              sync, ctx.checkpoint)
                 for kernel in kernels}
        for kernel, value in speed.items():
            shares[kernel].append(value / max(speed.values()))
    chosen = max(kernels, key=lambda kernel: statistics.median(shares[kernel]))
    evidence.note(f"copy kernel {chosen} (the faster of {', '.join(kernels)})")
    return chosen


def _copies(ctx: CheckContext, dst: torch.Tensor, src: torch.Tensor, kernel: str, repeats: int) -> None:
    """`repeats` copies with one kernel."""
    for _ in range(repeats):
        ctx.device.copy_(dst, src, kernel)


@check("perf.membw", params=BandwidthParams, timeout_s=180)
def membw(ctx: CheckContext, params: BandwidthParams) -> Evidence:
    """STREAM copy (judged) and triad (reported): bytes moved per second, best of N rounds.

    Copy counts 2 x bytes (read + write), triad 3 x bytes, as STREAM does; triad runs over
    halves of the two arrays (three distinct streams). The host reference is a numpy copy
    between the same two arrays, counted the same way.
    """
    evidence = Evidence()
    values: list[tuple[float, int | None]] = []
    basis: float | None = None
    for index in ctx.devices:
        buffers = _bandwidth_buffers(ctx, index, params, evidence)
        if buffers is None:
            continue
        a, b = buffers
        numel = a.numel()
        half = numel // 2
        ref_gbps = 0.0

        def triad(repeats: int, a: torch.Tensor = a[:half], b: torch.Tensor = b[:half],
                  c: torch.Tensor = b[half:2 * half]) -> None:
            for _ in range(repeats):
                ctx.device.triad(a, b, c, 3.0)

        sync = _sync(ctx, index)
        copy = functools.partial(_copies, ctx, a, b, _fastest_copy_kernel(ctx, a, b, params, sync, evidence))
        if ctx.relative:
            # Between the same two arrays on a host device: no extra memory, the same pages.
            ref = (reference.CopyReference(a.numpy(), b.numpy()) if a.device.type == "cpu"
                   else reference.CopyReference.of_size(numel * 4))
            ref.run(1)
            seconds, ref_seconds = timing.interleaved(copy, 1, ref.run, 1, params.rounds, sync, ctx.checkpoint)
            ref_gbps = ref.bytes_moved / ref_seconds / GB
            basis = ref_gbps if basis is None else min(basis, ref_gbps)
            del ref
        else:
            seconds = timing.best_of(copy, 1, params.rounds, sync, ctx.checkpoint)
        triad(1)
        triad_seconds = timing.best_of(triad, 1, max(2, params.rounds // 2), sync, ctx.checkpoint)
        gbps = 2.0 * numel * 4 / seconds / GB
        values.append((gbps, index))
        evidence.measure("gbps", gbps, "GB/s", index)
        if ctx.relative:
            evidence.measure("reference_gbps", ref_gbps, "GB/s", index)
        evidence.measure("triad_gbps", 3.0 * half * 4 / triad_seconds / GB, "GB/s", index)
        del copy, triad, buffers
        for buffer in (a, b):
            ctx.device.free(buffer)
        del a, b
    if not values:
        return evidence
    if ctx.relative:
        assert basis is not None
        evidence.judge(ctx.threshold(basis=basis, basis_name="numpy copy reference"), values, ctx.warn_below(basis))
    else:
        evidence.judge(ctx.threshold(), values, ctx.warn_below())
    return evidence


class AllReduceParams(CheckParams):
    nbytes: int = 256 << 20
    rounds: int = 5


@check("perf.allreduce", params=AllReduceParams, timeout_s=180)
def allreduce(ctx: CheckContext, params: AllReduceParams) -> Evidence:
    """NCCL all-reduce across the node's cards; bus bandwidth = algbw x 2(n-1)/n (nccl-tests)."""
    devices = cuda_peers(ctx)
    collective = nccl()
    tensors = [torch.ones(params.nbytes // 4, device=f"cuda:{d}") for d in devices]
    if not collective.is_available(tensors):
        raise NotApplicableError("NCCL is not available to this torch build")

    def work(repeats: int) -> None:
        for _ in range(repeats):
            collective.all_reduce(tensors)

    def sync() -> None:
        ctx.device.synchronize(None)

    work(1)  # warm-up: NCCL builds its communicators on first use
    sync()
    seconds = timing.best_of(work, 2, params.rounds, sync, ctx.checkpoint)
    count = len(devices)
    busbw = params.nbytes / seconds / GB * 2 * (count - 1) / count
    evidence = Evidence()
    evidence.measure("busbw_gbps", busbw, "GB/s")
    evidence.measure("algbw_gbps", params.nbytes / seconds / GB, "GB/s")
    evidence.judge(ctx.threshold(), [(busbw, None)], ctx.warn_below())
    return evidence


class LaunchParams(CheckParams):
    launches: int = 2000
    batches: int = 7


@check("perf.launch", params=LaunchParams, timeout_s=60)
def launch(ctx: CheckContext, params: LaunchParams) -> Evidence:
    """Median per-launch time of a tiny in-place kernel over batches of back-to-back launches.

    Launch overhead is not compute throughput, so this runs outside the compute scope.
    """
    evidence = Evidence()
    values: list[tuple[float, int | None]] = []
    for index in ctx.devices:
        x = torch.zeros(1, device=ctx.device.torch_device(index))
        sync = _sync(ctx, index)

        def work(repeats: int, x: torch.Tensor = x) -> None:
            for _ in range(repeats):
                x.add_(1.0)

        work(100)
        sync()
        samples = []
        for _ in range(params.batches):
            samples.append(timing.best_of(work, params.launches, 1, sync, ctx.checkpoint) * 1e6)
        median_us = timing.percentile(samples, 50)
        values.append((median_us, index))
        evidence.measure("launch_us", median_us, "us", index)
    evidence.judge(ctx.threshold(), values)
    return evidence

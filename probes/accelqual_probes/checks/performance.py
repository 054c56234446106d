"""Performance checks: dense GEMM per dtype, memory bandwidth, all-reduce and launch latency.

Against a nominal profile the basis is the datasheet value; against `cpu-reference`
it is a numpy measurement of the same problem (same shape, same FLOP or byte formula)
taken in alternating rounds with the probe, so that host contention slows both and
only a slower device path moves the ratio. Every figure is the best of several timed
rounds after warm-up.
"""

from __future__ import annotations

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
    n: int = 8192
    rounds: int = 5
    #: Seconds one timed round should last (the repeats per round are calibrated to it).
    round_s: float = 0.1

    @classmethod
    def for_run(cls, sizing: Sizing) -> GemmParams:
        if sizing.accelerator:
            return cls(n=4096 if sizing.quick else 8192, rounds=5, round_s=0.1)
        return cls(n=384 if sizing.quick else 512, rounds=6 if sizing.quick else 8, round_s=0.03)


def _gemm_size(params: GemmParams, dtype: str, accelerator: bool) -> int:
    if accelerator:
        return params.n // 2 if dtype == "fp64" else params.n
    # CPU low-precision GEMMs run through slow fallback kernels: a smaller problem.
    return params.n if dtype in LIKE_FOR_LIKE else params.n // 2


def _gemm(ctx: CheckContext, params: GemmParams) -> Evidence:
    dtype = ctx.spec.dtype or "fp32"
    unsupported = dtype_support(ctx, dtype)
    if unsupported is not None:
        raise NotApplicableError(unsupported)
    nominal = ctx.profile.peak_tflops.get(dtype)
    if not ctx.relative and nominal is None:
        raise NotApplicableError(f"profile {ctx.profile_name} declares no {dtype} peak")
    evidence = Evidence()
    n = _gemm_size(params, dtype, ctx.device.accelerator)
    flops = 2.0 * n**3
    values: list[tuple[float, int | None]] = []
    basis: float | None = None
    for index in ctx.devices:
        a, b = gemm_operands(ctx.device, index, dtype, n, seed=5 + index)
        ref_tflops = 0.0

        def probe(repeats: int, a: torch.Tensor = a, b: torch.Tensor = b) -> None:
            for _ in range(repeats):
                ctx.device.matmul(a, b)

        sync = _sync(ctx, index)
        try:
            with tf32_math(dtype == "tf32"):
                probe_repeats = timing.calibrate(probe, sync, params.round_s)
                if ctx.relative:
                    ref = reference.GemmReference(n, LIKE_FOR_LIKE.get(dtype, "fp32"))
                    ref_repeats = timing.calibrate(ref.run, lambda: None, params.round_s)
                    seconds, ref_seconds = timing.interleaved(probe, probe_repeats, ref.run, ref_repeats,
                                                              params.rounds, sync, ctx.checkpoint)
                    ref_tflops = ref.flops / ref_seconds / TFLOP
                    basis = ref_tflops if basis is None else min(basis, ref_tflops)
                else:
                    seconds = timing.best_of(probe, probe_repeats, params.rounds, sync, ctx.checkpoint)
        except RuntimeError as exc:
            if ctx.relative or nominal is None:
                raise NotApplicableError(f"{dtype} GEMM is not supported: {str(exc).splitlines()[0][:160]}") from None
            evidence.finding(Verdict.FAIL, f"device {index}: profile declares a {dtype} peak but the GEMM failed: "
                                           f"{str(exc).splitlines()[0][:160]}")
            continue
        tflops = flops / seconds / TFLOP
        values.append((tflops, index))
        evidence.measure("tflops", tflops, "TFLOPS", index)
        if ctx.relative:
            evidence.measure("reference_tflops", ref_tflops, "TFLOPS", index)
    if not values:
        return evidence
    if ctx.relative:
        assert basis is not None
        name = f"numpy {LIKE_FOR_LIKE.get(dtype, 'fp32')} reference"
        evidence.judge(ctx.threshold(basis=basis, basis_name=name), values, ctx.warn_below(basis))
        for value, where in values:
            evidence.measure("fraction_of_reference", value / basis, "", where)
        evidence.note(f"n={n}")
    else:
        evidence.judge(ctx.threshold(), values, ctx.warn_below())
        for value, where in values:
            evidence.measure("fraction_of_nominal", value / (nominal or 1.0), "", where)
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

    @classmethod
    def for_run(cls, sizing: Sizing) -> BandwidthParams:
        if sizing.accelerator:
            return cls(nbytes=1 << 30, rounds=6)
        # Three 32 MiB arrays: beyond the last-level cache share of a CPU probe, and within
        # the 256 MiB the CPU device offers even when half of it is missing (memory-shortfall).
        return cls(nbytes=32 << 20, rounds=8 if sizing.quick else 12)


@check("perf.membw", params=BandwidthParams, timeout_s=180)
def membw(ctx: CheckContext, params: BandwidthParams) -> Evidence:
    """STREAM copy (judged) and triad (reported): bytes moved per second, best of N rounds.

    Copy counts 2 x bytes (read + write), triad 3 x bytes, as STREAM does; the host
    reference is a numpy copy of the same size counted the same way.
    """
    evidence = Evidence()
    values: list[tuple[float, int | None]] = []
    basis: float | None = None
    numel = params.nbytes // 4
    for index in ctx.devices:
        try:
            a = ctx.device.empty(numel, torch.float32, index)
            b = ctx.device.empty(numel, torch.float32, index)
            c = ctx.device.empty(numel, torch.float32, index)
        except DeviceOutOfMemoryError as exc:
            evidence.finding(Verdict.ERROR, f"device {index}: cannot allocate the bandwidth buffers: {exc}")
            continue
        b.fill_(1.0)
        c.fill_(2.0)
        a.fill_(0.0)
        ref_gbps = 0.0

        def copy(repeats: int, a: torch.Tensor = a, b: torch.Tensor = b) -> None:
            for _ in range(repeats):
                ctx.device.copy_(a, b)

        def triad(repeats: int, a: torch.Tensor = a, b: torch.Tensor = b, c: torch.Tensor = c) -> None:
            for _ in range(repeats):
                ctx.device.triad(a, b, c, 3.0)

        sync = _sync(ctx, index)
        copy(1)
        sync()
        if ctx.relative:
            ref = reference.CopyReference(params.nbytes)
            ref.run(1)
            seconds, ref_seconds = timing.interleaved(copy, 1, ref.run, 1, params.rounds, sync, ctx.checkpoint)
            ref_gbps = ref.bytes_moved / ref_seconds / GB
            basis = ref_gbps if basis is None else min(basis, ref_gbps)
        else:
            seconds = timing.best_of(copy, 1, params.rounds, sync, ctx.checkpoint)
        triad_seconds = timing.best_of(triad, 1, max(2, params.rounds // 2), sync, ctx.checkpoint)
        gbps = 2.0 * numel * 4 / seconds / GB
        values.append((gbps, index))
        evidence.measure("gbps", gbps, "GB/s", index)
        if ctx.relative:
            evidence.measure("reference_gbps", ref_gbps, "GB/s", index)
        evidence.measure("triad_gbps", 3.0 * numel * 4 / triad_seconds / GB, "GB/s", index)
        for buffer in (a, b, c):
            ctx.device.free(buffer)
        del a, b, c
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

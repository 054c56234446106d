"""Inference checks: latency at batch 1, throughput at the best batch, accuracy, energy efficiency.

Latency and throughput serve the zoo's decoder LM (a forward pass over a full
context), in bf16 on accelerators and fp32 on a CPU host (whose bf16 GEMMs are slow
fallbacks). Accuracy follows MLPerf: the device's low-precision answers must agree
with the fp32 reference answers on at least 99% of a fixed input set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import torch
from torch import nn

from accelqual_probes import timing, zoo
from accelqual_probes.checks.multicard import nvml_or_skip
from accelqual_probes.devices.base import TORCH_DTYPES
from accelqual_probes.evidence import Evidence
from accelqual_probes.registry import CheckContext, CheckParams, Sizing, check
from accelqual_probes.schema import Verdict


class ServingParams(CheckParams):
    dtype: str = "bf16"
    d_model: int = 512
    layers: int = 4
    seq: int = 128
    requests: int = 200
    batches: tuple[int, ...] = (1, 8, 32, 128)
    rounds: int = 3

    @classmethod
    def for_run(cls, sizing: Sizing) -> ServingParams:
        if sizing.accelerator:
            return cls(requests=100 if sizing.quick else 300)
        return cls(dtype="fp32", d_model=128, layers=2, seq=32, requests=40 if sizing.quick else 100,
                   batches=(1, 4, 16) if sizing.quick else (1, 4, 16, 64), rounds=3)

    def config(self) -> zoo.LMConfig:
        return zoo.LMConfig(d_model=self.d_model, layers=self.layers, seq=self.seq, heads=max(1, self.d_model // 64))


def serving_model(ctx: CheckContext, params: ServingParams, index: int) -> nn.Module:
    model = zoo.build_lm(params.config(), seed=51).eval()
    return model.to(device=ctx.device.torch_device(index), dtype=TORCH_DTYPES[params.dtype])


def _requests(params: ServingParams, batch: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(batch)
    return torch.randint(0, params.config().vocab, (batch, params.seq), generator=generator).to(device)


@check("infer.latency", params=ServingParams, timeout_s=180)
def latency(ctx: CheckContext, params: ServingParams) -> Evidence:
    """p50 and p99 latency of single requests (batch 1), each timed to completion."""
    evidence = Evidence()
    values: list[tuple[float, int | None]] = []
    for index in ctx.devices:
        model = serving_model(ctx, params, index)
        tokens = _requests(params, 1, ctx.device.torch_device(index))
        samples: list[float] = []
        with torch.inference_mode(), ctx.device.compute():
            for _ in range(5):
                model(tokens)
            for _ in range(params.requests):
                ctx.checkpoint()
                ctx.device.synchronize(index)
                started = time.perf_counter()
                model(tokens)
                ctx.device.synchronize(index)
                samples.append((time.perf_counter() - started) * 1e3)
        p50, p99 = timing.percentile(samples, 50), timing.percentile(samples, 99)
        values.append((p99, index))
        evidence.measure("p50_ms", p50, "ms", index)
        evidence.measure("p99_ms", p99, "ms", index)
    evidence.judge(ctx.threshold(), values)
    return evidence


def best_throughput(ctx: CheckContext, params: ServingParams, index: int,
                    during: Callable[[], None] = lambda: None) -> tuple[float, int]:
    """(samples/s, batch) of the fastest batch size, best of `rounds` timed rounds each."""
    model = serving_model(ctx, params, index)
    device = ctx.device.torch_device(index)
    best = (0.0, 0)
    with torch.inference_mode(), ctx.device.compute():
        for batch in params.batches:
            tokens = _requests(params, batch, device)

            def work(repeats: int, tokens: torch.Tensor = tokens) -> None:
                for _ in range(repeats):
                    model(tokens)
                during()

            sync = lambda: ctx.device.synchronize(index)  # noqa: E731
            repeats = timing.calibrate(work, sync, 0.05 if not ctx.device.accelerator else 0.2, max_repeats=1000)
            seconds = timing.best_of(work, repeats, params.rounds, sync, ctx.checkpoint)
            rate = batch / seconds
            if rate > best[0]:
                best = (rate, batch)
    return best


@check("infer.throughput", params=ServingParams, timeout_s=240)
def throughput(ctx: CheckContext, params: ServingParams) -> Evidence:
    """Samples per second at the best of several batch sizes."""
    evidence = Evidence()
    values: list[tuple[float, int | None]] = []
    for index in ctx.devices:
        rate, batch = best_throughput(ctx, params, index)
        values.append((rate, index))
        evidence.measure("samples_per_s", rate, "samples/s", index)
        evidence.measure("best_batch", batch, "", index)
    evidence.judge(ctx.threshold(), values)
    return evidence


class AccuracyParams(CheckParams):
    dtype: str = "bf16"
    samples: int = 1024
    classes: int = 16
    dim: int = 64
    #: Input noise around the class prototypes: some samples sit near decision boundaries.
    noise: float = 1.0


def accuracy_set(params: AccuracyParams) -> tuple[nn.Module, torch.Tensor]:
    generator = torch.Generator().manual_seed(61)
    prototypes = torch.randn(params.classes, params.dim, generator=generator)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(62)
        model = zoo.PrototypeClassifier(prototypes).eval()
    labels = torch.randint(0, params.classes, (params.samples,), generator=generator)
    inputs = prototypes[labels] + params.noise * torch.randn(params.samples, params.dim, generator=generator)
    return model, inputs


@check("infer.accuracy", params=AccuracyParams, timeout_s=120)
def accuracy(ctx: CheckContext, params: AccuracyParams) -> Evidence:
    """Top-1 agreement of the device's low-precision answers with the fp32 host reference."""
    evidence = Evidence()
    model, inputs = accuracy_set(params)
    with torch.inference_mode():
        expected = model(inputs).argmax(dim=-1)  # fp32 on the host, outside the device path
    values: list[tuple[float, int | None]] = []
    for index in ctx.devices:
        ctx.checkpoint()
        device = ctx.device.torch_device(index)
        dtype = TORCH_DTYPES[params.dtype]
        import copy

        device_model = copy.deepcopy(model).to(device=device, dtype=dtype)
        with torch.inference_mode(), ctx.device.compute():
            got = device_model(inputs.to(device=device, dtype=dtype)).argmax(dim=-1).cpu()
        agreement = float((got == expected).float().mean().item())
        values.append((agreement, index))
        evidence.measure("agreement", agreement, "", index)
    evidence.judge(ctx.threshold(), values)
    evidence.note(f"{params.dtype} vs fp32 on {params.samples} fixed inputs")
    return evidence


@check("infer.efficiency", params=ServingParams, timeout_s=240)
def efficiency(ctx: CheckContext, params: ServingParams) -> Evidence:
    """Throughput per watt: samples/s at the best batch over the mean board power meanwhile."""
    nvml = nvml_or_skip(ctx, "board power")
    evidence = Evidence()
    values: list[tuple[float, int | None]] = []
    for index in ctx.devices:
        handle = nvml.handles[index]
        readings: list[float] = []
        lock = threading.Lock()

        def sample(handle: object = handle, readings: list[float] = readings, lock: threading.Lock = lock) -> None:
            milliwatts = nvml.call("nvmlDeviceGetPowerUsage", handle)
            if isinstance(milliwatts, int | float) and milliwatts > 0:
                with lock:
                    readings.append(milliwatts / 1e3)

        rate, batch = best_throughput(ctx, params, index, during=sample)
        if not readings:
            evidence.finding(Verdict.ERROR, f"device {index}: board power is not readable")
            continue
        watts = sum(readings) / len(readings)
        values.append((rate / watts, index))
        evidence.measure("samples_per_joule", rate / watts, "samples/J", index)
        evidence.measure("watts", watts, "W", index)
        evidence.measure("samples_per_s", rate, "samples/s", index)
        evidence.note(f"device {index}: best batch {batch}")
    if values:
        evidence.judge(ctx.threshold(), values)
    return evidence

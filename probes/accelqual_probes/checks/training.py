"""Training checks: a small decoder LM trained for N steps, and data-parallel scaling.

`train.step` is deterministic (fixed seeds, deterministic algorithms, the CPU backend's
fixed thread count), so its loss trajectory can be compared with one recorded in the
package. The recording is data, produced by a command, never edited by hand:

    python -m accelqual_probes.checks.training --record

writes `accelqual_probes/data/train_step_reference.json` (run it on the CPU reference
device after changing the model, data or optimiser, and commit the file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

from accelqual_probes import reference, timing, zoo
from accelqual_probes.checks.function import tf32_math
from accelqual_probes.checks.multicard import cuda_peers, nccl
from accelqual_probes.evidence import Evidence
from accelqual_probes.registry import CheckContext, CheckParams, Sizing, check
from accelqual_probes.thresholds import ThresholdRule, resolve

REFERENCE_FILE = Path(__file__).resolve().parent.parent / "data" / "train_step_reference.json"
RECORD_COMMAND = "python -m accelqual_probes.checks.training --record"
RECORDED_STEPS = 40


class TrainParams(CheckParams):
    steps: int = RECORDED_STEPS
    batch: int = 8
    lr: float = 3e-3
    model_seed: int = 1234
    data_seed: int = 99
    #: Largest |loss - reference loss| at any step (loss units, nats).
    trajectory_atol: float = 0.05
    #: The last steps' mean loss must sit this fraction below the first steps' mean.
    min_loss_drop: float = 0.15

    @classmethod
    def for_run(cls, sizing: Sizing) -> TrainParams:
        return cls(steps=20 if sizing.quick else RECORDED_STEPS)

    def recipe(self) -> dict[str, Any]:
        """What the recorded trajectory depends on; a mismatch means it must be re-recorded."""
        return {"model": zoo.LMConfig().as_dict(), "batch": self.batch, "lr": self.lr,
                "model_seed": self.model_seed, "data_seed": self.data_seed, "optimizer": "adam(0.9, 0.999, 1e-8)"}


class Adam:
    """Adam written out with tensor ops.

    `torch.optim` is avoided on purpose: building its first optimizer imports the
    compiler stack (about 2 s, a fifth of the quick suite's budget), and a written-out
    update is the same arithmetic on every device, which the recorded trajectory needs.
    """

    def __init__(self, parameters: list[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.parameters = parameters
        self.lr, self.betas, self.eps = lr, betas, eps
        self.steps = 0
        self.first = [torch.zeros_like(p) for p in parameters]
        self.second = [torch.zeros_like(p) for p in parameters]

    def zero_grad(self) -> None:
        for p in self.parameters:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        correction1 = 1 - beta1**self.steps
        correction2 = 1 - beta2**self.steps
        for p, m, v in zip(self.parameters, self.first, self.second, strict=True):
            if p.grad is None:
                continue
            m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denominator = (v / correction2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denominator, value=-self.lr / correction1)


@contextmanager
def deterministic(device_kind: str) -> Iterator[None]:
    """Deterministic kernels for the block (warn-only on accelerators, whose libraries may lack some).

    The debug-mode switch is the same flag as `use_deterministic_algorithms` without its
    import of the inductor configuration (over a second, for a compiler not used here).
    """
    previous = torch.get_deterministic_debug_mode()
    torch.set_deterministic_debug_mode("error" if device_kind == "cpu" else "warn")
    try:
        yield
    finally:
        torch.set_deterministic_debug_mode(previous)


def train_losses(device: torch.device, params: TrainParams, compute: Callable[[], AbstractContextManager[None]],
                 sync: Callable[[], None], checkpoint: Callable[[], None] = lambda: None,
                 ) -> tuple[list[float], list[float]]:
    """Train the zoo LM for `params.steps` steps; returns the losses and each step's seconds."""
    config = zoo.LMConfig()
    model = zoo.build_lm(config, params.model_seed).to(device)
    optimizer = Adam(list(model.parameters()), lr=params.lr)
    batches = zoo.synthetic_batches(config, params.batch, params.steps, params.data_seed)
    losses: list[float] = []
    seconds: list[float] = []
    for batch in batches:
        checkpoint()
        tokens = batch.to(device)
        sync()
        started = time.perf_counter()
        with compute():
            logits = model(tokens[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, config.vocab), tokens[:, 1:].reshape(-1))
            optimizer.zero_grad()
            torch.autograd.backward(loss)
            optimizer.step()
        losses.append(float(loss.item()))
        sync()
        seconds.append(time.perf_counter() - started)
    return losses, seconds


def load_reference(path: Path = REFERENCE_FILE) -> dict[str, Any]:
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _reference_peak_tflops(ctx: CheckContext) -> tuple[float | None, str]:
    """The fp32 peak MFU refers to: nominal, or for cpu-reference a numpy GEMM measured now."""
    if not ctx.relative:
        peak = ctx.profile.peak_tflops.get("fp32")
        return peak, "nominal fp32 peak"
    ref = reference.GemmReference(256, "fp32")
    repeats = timing.calibrate(ref.run, lambda: None, 0.02)
    seconds = timing.best_of(ref.run, repeats, 3, lambda: None, ctx.checkpoint)
    return ref.flops / seconds / 1e12, "numpy fp32 reference"


@check("train.step", params=TrainParams, timeout_s=300)
def train_step(ctx: CheckContext, params: TrainParams) -> Evidence:
    """tokens/s and MFU of training steps; the loss falls and follows the recorded trajectory."""
    try:
        recorded = load_reference()
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"reference trajectory unreadable ({exc}); run: {RECORD_COMMAND}") from None
    if recorded.get("recipe") != params.recipe() or len(recorded.get("losses", [])) < params.steps:
        raise RuntimeError(f"reference trajectory was recorded for another recipe; run: {RECORD_COMMAND}")
    expected = [float(v) for v in recorded["losses"][: params.steps]]
    config = zoo.LMConfig()
    evidence = Evidence()
    peak, peak_name = _reference_peak_tflops(ctx)
    throughput: list[tuple[float, int | None]] = []
    deviations: list[tuple[float, int | None]] = []
    drops: list[tuple[float, int | None]] = []
    for index in ctx.devices:
        device = ctx.device.torch_device(index)
        def sync(index: int = index) -> None:
            ctx.device.synchronize(index)

        with deterministic(ctx.device.kind), tf32_math(False):
            losses, seconds = train_losses(device, params, ctx.device.compute, sync, ctx.checkpoint)
        timed = seconds[1:] or seconds  # the first step pays for allocation and kernel selection
        tokens_per_s = params.batch * config.seq * len(timed) / sum(timed)
        throughput.append((tokens_per_s, index))
        evidence.measure("tokens_per_s", tokens_per_s, "tokens/s", index)
        if peak:
            metric = "mfu" if not ctx.relative else "mfu_vs_reference"
            evidence.measure(metric, config.train_flops_per_token() * tokens_per_s / (peak * 1e12), "", index)
        evidence.measure("loss_first", losses[0], "", index)
        evidence.measure("loss_last", losses[-1], "", index)
        window = max(1, min(5, len(losses) // 4))
        first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
        drop = 1.0 - last / first if first else 0.0
        drops.append((drop, index))
        evidence.measure("loss_drop", drop, "", index)
        deviation = max(abs(a - b) for a, b in zip(losses, expected, strict=True))
        deviations.append((deviation, index))
        evidence.measure("trajectory_deviation", deviation, "", index)
    evidence.judge(ctx.threshold(), throughput)
    evidence.judge(resolve("loss_drop", "", ThresholdRule(min=params.min_loss_drop), None, "loss decreasing"),
                   drops, label="loss decreasing")
    evidence.judge(resolve("trajectory_deviation", "", ThresholdRule(max=params.trajectory_atol), None,
                           "recorded reference trajectory"), deviations, label="reference trajectory")
    if peak:
        evidence.note(f"MFU relative to the {peak_name} {peak:.3g} TFLOPS")
    return evidence


class ScalingParams(CheckParams):
    steps: int = 20
    batch_per_device: int = 16
    d_model: int = 512
    layers: int = 4
    seq: int = 256


def _flat_grads(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])


def _scatter_grads(model: torch.nn.Module, flat: torch.Tensor, count: int) -> None:
    offset = 0
    for p in model.parameters():
        if p.grad is None:
            continue
        size = p.grad.numel()
        p.grad.copy_(flat[offset: offset + size].view_as(p.grad) / count)
        offset += size


@check("train.scaling", params=ScalingParams, timeout_s=600)
def scaling(ctx: CheckContext, params: ScalingParams) -> Evidence:
    """Data-parallel efficiency: per-card throughput with all cards (NCCL gradient all-reduce) vs one."""
    devices = cuda_peers(ctx)
    collective = nccl()
    config = zoo.LMConfig(vocab=1024, d_model=params.d_model, heads=8, layers=params.layers, seq=params.seq)
    replicas = {d: zoo.build_lm(config, 7).to(f"cuda:{d}") for d in devices}
    optimizers = {d: Adam(list(m.parameters()), lr=1e-4) for d, m in replicas.items()}
    batches = {d: torch.randint(0, config.vocab, (params.batch_per_device, config.seq + 1), device=f"cuda:{d}")
               for d in devices}

    def run(active: list[int]) -> float:
        def steps(count: int) -> None:
            for _ in range(count):
                ctx.checkpoint()
                for d in active:
                    tokens = batches[d]
                    logits = replicas[d](tokens[:, :-1])
                    torch.autograd.backward(
                        F.cross_entropy(logits.reshape(-1, config.vocab), tokens[:, 1:].reshape(-1)))
                if len(active) > 1:
                    flats = [_flat_grads(replicas[d]) for d in active]
                    collective.all_reduce(flats)
                    for d, flat in zip(active, flats, strict=True):
                        _scatter_grads(replicas[d], flat, len(active))
                for d in active:
                    optimizers[d].step()
                    optimizers[d].zero_grad()

        def sync() -> None:
            ctx.device.synchronize(None)

        seconds = timing.best_of(steps, params.steps, 2, sync, ctx.checkpoint)
        return params.batch_per_device * len(active) / seconds

    with ctx.device.compute(), tf32_math(False):
        run(devices)  # warm-up: kernels, NCCL communicators
        single = run(devices[:1])
        together = run(devices)
    efficiency = together / (single * len(devices))
    evidence = Evidence()
    evidence.measure("efficiency", efficiency, "")
    evidence.measure("samples_per_s_1", single, "samples/s")
    evidence.measure(f"samples_per_s_{len(devices)}", together, "samples/s")
    evidence.judge(ctx.threshold(), [(efficiency, None)])
    return evidence


def record(path: Path = REFERENCE_FILE, threads: int = 1) -> dict[str, Any]:
    """Train on the CPU reference device and write the trajectory file."""
    from accelqual_probes.devices.cpu import CpuBackend

    backend = CpuBackend(threads=threads)
    params = TrainParams(steps=RECORDED_STEPS)
    with deterministic("cpu"):
        losses, _ = train_losses(torch.device("cpu"), params, nullcontext, lambda: None)
    data = {
        "command": RECORD_COMMAND,
        "recipe": params.recipe(),
        "losses": [round(v, 6) for v in losses],
        "recordedWith": {"torch": torch.__version__, "device": "cpu", "threads": backend.threads,
                         "cpu": backend.device_name(0)},
    }
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return data


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m accelqual_probes.checks.training",
                                     description="Record the train.step reference loss trajectory.")
    parser.add_argument("--record", action="store_true", help=f"write {REFERENCE_FILE.name}")
    args = parser.parse_args(argv)
    if not args.record:
        parser.print_help()
        return 2
    data = record()
    print(f"wrote {REFERENCE_FILE} ({len(data['losses'])} steps, final loss {data['losses'][-1]:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

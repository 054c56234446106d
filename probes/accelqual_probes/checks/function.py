"""Function checks: GEMM numerics per dtype, operator coverage, peer access and collectives.

Numerics are judged against fp64 references computed on the host outside the device
path (numpy, or torch fp64 on the CPU outside the compute scope), with the error of
each element normalised by `(|A| @ |B|)`, the bound rounding errors scale with: a
tolerance then means the same thing for every shape and input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

from accelqual_probes import catalog, reference
from accelqual_probes.checks.multicard import cuda_peers, nccl
from accelqual_probes.devices.base import DeviceBackend
from accelqual_probes.evidence import Evidence, NotApplicableError
from accelqual_probes.registry import CheckContext, CheckParams, Sizing, check
from accelqual_probes.schema import Verdict
from accelqual_probes.thresholds import ThresholdRule, resolve

#: Per-dtype tolerance of the normalised GEMM error: a few units of the dtype's rounding
#: (fp32 accumulation is assumed for the low-precision dtypes, as every vendor library does).
DTYPE_TOLERANCE: dict[str, float] = {
    "fp64": 1e-12, "fp32": 1e-5, "tf32": 4e-3, "fp16": 4e-3, "bf16": 1.6e-2, "fp8": 1e-2, "int8": 0.0,
}


@contextmanager
def tf32_math(enabled: bool) -> Iterator[None]:
    """Switch CUDA fp32 GEMMs/convolutions to TF32 (or keep them exact) for the block."""
    previous = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


def dtype_support(ctx: CheckContext, dtype: str) -> str | None:
    """Why `dtype` has no GEMM path on this device, or None when it has one."""
    if dtype == "tf32" and ctx.device.kind != "cuda":
        return f"tf32 is a tensor-core mode of CUDA devices; {ctx.device.kind} has none"
    return None


def gemm_operands(device: DeviceBackend, index: int, dtype: str, n: int, seed: int,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded operands in `dtype` (int8: small integers, exact in every path), made on the device.

    A device-side generator gives the same values on every card of one model (the
    cross-card comparison of rel.stress needs that) and avoids generating 8192^2
    operands on the host.
    """
    target = device.torch_device(index)
    try:
        generator = torch.Generator(device=target).manual_seed(seed)
    except RuntimeError:  # a vendor plugin without device generators
        generator = torch.Generator().manual_seed(seed)
        target = torch.device("cpu")
    if dtype == "int8":
        a = torch.randint(-8, 8, (n, n), generator=generator, dtype=torch.int8, device=target)
        b = torch.randint(-8, 8, (n, n), generator=generator, dtype=torch.int8, device=target)
    else:
        wanted = device.torch_dtype(dtype)
        a = (torch.rand(n, n, generator=generator, device=target) * 2 - 1).to(wanted)
        b = (torch.rand(n, n, generator=generator, device=target) * 2 - 1).to(wanted)
    home = device.torch_device(index)
    if dtype == "fp8":
        # The fp8 kernel takes its second operand column-major: laid out so once, not in every call.
        return a.to(home), b.to(home).t().contiguous().t()
    return a.to(home), b.to(home)


def normalised_error(result: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    """max |C - A@B| / (|A| @ |B|) against the fp64 host reference of the same (rounded) operands."""
    a64 = a.cpu().to(torch.float64).numpy()
    b64 = b.cpu().to(torch.float64).numpy()
    exact = reference.gemm_fp64(a64, b64)
    scale = reference.gemm_fp64(np.abs(a64), np.abs(b64))
    # A faulty device may return inf/NaN: the error is then inf/NaN and fails the check.
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(result.cpu().to(torch.float64).numpy() - exact)
        return float(np.max(error / np.maximum(scale, np.finfo(np.float64).tiny)))


class DtypeParams(CheckParams):
    n: int = 1024
    tolerances: dict[str, float] = DTYPE_TOLERANCE

    @classmethod
    def for_run(cls, sizing: Sizing) -> DtypeParams:
        return cls(n=1024 if sizing.accelerator else 128)


@check("func.dtypes", params=DtypeParams, timeout_s=120)
def dtypes(ctx: CheckContext, params: DtypeParams) -> Evidence:
    """GEMM in each dtype the device supports, against the fp64 host reference."""
    evidence = Evidence()
    for dtype in catalog.GEMM_DTYPES:
        unsupported = dtype_support(ctx, dtype)
        if unsupported is not None:
            evidence.note(f"{dtype} not tested: {unsupported}")
            continue
        tolerance = params.tolerances.get(dtype, DTYPE_TOLERANCE[dtype])
        threshold = resolve(f"max_rel_error.{dtype}", "", ThresholdRule(max=tolerance), None, f"{dtype} tolerance")
        values: list[tuple[float, int | None]] = []
        for index in ctx.devices:
            ctx.checkpoint()
            a, b = gemm_operands(ctx.device, index, dtype, params.n, seed=11)
            try:
                with tf32_math(dtype == "tf32"):
                    result = ctx.device.matmul(a, b)
                ctx.device.synchronize(index)
            except RuntimeError as exc:
                declared = dtype in ctx.profile.peak_tflops and not ctx.relative
                message = f"{dtype} GEMM failed on device {index}: {str(exc).splitlines()[0][:160]}"
                if declared:
                    evidence.finding(Verdict.FAIL, f"profile declares a {dtype} peak but {message}")
                else:
                    evidence.note(f"{dtype} not tested: {message}")
                break
            error = normalised_error(result, a, b)
            values.append((error, index))
            evidence.measure(f"max_rel_error.{dtype}", error, "", index)
        if values:
            evidence.judge(threshold, values, label=dtype)
    return evidence


@dataclass(frozen=True)
class OpCase:
    """One operator: input shapes (float inputs get gradients) and the function applied."""

    name: str
    shapes: tuple[tuple[int, ...], ...]
    fn: Callable[..., torch.Tensor]
    #: Integer inputs (indices, targets) with their upper bound, appended after the float inputs.
    index_inputs: tuple[tuple[tuple[int, ...], int], ...] = ()


OP_CASES: tuple[OpCase, ...] = (
    OpCase("add", ((8, 16), (8, 16)), lambda x, y: x + y),
    OpCase("mul", ((8, 16), (8, 16)), lambda x, y: x * y),
    OpCase("div", ((8, 16), (8, 16)), lambda x, y: x / (y.abs() + 1)),
    OpCase("matmul", ((8, 16), (16, 12)), lambda x, w: x @ w),
    OpCase("bmm", ((4, 8, 16), (4, 16, 8)), torch.bmm),
    OpCase("linear", ((8, 16), (12, 16), (12,)), F.linear),
    OpCase("conv2d", ((2, 3, 8, 8), (4, 3, 3, 3)), lambda x, w: F.conv2d(x, w, padding=1)),
    OpCase("relu", ((8, 16),), F.relu),
    OpCase("gelu", ((8, 16),), F.gelu),
    OpCase("silu", ((8, 16),), F.silu),
    OpCase("sigmoid", ((8, 16),), torch.sigmoid),
    OpCase("tanh", ((8, 16),), torch.tanh),
    OpCase("exp", ((8, 16),), torch.exp),
    OpCase("log", ((8, 16),), lambda x: torch.log(x.abs() + 0.5)),
    OpCase("sqrt", ((8, 16),), lambda x: torch.sqrt(x.abs() + 0.5)),
    OpCase("softmax", ((8, 16),), lambda x: F.softmax(x, dim=-1)),
    OpCase("log_softmax", ((8, 16),), lambda x: F.log_softmax(x, dim=-1)),
    OpCase("layer_norm", ((8, 16), (16,), (16,)), lambda x, w, b: F.layer_norm(x, (16,), w, b)),
    OpCase("batch_norm", ((8, 4, 5, 5), (4,), (4,)),
           lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True)),
    OpCase("max_pool2d", ((2, 3, 8, 8),), lambda x: F.max_pool2d(x, 2)),
    OpCase("avg_pool2d", ((2, 3, 8, 8),), lambda x: F.avg_pool2d(x, 2)),
    OpCase("sum", ((8, 16),), lambda x: x.sum(dim=0)),
    OpCase("mean", ((8, 16),), lambda x: x.mean(dim=1)),
    OpCase("cumsum", ((8, 16),), lambda x: x.cumsum(dim=1)),
    OpCase("transpose", ((8, 16),), lambda x: x.t().contiguous() * 2),
    OpCase("cat", ((8, 16), (4, 16)), lambda x, y: torch.cat([x, y], dim=0)),
    OpCase("attention", ((2, 4, 8, 16), (2, 4, 8, 16), (2, 4, 8, 16)),
           lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)),
    OpCase("embedding", ((32, 16),), lambda w, i: F.embedding(i, w), index_inputs=(((8, 5), 32),)),
    OpCase("cross_entropy", ((8, 10),), lambda x, t: F.cross_entropy(x, t), index_inputs=(((8,), 10),)),
    OpCase("index_select", ((16, 8),), lambda x, i: x.index_select(0, i), index_inputs=(((6,), 16),)),
)


class OpsParams(CheckParams):
    rtol: float = 1e-4
    atol: float = 1e-5


def _op_inputs(case: OpCase, seed: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    floats = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in case.shapes]
    indices = [torch.randint(0, bound, shape, generator=generator) for shape, bound in case.index_inputs]
    return floats, indices


def _forward_backward(case: OpCase, floats: list[torch.Tensor], indices: list[torch.Tensor]) -> list[torch.Tensor]:
    leaves = [f.detach().requires_grad_(True) for f in floats]
    out = case.fn(*leaves, *indices)
    # A fixed, non-uniform upstream gradient exercises the backward pass fully.
    weight = torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=out.device).view(out.shape)
    grads = torch.autograd.grad((out * weight).sum(), leaves)
    return [out.detach(), *(g.detach() for g in grads)]


@check("func.ops", params=OpsParams, timeout_s=120)
def ops(ctx: CheckContext, params: OpsParams) -> Evidence:
    """Common operators forward and backward in fp32 on the device vs fp64 on the host CPU."""
    evidence = Evidence()
    failed_per_device: list[tuple[float, int | None]] = []
    with torch.random.fork_rng(devices=[]):
        references = {case.name: _forward_backward(case, *_op_inputs(case, seed=3 + i))
                      for i, case in enumerate(OP_CASES)}
    for index in ctx.devices:
        device = ctx.device.torch_device(index)
        failed: list[str] = []
        for i, case in enumerate(OP_CASES):
            ctx.checkpoint()
            floats, indices = _op_inputs(case, seed=3 + i)
            try:
                with ctx.device.compute(), tf32_math(False):
                    got = _forward_backward(case, [f.to(device, torch.float32) for f in floats],
                                            [t.to(device) for t in indices])
            except RuntimeError as exc:
                failed.append(f"{case.name} ({str(exc).splitlines()[0][:80]})")
                continue
            for name, value, expected in zip(("forward", *(f"grad{j}" for j in range(9))), got,
                                              references[case.name], strict=False):
                value64 = value.cpu().to(torch.float64)
                scale = params.atol + params.rtol * expected.abs().max().item()
                if value64.shape != expected.shape or not bool(((value64 - expected).abs() <= scale).all()):
                    failed.append(f"{case.name} {name}")
                    break
        failed_per_device.append((float(len(failed)), index))
        evidence.measure("ops_failed", len(failed), "count", index)
        evidence.measure("ops_tested", len(OP_CASES), "count", index)
        if failed:
            evidence.note(f"device {index}: mismatched: {', '.join(failed[:10])}")
    evidence.judge(ctx.threshold(), failed_per_device)
    return evidence


class PeerParams(CheckParams):
    nbytes: int = 64 << 20


@check("func.p2p", params=PeerParams, timeout_s=180)
def p2p(ctx: CheckContext, params: PeerParams) -> Evidence:
    """Every ordered pair of devices: peer access reported and a copy arriving intact."""
    devices = cuda_peers(ctx)
    evidence = Evidence()
    failed = 0
    numel = params.nbytes // 4
    for src in devices:
        pattern = torch.arange(numel, dtype=torch.int32, device=ctx.device.torch_device(src))
        for dst in devices:
            if src == dst:
                continue
            ctx.checkpoint()
            if not torch.cuda.can_device_access_peer(src, dst):
                failed += 1
                evidence.note(f"{src}->{dst}: no peer access")
                continue
            copied = pattern.to(ctx.device.torch_device(dst))
            ctx.device.synchronize(dst)
            if not torch.equal(copied.cpu(), pattern.cpu()):
                failed += 1
                evidence.note(f"{src}->{dst}: copy corrupted")
    evidence.measure("pairs_failed", failed, "count")
    evidence.measure("pairs_tested", len(devices) * (len(devices) - 1), "count")
    evidence.judge(ctx.threshold(), [(float(failed), None)])
    return evidence


class CollectiveParams(CheckParams):
    numel: int = 1 << 22


@check("func.collectives", params=CollectiveParams, timeout_s=180)
def collectives(ctx: CheckContext, params: CollectiveParams) -> Evidence:
    """All-reduce, all-gather and broadcast across the node's devices (NCCL in one process)."""
    devices = cuda_peers(ctx)
    collective = nccl()
    evidence = Evidence()
    count = len(devices)
    errors = 0
    with ctx.device.compute():
        inputs = [torch.full((params.numel,), float(i + 1), device=f"cuda:{d}") for i, d in enumerate(devices)]
        if not collective.is_available(inputs):
            raise NotApplicableError("NCCL is not available to this torch build")
        collective.all_reduce(inputs)
        expected = count * (count + 1) / 2
        errors += sum(int((t != expected).sum().item()) for t in inputs)
        sources = [torch.full((params.numel,), float(i + 1), device=f"cuda:{d}") for i, d in enumerate(devices)]
        gathered = [torch.empty(params.numel * count, device=f"cuda:{d}") for d in devices]
        collective.all_gather(sources, gathered)
        want = torch.cat([torch.full((params.numel,), float(i + 1)) for i in range(count)])
        errors += sum(int((g.cpu() != want).sum().item()) for g in gathered)
        payload = [torch.arange(params.numel, dtype=torch.float32, device=f"cuda:{d}") if i == 0
                   else torch.zeros(params.numel, device=f"cuda:{d}") for i, d in enumerate(devices)]
        collective.broadcast(payload, root=0)
        reference_payload = torch.arange(params.numel, dtype=torch.float32)
        errors += sum(int((p.cpu() != reference_payload).sum().item()) for p in payload)
    evidence.measure("errors", errors, "count")
    evidence.judge(ctx.threshold(), [(float(errors), None)])
    return evidence

"""Compatibility checks: software stack versions, the model zoo, graph compilation.

Models are compared with an fp64 run of the same weights on the host CPU, outside the
device's compute scope, so the reference is what the model *should* compute.
"""

from __future__ import annotations

import os
import re
import shutil
import sysconfig
import time
from pathlib import Path

import torch
from torch import nn

from accelqual_probes import zoo
from accelqual_probes.checks.function import tf32_math
from accelqual_probes.evidence import Evidence, NotApplicableError
from accelqual_probes.registry import CheckContext, CheckParams, check
from accelqual_probes.schema import Verdict


def version_tuple(text: str) -> tuple[int, ...]:
    """Leading numeric components of a version string: '2.13.0+cpu' -> (2, 13, 0)."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in match.group(1).split(".")) if match else ()


def driver_allowed(version: str, allowed: list[str], denied: list[str]) -> tuple[bool, str]:
    """Whether a driver version passes the profile's regular-expression lists (full match)."""
    for pattern in denied:
        if re.fullmatch(pattern, version):
            return False, f"driver {version} is on the deny-list ({pattern})"
    if allowed and not any(re.fullmatch(pattern, version) for pattern in allowed):
        return False, f"driver {version} is not on the allow-list ({', '.join(allowed)})"
    return True, f"driver {version} allowed"


@check("compat.stack", params=CheckParams, timeout_s=60, needs_device=False)
def stack(ctx: CheckContext, params: CheckParams) -> Evidence:
    """Framework, driver and runtime versions against the profile's stack policy."""
    evidence = Evidence()
    policy = ctx.profile.stack
    framework = torch.__version__
    if policy.min_framework and version_tuple(framework) < version_tuple(policy.min_framework):
        evidence.finding(Verdict.FAIL, f"torch {framework} is older than the required {policy.min_framework}")
    else:
        evidence.finding(Verdict.PASS, f"torch {framework}" + (f" >= {policy.min_framework}"
                                                                if policy.min_framework else ""))
    driver = ctx.device.driver_version()
    if driver is not None:
        allowed, reason = driver_allowed(driver, policy.allowed_drivers, [])
        evidence.finding(Verdict.PASS if allowed else Verdict.FAIL, reason)
    elif policy.allowed_drivers:
        evidence.finding(Verdict.FAIL, "driver version is not readable but the profile has a driver allow-list")
    runtime = ctx.device.runtime_version()
    if ctx.device.accelerator and runtime is None:
        evidence.finding(Verdict.WARN, f"{ctx.device.kind} runtime version is not readable")
    if ctx.device.kind == "cuda" and torch.version.cuda:
        nvml = ctx.device.nvml()
        supported = nvml.call("nvmlSystemGetCudaDriverVersion") if nvml is not None else None
        if isinstance(supported, int) and supported > 0:
            driver_cuda = (supported // 1000, supported % 1000 // 10)
            built = version_tuple(torch.version.cuda)[:2]
            # CUDA minor-version compatibility: a driver runs any runtime of its major version.
            if built and built[0] > driver_cuda[0]:
                evidence.finding(Verdict.FAIL, f"torch is built for CUDA {torch.version.cuda} but the driver "
                                               f"supports CUDA {driver_cuda[0]}.{driver_cuda[1]}")
    evidence.note(f"runtime {runtime or 'n/a'}")
    return evidence


class ModelsParams(CheckParams):
    #: Largest output error relative to the largest reference output magnitude.
    rtol: float = 1e-4


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    scale = max(want.abs().max().item(), 1e-30)
    return float((got.detach().cpu().to(torch.float64) - want).abs().max().item() / scale)


@check("compat.models", params=ModelsParams, timeout_s=120)
def models(ctx: CheckContext, params: ModelsParams) -> Evidence:
    """CNN, transformer encoder and decoder LM: build on the device, run fp32, match fp64 host."""
    evidence = Evidence()
    failures: list[tuple[float, int | None]] = []
    zoo_models = zoo.build_zoo(seed=21)
    references: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, (model, inputs) in zoo_models.items():
            reference_model = _copy(model).to(torch.float64)
            reference_inputs = inputs.to(torch.float64) if inputs.is_floating_point() else inputs
            references[name] = reference_model(reference_inputs)
    for index in ctx.devices:
        device = ctx.device.torch_device(index)
        failed: list[str] = []
        for name, (model, inputs) in zoo_models.items():
            ctx.checkpoint()
            try:
                with torch.no_grad(), ctx.device.compute(), tf32_math(False):
                    output = _copy(model).to(device)(inputs.to(device))
                    ctx.device.synchronize(index)
            except RuntimeError as exc:
                failed.append(f"{name} does not run: {str(exc).splitlines()[0][:120]}")
                continue
            error = _relative_error(output, references[name])
            evidence.measure(f"rel_error.{name}", error, "", index)
            if not error <= params.rtol:  # also catches NaN
                failed.append(f"{name} output differs from the fp64 reference by {error:.3g} (> {params.rtol:g})")
        failures.append((float(len(failed)), index))
        evidence.measure("models_failed", len(failed), "count", index)
        if failed:
            evidence.note(f"device {index}: " + "; ".join(failed))
    evidence.judge(ctx.threshold(), failures)
    return evidence


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def compiler_missing() -> str | None:
    """Why inductor cannot build kernels here (no C++ compiler or no Python headers), or None."""
    compilers = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
    if not any(c and shutil.which(c) for c in compilers):
        return "no C++ compiler (c++, g++, clang++) on PATH"
    include = sysconfig.get_paths().get("include", "")
    if not include or not (Path(include) / "Python.h").exists():
        return "Python development headers (Python.h) are not installed"
    return None


class CompileParams(CheckParams):
    rtol: float = 1e-4


@check("compat.compile", params=CompileParams, timeout_s=900)
def compile_model(ctx: CheckContext, params: CompileParams) -> Evidence:
    """torch.compile (inductor) of a small CNN: compiles, runs and matches eager mode."""
    import torch._dynamo as dynamo
    from torch._dynamo.eval_frame import is_dynamo_supported

    if not is_dynamo_supported():
        raise NotApplicableError("torch.compile is not supported on this Python/torch")
    missing = compiler_missing() if ctx.device.kind == "cpu" else None
    if missing is not None:
        raise NotApplicableError(f"torch.compile cannot build CPU kernels: {missing}")
    evidence = Evidence()
    device = ctx.device.torch_device(ctx.devices[0])
    model, inputs = zoo.build_zoo(seed=23)["cnn"]
    model = model.to(device)
    inputs = inputs.to(device)
    with torch.no_grad(), tf32_math(False):
        eager = model(inputs)
        started = time.perf_counter()
        try:
            # Outside the compute scope: dynamo refuses to trace under a dispatch mode.
            compiled = torch.compile(model, backend="inductor", dynamic=False)
            output = compiled(inputs)
            ctx.device.synchronize(ctx.devices[0])
        except Exception as exc:
            evidence.finding(Verdict.FAIL, f"torch.compile failed: {type(exc).__name__}: "
                                           f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
            return evidence
        finally:
            dynamo.reset()
        evidence.measure("compile_s", time.perf_counter() - started, "s")
    error = _relative_error(output, eager.to(torch.float64).cpu())
    evidence.measure("rel_error", error, "")
    if error <= params.rtol:
        evidence.finding(Verdict.PASS, f"compiled output matches eager within {error:.3g}")
    else:
        evidence.finding(Verdict.FAIL, f"compiled output differs from eager by {error:.3g} (> {params.rtol:g})")
    return evidence

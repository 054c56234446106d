"""General checks: inventory, usable memory, host link and host<->device copies.

`gen.inventory` and `gen.memory.capacity` run on every device kind; the host-link
checks need an accelerator (pinned host memory, NVML link state) and run on CUDA.
"""

from __future__ import annotations

import torch

from accelqual_probes import timing
from accelqual_probes.checks.multicard import nvml_or_skip
from accelqual_probes.devices.base import DeviceOutOfMemoryError
from accelqual_probes.evidence import Evidence, NotApplicableError
from accelqual_probes.registry import CheckContext, CheckParams, Sizing, check
from accelqual_probes.schema import Verdict
from accelqual_probes.thresholds import ThresholdRule, resolve

GB = 1e9


class InventoryParams(CheckParams):
    pass


@check("gen.inventory", params=InventoryParams, timeout_s=60, needs_device=False)
def inventory(ctx: CheckContext, params: InventoryParams) -> Evidence:
    """Device count against the node's expectation, one model throughout, matching the profile."""
    evidence = Evidence()
    found = ctx.device.device_count()
    expected = ctx.settings.expect_devices
    evidence.measure("devices", found, "count")
    evidence.measure("expected_devices", expected, "count")
    rule = ctx.rule()
    if rule.min is None:
        rule = rule.merged(ThresholdRule(min=expected))
    evidence.judge(resolve("devices", "count", rule, None, "expected"), [(found, None)], label="device count")
    names = sorted({ctx.device.device_name(i) for i in ctx.devices})
    for index in ctx.devices:
        evidence.measure("memory_gb", ctx.device.memory_total(index) / GB, "GB", index)
    if len(names) > 1:
        evidence.finding(Verdict.FAIL, f"mixed device models on one node: {', '.join(names)}")
    patterns = ctx.profile.match if ctx.device.accelerator else []
    for name in names:
        if patterns and not any(p.lower() in name.lower() for p in patterns):
            evidence.finding(Verdict.FAIL, f"device model {name!r} does not match profile {ctx.profile_name} "
                                           f"({', '.join(patterns)})")
    if ctx.device.accelerator and ctx.device.driver_version() is None:
        evidence.finding(Verdict.WARN, "driver version is not readable")
    evidence.note(f"model {names[0] if names else 'none'}, driver {ctx.device.driver_version() or 'n/a'}")
    return evidence


class CapacityParams(CheckParams):
    #: Allocation granularity; smaller chunks find the limit more precisely.
    chunk_bytes: int = 1 << 30

    @classmethod
    def for_run(cls, sizing: Sizing) -> CapacityParams:
        return cls(chunk_bytes=(1 << 30) if sizing.accelerator else (32 << 20))


@check("gen.memory.capacity", params=CapacityParams, timeout_s=120)
def memory_capacity(ctx: CheckContext, params: CapacityParams) -> Evidence:
    """Allocate in chunks up to the device's allocation bound (or until it fails), then free.

    On a CPU host the bound is small (see devices.cpu) and every page is touched, so
    the memory is really there and not merely promised by overcommit.
    """
    evidence = Evidence()
    values: list[tuple[float, int | None]] = []
    requested_bytes: dict[int, int] = {}
    ctx.device.trim()
    for index in ctx.devices:
        target = ctx.device.allocation_limit(index)
        requested_bytes[index] = target
        chunks: list[torch.Tensor] = []
        allocated = 0
        failure = ""
        try:
            while allocated < target:
                ctx.checkpoint()
                size = min(params.chunk_bytes, target - allocated)
                try:
                    chunk = ctx.device.empty(size, torch.uint8, index)
                except DeviceOutOfMemoryError as exc:
                    failure = str(exc)
                    break
                # Write one byte per 4 KiB page: the host must back the pages now.
                chunk[::4096].fill_(1)
                chunks.append(chunk)
                allocated += size
            ctx.device.synchronize(index)
        finally:
            for chunk in chunks:
                ctx.device.free(chunk)
            chunks.clear()
        usable = allocated / GB
        values.append((usable, index))
        evidence.measure("usable_gb", usable, "GB", index)
        evidence.measure("requested_gb", target / GB, "GB", index)
        if failure:
            evidence.note(f"device {index}: allocation stopped: {failure}")
    nominal, _ = ctx.profile.basis(ctx.spec)
    if ctx.relative or nominal is None:
        # No nominal size for this device: judge against what the probe asked for.
        basis = min(requested_bytes.values()) / GB
        threshold = ctx.threshold(basis=basis, basis_name="requested")
    else:
        threshold = ctx.threshold()
    evidence.judge(threshold, values)
    return evidence


class CopyParams(CheckParams):
    nbytes: int = 256 << 20
    rounds: int = 5


@check("gen.hostlink", params=CheckParams, timeout_s=120)
def hostlink(ctx: CheckContext, params: CheckParams) -> Evidence:
    """Negotiated PCIe generation and width, read by NVML while a copy keeps the link busy.

    Idle GPUs train their links down to save power, so the generation is read under load.
    """
    nvml = nvml_or_skip(ctx, "the link state")
    evidence = Evidence()
    widths: list[tuple[float, int | None]] = []
    expected = ctx.profile.host_link
    for index in ctx.devices:
        handle = nvml.handles[index]
        host = torch.empty(64 << 20, dtype=torch.uint8).pin_memory()
        target = torch.empty_like(host, device=ctx.device.torch_device(index))
        for _ in range(8):
            target.copy_(host, non_blocking=True)
        generation = nvml.call("nvmlDeviceGetCurrPcieLinkGeneration", handle)
        width = nvml.call("nvmlDeviceGetCurrPcieLinkWidth", handle)
        max_generation = nvml.call("nvmlDeviceGetMaxPcieLinkGeneration", handle)
        max_width = nvml.call("nvmlDeviceGetMaxPcieLinkWidth", handle)
        ctx.device.synchronize(index)
        if width is None or generation is None:
            evidence.finding(Verdict.ERROR, f"device {index}: PCIe link state not readable")
            continue
        evidence.measure("link_width", float(width), "lanes", index)
        evidence.measure("link_generation", float(generation), "", index)
        widths.append((float(width), index))
        want_generation = expected.generation if expected else max_generation
        if want_generation is not None and generation < want_generation:
            evidence.finding(Verdict.FAIL, f"device {index}: PCIe gen {generation} under load, expected "
                                           f"gen {want_generation}")
        if expected is None and max_width is not None:
            evidence.note(f"device {index}: max width x{max_width}")
    want_width = expected.width if expected else None
    rule = ctx.rule()
    if want_width is not None and rule.min is None:
        rule = rule.merged(ThresholdRule(min=want_width))
    if widths:
        evidence.judge(resolve("link_width", "lanes", rule, None, "profile host link"), widths)
    return evidence


def _host_copy(ctx: CheckContext, params: CopyParams, to_device: bool) -> Evidence:
    if not ctx.device.accelerator:
        raise NotApplicableError("needs an accelerator")
    evidence = Evidence()
    values: list[tuple[float, int | None]] = []
    for index in ctx.devices:
        host = torch.empty(params.nbytes, dtype=torch.uint8).pin_memory()
        device = torch.empty(params.nbytes, dtype=torch.uint8, device=ctx.device.torch_device(index))
        src, dst = (host, device) if to_device else (device, host)

        def work(repeats: int, src: torch.Tensor = src, dst: torch.Tensor = dst) -> None:
            for _ in range(repeats):
                dst.copy_(src, non_blocking=True)

        sync = lambda index=index: ctx.device.synchronize(index)  # noqa: E731
        seconds = timing.best_of(work, 4, params.rounds, sync, ctx.checkpoint)
        gbps = params.nbytes / seconds / GB
        values.append((gbps, index))
        evidence.measure("gbps", gbps, "GB/s", index)
    evidence.judge(ctx.threshold(), values, ctx.warn_below())
    return evidence


@check("gen.h2d", params=CopyParams, timeout_s=120)
def host_to_device(ctx: CheckContext, params: CopyParams) -> Evidence:
    """Pinned host memory to device, best of several rounds, against the profile's host link."""
    return _host_copy(ctx, params, to_device=True)


@check("gen.d2h", params=CopyParams, timeout_s=120)
def device_to_host(ctx: CheckContext, params: CopyParams) -> Evidence:
    """Device to pinned host memory, best of several rounds, against the profile's host link."""
    return _host_copy(ctx, params, to_device=False)

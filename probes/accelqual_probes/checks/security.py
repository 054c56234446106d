"""Security checks: residual memory across processes, partition isolation, privileges, firmware lists.

`sec.residual` is a LeftoverLocals-style test with two real processes: process A
writes a random secret into device memory and frees it; process B then allocates
uninitialised device memory and scans it for the secret. Both reach the device through
the same backend (and fault layer) as the probe. On a CPU host the children are forked
from the probe, which has torch loaded already (a fresh interpreter would spend seconds
importing it); accelerator runtimes do not survive a fork, so there they are spawned.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from accelqual_probes.checks.compatibility import driver_allowed
from accelqual_probes.checks.multicard import nvml_or_skip
from accelqual_probes.devices import BackendSpec, reopen
from accelqual_probes.devices.nvml import text
from accelqual_probes.evidence import Evidence, NotApplicableError
from accelqual_probes.registry import CheckContext, CheckParams, Sizing, check
from accelqual_probes.schema import Verdict

SERVICE_ACCOUNT_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def _residual_writer(spec: BackendSpec, index: int, numel: int, secret: int, conn: Connection) -> None:
    """Process A: fill device memory with the secret, then free it and exit."""
    try:
        backend = reopen(spec)
        buffer = backend.empty(numel, torch.int64, index)
        buffer.fill_(secret)
        backend.synchronize(index)
        backend.free(buffer)
        del buffer
        backend.close()
        conn.send(("ok", numel * 8))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"))
    finally:
        conn.close()


def _residual_scanner(spec: BackendSpec, index: int, numel: int, secret: int, conn: Connection) -> None:
    """Process B: allocate without initialising and count the words that hold the secret."""
    try:
        backend = reopen(spec)
        buffer = backend.empty(numel, torch.int64, index)
        found = int((buffer == secret).sum().item())
        backend.free(buffer)
        del buffer
        backend.close()
        conn.send(("ok", found))
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"))
    finally:
        conn.close()


class ResidualParams(CheckParams):
    nbytes: int = 256 << 20
    #: Seconds each child may take (a spawned child imports torch and starts the runtime).
    child_timeout_s: float = 120.0

    @classmethod
    def for_run(cls, sizing: Sizing) -> ResidualParams:
        if sizing.accelerator:
            return cls(nbytes=256 << 20, child_timeout_s=120.0)
        return cls(nbytes=(32 << 20) if sizing.quick else (64 << 20), child_timeout_s=30.0)


def _run_child(method: str, target: object, args: tuple[object, ...], timeout_s: float) -> tuple[str, int | str]:
    # A forked child flushes the stdio buffers it inherited when it exits: empty them first,
    # or buffered output (pod mode's report line is written last) could appear twice.
    sys.stdout.flush()
    sys.stderr.flush()
    context = multiprocessing.get_context(method)
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(*args, sender), daemon=True)  # type: ignore[attr-defined]
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            return "error", f"child process gave no answer within {timeout_s:g} s"
        status, value = receiver.recv()
        return str(status), value
    except EOFError:
        return "error", f"child process died (exit code {process.exitcode})"
    finally:
        receiver.close()
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)


@check("sec.residual", params=ResidualParams, timeout_s=300)
def residual(ctx: CheckContext, params: ResidualParams) -> Evidence:
    """Memory freed by process A must not be readable by process B."""
    evidence = Evidence()
    method = "spawn" if ctx.device.accelerator else "fork"
    spec = ctx.device.spec()
    numel = params.nbytes // 8
    values: list[tuple[float, int | None]] = []
    for index in ctx.devices:
        ctx.checkpoint()
        # Odd and random per run: stale data of an earlier run cannot look like a leak.
        secret = secrets.randbits(62) | 1
        status, written = _run_child(method, _residual_writer, (spec, index, numel, secret), params.child_timeout_s)
        if status != "ok":
            evidence.finding(Verdict.ERROR, f"device {index}: process A failed: {written}")
            continue
        status, found = _run_child(method, _residual_scanner, (spec, index, numel, secret), params.child_timeout_s)
        if status != "ok" or not isinstance(found, int):
            evidence.finding(Verdict.ERROR, f"device {index}: process B failed: {found}")
            continue
        leaked = found * 8
        values.append((float(leaked), index))
        evidence.measure("leaked_bytes", leaked, "bytes", index)
        evidence.measure("scanned_bytes", numel * 8, "bytes", index)
        if leaked:
            evidence.note(f"device {index}: process B read {leaked} bytes of the secret process A freed")
    if values:
        evidence.judge(ctx.threshold(), values)
    return evidence


@check("sec.isolation", params=CheckParams, timeout_s=120)
def isolation(ctx: CheckContext, params: CheckParams) -> Evidence:
    """Under MIG, the probe sees only its own instance: its memory, and no more can be allocated."""
    nvml = nvml_or_skip(ctx, "the partition mode")
    evidence = Evidence()
    partitioned = False
    for index in ctx.devices:
        handle = nvml.handles[index]
        mode = nvml.call("nvmlDeviceGetMigMode", handle)
        parent = nvml.call("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", handle)
        is_instance = parent is not None
        if not is_instance and not (isinstance(mode, tuple | list) and mode and mode[0]):
            continue
        partitioned = True
        visible = ctx.device.memory_total(index)
        whole = nvml.call("nvmlDeviceGetMemoryInfo", parent if parent is not None else handle)
        whole_total = int(getattr(whole, "total", 0) or 0)
        evidence.measure("visible_gb", visible / 1e9, "GB", index)
        if whole_total and visible >= whole_total:
            evidence.finding(Verdict.FAIL, f"device {index}: the partition exposes the whole card's memory")
            continue
        try:
            beyond = torch.empty(visible + (1 << 30), dtype=torch.uint8, device=ctx.device.torch_device(index))
        except RuntimeError:
            evidence.finding(Verdict.PASS, f"device {index}: confined to its {visible / 1e9:.1f} GB partition")
        else:
            del beyond
            evidence.finding(Verdict.FAIL, f"device {index}: allocated beyond its partition's memory")
        torch.cuda.empty_cache()
    if not partitioned:
        raise NotApplicableError("no partitions: MIG is not enabled on these devices")
    return evidence


def read_status(path: Path = Path("/proc/self/status")) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


class PrivilegeParams(CheckParams):
    pass


@check("sec.privileges", params=PrivilegeParams, timeout_s=30, needs_device=False)
def privileges(ctx: CheckContext, params: PrivilegeParams) -> Evidence:
    """No root, no effective capabilities, no Kubernetes API token in a probe pod.

    Outside a pod (no KUBERNETES_SERVICE_HOST) the probe is a local tool run by a person,
    for whom root is a warning, not a failure.
    """
    evidence = Evidence()
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    strict = Verdict.FAIL if in_pod else Verdict.WARN
    uid = os.geteuid()
    status = read_status()
    cap_eff = int(status.get("CapEff", "0") or "0", 16)
    capabilities = bin(cap_eff).count("1")
    token = SERVICE_ACCOUNT_TOKEN.exists()
    evidence.measure("uid", uid, "")
    evidence.measure("capabilities", capabilities, "count")
    evidence.measure("api_token", 1 if token else 0, "")
    where = "in a pod" if in_pod else "outside a pod"
    if uid == 0:
        evidence.finding(strict, f"runs as root ({where})")
    if capabilities:
        evidence.finding(strict, f"holds {capabilities} effective capabilities (CapEff {cap_eff:#x}, {where})")
    if token:
        evidence.finding(Verdict.FAIL, f"a Kubernetes service-account token is mounted at {SERVICE_ACCOUNT_TOKEN}")
    if status.get("NoNewPrivs") == "0" and in_pod:
        evidence.note("NoNewPrivs is not set (allowPrivilegeEscalation: false would set it)")
    if not evidence.findings:
        evidence.finding(Verdict.PASS, f"uid {uid}, no capabilities, no API token ({where})")
    return evidence


@check("sec.firmware", params=CheckParams, timeout_s=30, needs_device=False)
def firmware(ctx: CheckContext, params: CheckParams) -> Evidence:
    """Driver (and VBIOS where readable) against the profile's allow- and deny-lists."""
    driver = ctx.device.driver_version()
    if driver is None:
        raise NotApplicableError(f"no driver version is readable on {ctx.device.kind}")
    policy = ctx.profile.stack
    evidence = Evidence()
    allowed, reason = driver_allowed(driver, policy.allowed_drivers, policy.denied_drivers)
    evidence.finding(Verdict.PASS if allowed else Verdict.FAIL, reason)
    nvml = ctx.device.nvml()
    if nvml is not None:
        versions = sorted({v for v in (text(nvml.call("nvmlDeviceGetVbiosVersion", h)) for h in nvml.handles) if v})
        if len(versions) > 1:
            evidence.finding(Verdict.WARN, f"mixed VBIOS versions on one node: {', '.join(versions)}")
        if versions:
            evidence.note(f"VBIOS {', '.join(versions)}")
    return evidence

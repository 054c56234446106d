"""Modelled probe containers: reports derived from the card profile, realistic noise and the node's faults.

For fleet-scale simulations (thousands of nodes cannot each run torch on two cores)
and for end-to-end scenarios that need a particular output: a hostile one (garbage,
oversized, forged, claiming another node), a crash or a hang. The report goes through
the same schema, thresholds and markers as the real probe's, so the operator cannot
tell the difference except by content.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from accelqual_probes.catalog import BY_ID, GEMM_DTYPES, Basis, Suite, select
from accelqual_probes.profiles import BUILTIN, CardProfileSpec
from accelqual_probes.schema import (
    REPORT_MARKER,
    SCHEMA_VERSION,
    VERDICT_MARKER,
    CheckResult,
    CompactVerdict,
    DeviceInfo,
    Inventory,
    Measurement,
    ProbeReport,
    Reading,
    Threshold,
    Verdict,
    group_readings,
    overall_verdict,
)
from accelqual_probes.thresholds import evaluate, warn_floor

from accelqual.sim.kubelet import EVICTED, OOM_KILLED, RunningProbe, SimNode

#: Measured/nominal of a healthy card per basis (public A100/H100 runs; DESIGN.md section 6).
HEALTHY_FRACTION = {Basis.PEAK: 0.8, Basis.MEMBW: 0.85, Basis.MEMORY: 0.98, Basis.HOSTLINK: 0.85,
                    Basis.INTERCONNECT: 0.78, Basis.REFERENCE: 0.97}
#: Typical values of checks that have no nominal basis.
TYPICAL = {"tokens_per_s": 50000.0, "p99_ms": 4.0, "samples_per_s": 2000.0, "agreement": 0.999,
           "launch_us": 6.0, "temperature_c": 62.0, "efficiency": 0.9, "samples_per_joule": 5.0}

#: What each check of the probe measures (see `accelqual_probes.checks`): (metric, unit, once per device), its
#: primary metric among them. A report's size, and so what judging it costs the operator, grows with these
#: and with the node's devices: the standard report of an 8-card node holds about 500 values, not 35.
#: A check not listed measures its primary metric on each device.
_PER_DEVICE, _PER_NODE = True, False
MEASURED: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "gen.inventory": (("devices", "count", _PER_NODE), ("expected_devices", "count", _PER_NODE),
                      ("memory_gb", "GB", _PER_DEVICE)),
    "gen.memory.capacity": (("usable_gb", "GB", _PER_DEVICE), ("requested_gb", "GB", _PER_DEVICE)),
    "gen.hostlink": (("link_width", "lanes", _PER_DEVICE), ("link_generation", "", _PER_DEVICE)),
    "func.dtypes": tuple((f"max_rel_error.{dtype}", "", _PER_DEVICE) for dtype in GEMM_DTYPES),
    "func.ops": (("ops_failed", "count", _PER_DEVICE), ("ops_tested", "count", _PER_DEVICE)),
    "func.p2p": (("pairs_failed", "count", _PER_NODE), ("pairs_tested", "count", _PER_NODE)),
    "func.collectives": (("errors", "count", _PER_NODE),),
    **{f"perf.gemm.{dtype}": (("tflops", "TFLOPS", _PER_DEVICE), ("fraction_of_nominal", "", _PER_DEVICE))
       for dtype in GEMM_DTYPES},
    "perf.membw": (("gbps", "GB/s", _PER_DEVICE), ("triad_gbps", "GB/s", _PER_DEVICE)),
    "perf.allreduce": (("busbw_gbps", "GB/s", _PER_NODE), ("algbw_gbps", "GB/s", _PER_NODE)),
    "compat.stack": (),
    "compat.models": (("rel_error.cnn", "", _PER_DEVICE), ("rel_error.encoder", "", _PER_DEVICE),
                      ("rel_error.decoder_lm", "", _PER_DEVICE), ("models_failed", "count", _PER_DEVICE)),
    "rel.stress": (("mismatches", "count", _PER_DEVICE), ("cv", "", _PER_DEVICE), ("tflops", "TFLOPS", _PER_DEVICE)),
    "rel.memtest": (("bad_words", "count", _PER_DEVICE), ("tested_gb", "GB", _PER_DEVICE)),
    "rel.ecc": (("uncorrectable", "count", _PER_DEVICE), ("uncorrectable_total", "count", _PER_DEVICE)),
    "sec.residual": (("leaked_bytes", "bytes", _PER_DEVICE), ("scanned_bytes", "bytes", _PER_DEVICE)),
    "sec.isolation": (("visible_gb", "GB", _PER_DEVICE),),
    "sec.privileges": (("uid", "", _PER_NODE), ("capabilities", "count", _PER_NODE), ("api_token", "", _PER_NODE)),
    "sec.firmware": (),
    "train.step": (("tokens_per_s", "tokens/s", _PER_DEVICE), ("mfu", "", _PER_DEVICE), ("loss_first", "", _PER_DEVICE),
                   ("loss_last", "", _PER_DEVICE), ("loss_drop", "", _PER_DEVICE),
                   ("trajectory_deviation", "", _PER_DEVICE)),
    "train.scaling": (("efficiency", "", _PER_NODE), ("samples_per_s_1", "samples/s", _PER_NODE),
                      ("samples_per_s_all", "samples/s", _PER_NODE)),
    "infer.latency": (("p50_ms", "ms", _PER_DEVICE), ("p99_ms", "ms", _PER_DEVICE)),
    "infer.throughput": (("samples_per_s", "samples/s", _PER_DEVICE), ("best_batch", "", _PER_DEVICE)),
    "infer.efficiency": (("samples_per_joule", "samples/J", _PER_DEVICE), ("watts", "W", _PER_DEVICE),
                         ("samples_per_s", "samples/s", _PER_DEVICE)),
}
#: Typical values of the measurements beside the primary ones.
SECONDARY = {"link_width": 16.0, "link_generation": 5.0, "ops_tested": 42.0, "rel_error.cnn": 2e-7,
             "rel_error.encoder": 3e-7, "rel_error.decoder_lm": 4e-7, "cv": 0.01, "tflops": 48.0, "tested_gb": 72.0,
             "scanned_bytes": 1 << 30, "visible_gb": 80.0, "uid": 65534.0, "mfu": 0.42, "loss_first": 10.4,
             "loss_last": 6.1, "loss_drop": 0.41, "trajectory_deviation": 0.002, "samples_per_s_1": 2000.0,
             "p50_ms": 3.1, "best_batch": 64.0, "watts": 600.0, "samples_per_s": 2000.0}
#: Secondary measurements that vary between runs and devices (the others are counts, sizes and settings).
_NOISY = frozenset({"cv", "tflops", "mfu", "loss_first", "loss_last", "loss_drop",
                    "trajectory_deviation", "samples_per_s_1", "samples_per_s_all", "p50_ms", "watts",
                    "samples_per_s", "triad_gbps", "algbw_gbps"})

#: Scripted behaviours a node can be given (SimNode.env["ACCELQUAL_SIM_BEHAVIOUR"]). `oom`: the container
#: is OOM-killed (exit 137) after printing a passing report; `evicted`: the kubelet evicts the pod as
#: its probe finishes with a passing report (neither may pass the node).
BEHAVIOURS = ("pass", "garbage", "huge", "forged", "other-node", "crash", "hang", "silent", "oom", "evicted")


def _args(pod: Mapping[str, Any]) -> dict[str, str]:
    args = list(pod["spec"]["containers"][0].get("args") or [])
    parsed: dict[str, str] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--") and i + 1 < len(args) and not args[i + 1].startswith("--"):
            parsed[arg[2:]] = args[i + 1]
    return parsed


def _devices(args: Mapping[str, str]) -> int:
    """The cards the operator told the probe to expect (`--expect-devices`, from the node's allocatable), else 1."""
    try:
        return max(0, min(int(args.get("expect-devices", "1")), 64))
    except ValueError:
        return 1


def _fault_factor(faults: list[str], name: str) -> float | None:
    for fault in faults:
        key, _, value = fault.partition("=")
        if key == name:
            return float(value) if value else 0.0
    return None


def modelled_report(node: SimNode, profile_name: str, profile: CardProfileSpec, suite: Suite,
                    checks: list[str], rng: random.Random, *, noise: float = 0.02,
                    started: datetime | None = None, devices: int = 1) -> ProbeReport:
    """A report as a node with `devices` healthy cards of `profile` would produce it, perturbed by its faults.

    Its shape is the real probe's (`MEASURED`): each card's measurements, and the node's."""
    started = started or datetime.now(UTC)
    slow_compute = _fault_factor(node.faults, "slow-compute")
    slow_memory = _fault_factor(node.faults, "slow-memory")
    shortfall = _fault_factor(node.faults, "memory-shortfall")
    bad_dtype = next((f.split("=", 1)[1] for f in node.faults if f.startswith("bad-dtype=")), None)
    corrupt = any(f.startswith("corrupt=") for f in node.faults)
    found = max(0, devices - 1) if "missing-device" in node.faults else devices
    memory_gb = profile.basis(BY_ID["gen.memory.capacity"])[0] or 80.0
    results: list[CheckResult] = []
    for check_id in checks:
        spec = BY_ID.get(check_id)
        if spec is None:
            continue
        if spec.accelerator_only and profile.device_type == "cpu":
            results.append(CheckResult(id=check_id, category=spec.category, verdict=Verdict.SKIP,
                                       reason="needs an accelerator; the device is a CPU"))
            continue
        basis, basis_name = profile.basis(spec)
        if profile.relative_to_reference and spec.basis in (Basis.PEAK, Basis.MEMBW):
            basis, basis_name = 100.0, "reference"
        fraction = HEALTHY_FRACTION.get(spec.basis if basis is not None else Basis.REFERENCE, 0.97)
        value = (basis * fraction) if basis is not None else TYPICAL.get(spec.metric, 1.0)
        # Measurements vary between cards and runs; correctness metrics do not, nor does a card's memory.
        varies = (spec.fleet_compare or spec.basis is not Basis.NONE) and spec.basis is not Basis.MEMORY
        if spec.basis is Basis.PEAK and slow_compute is not None:
            value *= slow_compute
        if spec.basis is Basis.MEMBW and slow_memory is not None:
            value *= slow_memory
        if spec.basis is Basis.MEMORY and shortfall is not None:
            value = (basis or 1.0) * shortfall
        if spec.metric in ("mismatches", "bad_words", "leaked_bytes", "errors", "ops_failed", "models_failed",
                           "pairs_failed", "uncorrectable"):
            value = 0.0
            if "residual-memory" in node.faults and check_id == "sec.residual":
                value = 4096.0
            if corrupt and check_id == "rel.stress":
                value = 17.0
        if check_id == "gen.inventory":
            value = float(found)
        primary: dict[int | None, float] = {}
        readings: list[Reading] = []
        shape = MEASURED.get(check_id, ((spec.metric, spec.unit, _PER_DEVICE),) if spec.metric else ())
        for metric, unit, per_device in shape:
            for index in (range(found) if per_device else (None,)):
                if metric == spec.metric:
                    measured = primary[index] = value * (1.0 + rng.gauss(0.0, noise)) if varies else value
                else:
                    measured = _secondary(metric, primary.get(index, value), basis, found, devices, memory_gb,
                                          rng, noise)
                    if metric.startswith("max_rel_error."):
                        measured = 0.5 if corrupt or metric == f"max_rel_error.{bad_dtype}" else 1e-6
                readings.append(Reading(metric, measured, unit, index))
        results.append(_evaluated(check_id, profile, basis, basis_name, primary, group_readings(readings), devices))
    verdict, reason = overall_verdict(results)
    finished = started + timedelta(seconds=30 + rng.random() * 5)
    cards = [DeviceInfo(index=i, name=profile.display_name, memory_bytes=int(memory_gb * 1e9),
                        uuid=f"GPU-{i:08x}-{node.name}"[:253], bus_id=f"0000:{0x18 + 0x10 * i:02x}:00.0")
             for i in range(found)]
    return ProbeReport(
        node=node.name, profile=profile_name, suite=suite.value, verdict=verdict, reason=reason,
        started_at=started, finished_at=finished, duration_seconds=(finished - started).total_seconds(),
        inventory=Inventory(hostname=node.name, device_type=profile.device_type, vendor=profile.vendor,
                            model=profile.display_name, count=found, devices=cards,
                            driver_version=node.env.get("SIM_DRIVER", "sim-1.0"), probe_version="modelled"),
        checks=results, injected_faults=list(node.faults),
    )


def _secondary(metric: str, primary: float, basis: float | None, found: int, devices: int, memory_gb: float,
               rng: random.Random, noise: float) -> float:
    """A measurement beside a check's primary one, given that one's value on the same card (or the node)."""
    derived = {"fraction_of_nominal": primary / basis if basis else 1.0, "triad_gbps": 0.92 * primary,
               "algbw_gbps": primary * found / (2 * max(found - 1, 1)), "memory_gb": memory_gb,
               "requested_gb": memory_gb, "expected_devices": float(devices),
               "pairs_tested": float(found * (found - 1)),
               "samples_per_s_all": SECONDARY["samples_per_s_1"] * found * primary}
    value = derived.get(metric, SECONDARY.get(metric, 0.0))
    return value * (1.0 + rng.gauss(0.0, noise)) if metric in _NOISY else value


def _evaluated(check_id: str, profile: CardProfileSpec, basis: float | None, basis_name: str,
               primary: Mapping[int | None, float], measurements: list[Measurement], devices: int) -> CheckResult:
    spec = BY_ID[check_id]
    pairs = [(v, d) for d, v in primary.items()]
    if check_id == "gen.inventory":
        threshold = Threshold(metric="devices", min=float(devices), unit="count", basis="expected")
        verdict, reason = evaluate(pairs, threshold)
        return CheckResult(id=check_id, category=spec.category, verdict=verdict, reason=f"device count: {reason}",
                           measurements=measurements, thresholds=[threshold], duration_seconds=0.1)
    if check_id == "func.dtypes":
        worst = max((v for m in measurements for v in m.values), default=0.0)
        verdict, reason = (Verdict.PASS, "all dtypes within tolerance") if worst < 1e-3 else (
            Verdict.FAIL, f"max relative error {worst:g} over tolerance")
        return CheckResult(id=check_id, category=spec.category, verdict=verdict, reason=reason,
                           measurements=measurements, duration_seconds=0.5)
    rule = profile.rule(check_id)
    has_rule = any(v is not None for v in (rule.min, rule.max)) or (
        basis is not None and (rule.min_fraction is not None or rule.max_fraction is not None))
    if not pairs or not has_rule:
        return CheckResult(id=check_id, category=spec.category, verdict=Verdict.PASS, reason="ok",
                           measurements=measurements, duration_seconds=0.5)
    threshold = profile.threshold(check_id, basis, basis_name) if basis is not None else profile.threshold(check_id)
    verdict, reason = evaluate(pairs, threshold, warn_floor(rule, basis))
    return CheckResult(id=check_id, category=spec.category, verdict=verdict, reason=reason,
                       measurements=measurements, thresholds=[threshold], duration_seconds=1.0)


class _Modelled:
    """A 'container' that finishes after `duration` seconds with a prepared output."""

    def __init__(self, output: str, termination: str, code: int | None, duration: float,
                 clock: Callable[[], float], ended_by: str = "") -> None:
        self._output = output
        self._termination = termination
        self._code = code
        self._clock = clock
        self._done_at = clock() + duration
        self._killed = threading.Event()
        self._ended_by = ended_by

    def poll(self) -> int | None:
        if self._killed.is_set():
            return 137
        if self._code is None or self._clock() < self._done_at:
            return None
        return self._code

    def kill(self) -> None:
        self._killed.set()

    def output(self) -> str:
        return self._output

    def termination_message(self) -> str:
        return self._termination

    def ended_by(self) -> str:
        return "" if self._killed.is_set() else self._ended_by


class ModelledProbeRunner:
    """Produces modelled outputs; a node's `ACCELQUAL_SIM_BEHAVIOUR` env selects a scripted one."""

    def __init__(self, *, duration: float = 0.5, seed: int = 0, noise: float = 0.02,
                 clock: Callable[[], float] = time.monotonic,
                 profiles: Mapping[str, CardProfileSpec] | None = None,
                 jitter: float = 0.0, wallclock: Callable[[], datetime] | None = None) -> None:
        self.duration = duration
        self.noise = noise
        self.clock = clock
        #: Each probe's duration varies by up to this fraction (drawn from the seeded generator).
        self.jitter = jitter
        #: The time stamped on reports (a simulated clock in rehearsals); None: the real time.
        self.wallclock = wallclock
        self.profiles = dict(profiles or BUILTIN)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def start(self, pod: Mapping[str, Any], node: SimNode) -> RunningProbe:
        args = _args(pod)
        behaviour = node.env.get("ACCELQUAL_SIM_BEHAVIOUR", "pass")
        suite = Suite(args.get("suite", "quick"))
        checks = select(suite, args["checks"].split(",") if "checks" in args else None,
                        args["skip-checks"].split(",") if "skip-checks" in args else None)
        profile_name = args.get("profile", "auto")
        if profile_name == "auto":
            profile_name = "cpu-reference"
        for item in pod["spec"]["containers"][0].get("env") or []:
            if item.get("name") == "ACCELQUAL_PROFILE_JSON":
                doc = json.loads(item["value"])
                self.profiles[doc["name"]] = CardProfileSpec.model_validate(doc["spec"])
        profile = self.profiles.get(profile_name, BUILTIN["cpu-reference"])
        with self._lock:
            seed = self._rng.random()
            duration = self.duration
            if self.jitter:
                duration *= 1.0 + self.jitter * (2.0 * self._rng.random() - 1.0)
        started = self.wallclock() if self.wallclock is not None else None
        report = modelled_report(node, profile_name, profile, suite, checks, random.Random(seed), noise=self.noise,
                                 started=started, devices=_devices(args))
        code = {"pass": 0, "fail": 1, "inconclusive": 2}[report.verdict.value]
        output = f"accelqual probe: {len(checks)} checks on {node.name}\n{REPORT_MARKER}{report.to_json()}\n"
        termination = VERDICT_MARKER + CompactVerdict.of(report).model_dump_json(by_alias=True)
        if behaviour == "garbage":
            output, termination, code = "\x00\xff not a report {{{\n" * 20, "garbage", 0
        elif behaviour == "huge":
            output = REPORT_MARKER + "{" + "x" * (10 * 1024 * 1024) + "\n"
            termination, code = "", 0
        elif behaviour == "forged":
            claim = {"schemaVersion": SCHEMA_VERSION, "verdict": "pass", "node": node.name}
            output = f"{REPORT_MARKER}{json.dumps(claim)}\n"
            termination, code = VERDICT_MARKER + '{"verdict": "pass"}', 0
        elif behaviour == "other-node":
            forged = report.model_copy(update={"node": "some-other-node"})
            output = f"{REPORT_MARKER}{forged.to_json()}\n"
        elif behaviour == "crash":
            output, termination, code = "Traceback (most recent call last):\nRuntimeError: CUDA error\n", "", 1
        elif behaviour == "silent":
            output, termination, code = "", "", 0
        elif behaviour == "hang":
            return _Modelled("started\n", "", None, duration, self.clock)
        elif behaviour == "oom":
            return _Modelled(output, "", 137, duration, self.clock, ended_by=OOM_KILLED)
        elif behaviour == "evicted":
            return _Modelled(output, termination, code, duration, self.clock, ended_by=EVICTED)
        return _Modelled(output, termination, code, duration, self.clock)

"""Control-plane scale: the real operator qualifying N simulated nodes, measured from outside.

    .venv/bin/python benchmarks/control_plane.py --nodes 5000

The emulated API server, the simulated kubelet and the local S3 run in this process;
the operator runs as a separate `accelqual operator` process against a kubeconfig, so
its CPU time and peak RSS are its own (read from /proc), and the emulator's cost is
reported separately. Probe containers are modelled (a report of the real probe's shape for
each of the node's eight cards, derived from the card profile with noise and seeded faults,
ready after `--probe-seconds`, 0 by default), so the time from run start to all verdicts
measures the control plane, not the probes. With real probe durations (`--probe-seconds 30
--probe-jitter 0.5`) pods finish one by one and the operator reconciles at its pacing bound
for the whole run, so CPU per node grows with the run's length. The kubelet runs in
its fleet mode by default (`--kubelet fleet`: watches, and pod status written into the
emulator's store), which halves this process's CPU: it is reported apart, but a busy
neighbour on the other core makes the operator's own work cost more CPU here (the
calibration below shows by how much).

The two processes share this machine's caches and memory bus, and the host's speed drifts
by tens of percent between minutes. A calibration measures the drift in the same run: a fixed
piece of operator-like work (validating a modelled one-card probe report of the first schema
version, as the operator did until v2; kept fixed so that its unit does not move with the code
it measures) runs in a process of its own before the run and every `--calibrate-every` seconds
during it. `co_run_slowdown` compares its CPU time during the run with before it, and
`cpu_per_node_in_calibrations` gives the operator's CPU per node in units of it, which
compares runs (and code versions, and hosts) despite the drift. The work is a tight loop whose code
and data stay in the CPU caches, so it does not show what the operator loses when its
caches go cold between small pieces of work (see `accelqual.pacing`). The targets are
judged on the CPU as measured.

Prints, side by side, the measured values and the targets of the issue, and as the last
line a one-line summary of the targets met.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from accelqual.pacing import DEFAULT_INTERVAL_SECONDS, DEFAULT_RECONCILE_WAIT_FACTOR, io_batch_ms, reconcile_wait_factor
from accelqual.sim.kubelet import SimNode
from accelqual.sim.modelled import ModelledProbeRunner, modelled_report
from accelqual_probes.hostinfo import describe_cpu, read_meminfo

TARGETS = {"mutating_per_node": 4.0, "cpu_ms_per_node": 2.0, "status_kib": 32.0, "rss_mb": 300.0}
#: The operator's mutating requests, as the emulator counts them ("verb resource[/subresource]"). The
#: simulated kubelet's own requests (pod binding, pod status) are the kubelet's, not the operator's.
OPERATOR_MUTATING = ("create pods", "delete pods", "patch nodes", "create events", "patch qualifications/status",
                     "patch qualifications", "create configmaps", "patch configmaps")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


#: Repetitions of the calibration work per measurement: about half a second of CPU on an idle core here.
CALIBRATION_REPS = 2000


def _first_version_report_model() -> type[Any]:
    """The probe report model as the operator validated it until schema v2: one object per measured
    value. The calibration keeps doing that work, so that its unit stays the same across versions of
    the code it measures (it was this work in the runs docs/performance.md compares)."""
    from typing import Annotated, Literal

    from accelqual_probes.schema import MAX_MEASUREMENTS, CheckResult, FiniteFloat, ProbeReport
    from pydantic import ConfigDict, Field
    from pydantic.dataclasses import dataclass as pydantic_dataclass

    @pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
    class FirstMeasurement:
        metric: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_.:/-]+$")]
        value: FiniteFloat
        unit: Annotated[str, Field(max_length=32)] = ""
        device: Annotated[int, Field(ge=0, le=1023)] | None = None

    class FirstCheck(CheckResult):
        measurements: Annotated[list[FirstMeasurement], Field(max_length=MAX_MEASUREMENTS, default_factory=list)]  # type: ignore[assignment]

    class FirstReport(ProbeReport):
        schema_version: Literal["accelqual.io/v1"] = "accelqual.io/v1"  # type: ignore[assignment]
        checks: Annotated[list[FirstCheck], Field(max_length=256)]  # type: ignore[assignment]

    return FirstReport


def calibration_document() -> str:
    """The calibration's input: a modelled one-card standard-suite report of an H100 in the first schema
    version's shape (75 measured values), the same document as before schema v2."""
    from accelqual_probes.catalog import Suite, select
    from accelqual_probes.profiles import BUILTIN

    profile = BUILTIN["h100-sxm"]
    checks = list(select(Suite.STANDARD, None, None))
    node = SimNode(name="calibration", labels={}, allocatable={}, faults=[])
    doc = modelled_report(node, "h100-sxm", profile, Suite.STANDARD, checks, random.Random(1)).to_json_dict()
    doc["schemaVersion"] = "accelqual.io/v1"
    for check in doc["checks"]:
        check["measurements"] = [
            {"metric": m["metric"], "unit": m.get("unit", ""), "value": value,
             **({"device": m["devices"][i]} if "devices" in m else {})}
            for m in check["measurements"] for i, value in enumerate(m["values"])]
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def calibration_work(reps: int) -> float:
    """CPU seconds per repetition of a fixed piece of operator-like work: validating one modelled
    probe report as the operator did (JSON parsing, pydantic-core, many small objects)."""
    model = _first_version_report_model()
    text = calibration_document()
    model.model_validate_json(text)
    start = time.thread_time()
    for _ in range(reps):
        model.model_validate_json(text)
    return (time.thread_time() - start) / reps


def calibrate(reps: int = CALIBRATION_REPS) -> float | None:
    """`calibration_work` in a fresh process (its own caches and heap, like the operator's); None if it failed."""
    try:
        done = subprocess.run([sys.executable, __file__, "--calibrate", str(reps)], capture_output=True, text=True,
                              timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"calibration failed: {exc}", file=sys.stderr)
        return None
    try:
        return float(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f"calibration failed: {done.stderr[-400:]}", file=sys.stderr)
        return None


class CoRunCalibration:
    """Calibration measurements in a background thread while the run goes, every `every` seconds."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="calibration", daemon=True)

    def __enter__(self) -> CoRunCalibration:
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            value = calibrate()
            if value is not None and not self._stop.is_set():  # a measurement that ended with the run counts not
                self.values.append(value)


def machine() -> dict[str, Any]:
    """The machine the benchmark ran on, as `docs/performance.md` shows it."""
    return {"cpu": describe_cpu(), "cores": os.cpu_count(),
            "memory_gib": round(read_meminfo().get("MemTotal", 0) / (1 << 30), 1), "python": platform.python_version(),
            "kernel": platform.release(), "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_average_start": [round(v, 2) for v in os.getloadavg()]}


def nodes(count: int, faulty: int) -> list[SimNode]:
    step = max(1, count // max(faulty, 1))
    faulty_idx = set(range(0, count, step)[:faulty]) if faulty else set()
    return [SimNode(name=f"bench-{i:05d}", labels={"accelqual.io/pool": "bench",
                                                   "accelqual.io/profile": "h100-sxm"},
                    allocatable={"cpu": "96", "memory": "1Ti", "pods": "110", "nvidia.com/gpu": "8"},
                    faults=["slow-memory=0.5"] if i in faulty_idx else [])
            for i in range(count)]


def qualification(concurrency: str) -> dict[str, Any]:
    return {"apiVersion": "accelqual.io/v1alpha1", "kind": "Qualification", "metadata": {"name": "bench"},
            "spec": {"nodeSelector": {"matchLabels": {"accelqual.io/pool": "bench"}}, "suite": "standard",
                     "maxConcurrent": concurrency, "failureBudget": "5%", "profile": "auto"}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: the calibration's own process (this file with --calibrate) does not need the cluster.
    from accelqual.sim.cluster import SimulatedCluster

    host = machine()
    runner = ModelledProbeRunner(duration=args.probe_seconds, jitter=args.probe_jitter, seed=1)
    with SimulatedCluster(runner=runner, kubelet_parallel=10**6, kubelet_interval=args.kubelet_interval,
                          kubelet_fleet_mode=args.kubelet == "fleet",
                          with_s3=False) as cluster:
        emulator = cluster.server.emulator
        t0 = time.perf_counter()
        cluster.add_nodes(nodes(args.nodes, args.faulty))
        setup_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            kubeconfig = cluster.server.write_kubeconfig(Path(tmp) / "kubeconfig")
            operator = subprocess.Popen(
                [sys.executable, "-m", "accelqual.cli", "operator", "--kubeconfig", str(kubeconfig),
                 "--namespace", cluster.namespace, "--metrics-port", "0", "--liveness", "",
                 "--log-level", "WARNING", "--io-batch-ms", f"{args.io_batch_ms:g}",
                 "--reconcile-wait-factor", f"{args.reconcile_wait_factor:g}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                time.sleep(args.warmup)
                # Before the run: the emulator (holding every node) and the operator are idle.
                idle_calibration = [v for v in (calibrate() for _ in range(args.calibrations)) if v is not None]
                idle_cpu = proc_cpu_seconds(operator.pid)
                emulator.reset_stats()
                self_before = resource.getrusage(resource.RUSAGE_SELF)
                start = time.perf_counter()
                with CoRunCalibration(args.calibrate_every if args.calibrations else 0) as during:
                    cluster.apply(qualification(args.concurrency))
                    obj = cluster.wait_for_phase("bench", timeout=args.timeout)
                elapsed = time.perf_counter() - start
                # The run is over when its probe pods are cleaned up too (their deletes count).
                deadline = time.monotonic() + 120
                while cluster.pods("app.kubernetes.io/component=probe") and time.monotonic() < deadline:
                    time.sleep(0.5)
                run_cpu = proc_cpu_seconds(operator.pid) - idle_cpu
                rss = proc_peak_rss_mb(operator.pid)
                self_after = resource.getrusage(resource.RUSAGE_SELF)
            finally:
                operator.terminate()
                try:
                    _, err = operator.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    operator.kill()
                    _, err = operator.communicate()
        stats = emulator.stats()
    by_key: Counter[str] = Counter()
    for (verb, plural, sub), count in stats.items():
        by_key[f"{verb} {plural}{'/' + sub if sub else ''}"] += count
    operator_mutating = sum(by_key.get(k, 0) for k in OPERATOR_MUTATING)
    n = args.nodes
    status_bytes = len(json.dumps(obj.get("status") or {}))
    emulator_cpu = (self_after.ru_utime + self_after.ru_stime) - (self_before.ru_utime + self_before.ru_stime)
    idle_cal = statistics.median(idle_calibration) if idle_calibration else None
    busy_cal = statistics.median(during.values) if during.values else None
    slowdown = busy_cal / idle_cal if idle_cal and busy_cal else None
    host["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    return {
        "nodes": n,
        "phase": (obj.get("status") or {}).get("phase"),
        "summary": (obj.get("status") or {}).get("summary"),
        "io_batch_ms": args.io_batch_ms,
        "reconcile_wait_factor": args.reconcile_wait_factor,
        "kubelet_mode": args.kubelet,
        "probe_seconds": args.probe_seconds,
        "probe_jitter": args.probe_jitter,
        "setup_seconds": round(setup_s, 2),
        "run_seconds": round(elapsed, 2),
        "operator_cpu_seconds": round(run_cpu, 2),
        "cpu_ms_per_node": round(1000 * run_cpu / n, 3),
        "mutating_per_node": round(operator_mutating / n, 3),
        "requests_by_key": dict(sorted(by_key.items())),
        "status_kib": round(status_bytes / 1024, 2),
        "rss_mb": round(rss, 1),
        "emulator_and_kubelet_cpu_seconds": round(emulator_cpu, 2),
        "calibration_us_idle": None if idle_cal is None else round(idle_cal * 1e6, 1),
        "calibration_us_during_run": None if busy_cal is None else round(busy_cal * 1e6, 1),
        "calibrations_during_run": len(during.values),
        "co_run_slowdown": None if slowdown is None else round(slowdown, 2),
        # The operator's CPU per node in units of the calibration work measured during the same run: this
        # host's speed drifts by tens of percent between minutes, and this ratio compares runs despite it.
        "cpu_per_node_in_calibrations": None if busy_cal is None else round(run_cpu / n / busy_cal, 2),
        "machine": host,
        # Stopped with SIGTERM as Kubernetes stops a pod: 0 if it shut down cleanly within 30 s.
        "operator_exit_code": operator.returncode,
        "operator_stderr_tail": err.decode(errors="replace")[-2000:],
    }


def _fraction(value: str) -> float:
    """A number from 0 to 1 (argparse's usage error otherwise)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value!r}") from None
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {value}")
    return number


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--faulty", type=int, default=50)
    p.add_argument("--concurrency", default="20%")
    p.add_argument("--probe-seconds", type=float, default=0.0,
                   help="how long each modelled probe runs (0: its report is ready at once, so the run measures "
                        "the control plane alone)")
    p.add_argument("--probe-jitter", type=_fraction, default=0.0,
                   help="each probe's duration varies by up to this fraction of --probe-seconds, as real "
                        "probes' do (their pods then finish one by one rather than in waves)")
    p.add_argument("--kubelet-interval", type=float, default=0.5)
    p.add_argument("--kubelet", choices=("fleet", "http"), default="fleet",
                   help="the simulated kubelet's mode: 'fleet' watches pods and nodes and writes pod status into "
                        "the emulator's store; 'http' lists and writes over HTTP every step, which at fleet scale "
                        "keeps this process busy beside the operator it measures (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=540.0)
    p.add_argument("--calibrations", type=int, default=3,
                   help="calibration measurements before the run (0: no calibration at all)")
    p.add_argument("--calibrate-every", type=float, default=30.0,
                   help="seconds between calibration measurements during the run")
    p.add_argument("--io-batch-ms", type=io_batch_ms, default=DEFAULT_INTERVAL_SECONDS * 1000,
                   help="the operator's --io-batch-ms (default: the operator's own default, %(default)g)")
    p.add_argument("--reconcile-wait-factor", type=reconcile_wait_factor, default=DEFAULT_RECONCILE_WAIT_FACTOR,
                   help="the operator's --reconcile-wait-factor (default: the operator's own default, %(default)g)")
    p.add_argument("--calibrate", type=int, help=argparse.SUPPRESS)  # the calibration's own process
    p.add_argument("--json", help="write the measurements as JSON")
    args = p.parse_args(argv)
    if args.calibrate:
        print(calibration_work(args.calibrate))
        return 0
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"nodes {result['nodes']}: phase {result['phase']} {result['summary']}")
    print(f"run start -> all verdicts: {result['run_seconds']} s (setup {result['setup_seconds']} s; "
          f"emulator+kubelet CPU {result['emulator_and_kubelet_cpu_seconds']} s, not counted; "
          f"kubelet mode {result['kubelet_mode']}; probes {result['probe_seconds']:g} s "
          f"+-{100 * result['probe_jitter']:g}%)")
    if result["co_run_slowdown"] is not None:
        print(f"co-run slowdown {result['co_run_slowdown']:.2f}x: the calibration work took "
              f"{result['calibration_us_during_run']} us CPU during the run ({result['calibrations_during_run']} "
              f"measurements) against {result['calibration_us_idle']} us before it; operator CPU per node = "
              f"{result['cpu_per_node_in_calibrations']} x the calibration work")
    for key, count in result["requests_by_key"].items():
        print(f"  {key:40s} {count:8d}  {count / result['nodes']:8.3f}/node")
    met = []
    print(f"{'measure':28s} {'value':>10s} {'target':>10s} {'ratio':>8s}")
    for key, target in TARGETS.items():
        value = float(result[key])
        ratio = value / target
        met.append(ratio <= 1.0)
        print(f"{key:28s} {value:10.3f} {target:10.3f} {ratio:8.2f} {'ok' if ratio <= 1 else 'MISSED'}")
    if result["phase"] != "Completed":
        print(result["operator_stderr_tail"])
    done = result["phase"] == "Completed"
    print(f"SUMMARY nodes={result['nodes']} completed={done} targets_met={sum(met)}/{len(met)} "
          + " ".join(f"{k}={result[k]}" for k in TARGETS))
    return 0 if done and all(met) else 1


if __name__ == "__main__":
    sys.exit(main())

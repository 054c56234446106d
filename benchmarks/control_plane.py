"""Control-plane scale: the real operator qualifying N simulated nodes, measured from outside.

    .venv/bin/python benchmarks/control_plane.py --nodes 5000

The emulated API server, the simulated kubelet and the local S3 run in this process;
the operator runs as a separate `accelqual operator` process against a kubeconfig, so
its CPU time and peak RSS are its own (read from /proc), and the emulator's cost is
reported separately. Probe containers are modelled (a report derived from the card
profile with noise and seeded faults, ready after `--probe-seconds`), so the time from
run start to all verdicts measures the control plane, not the probes.

Prints, side by side, the measured values and the targets of the issue, and as the last
line a one-line summary of the targets met.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from accelqual.sim.cluster import SimulatedCluster
from accelqual.sim.kubelet import SimNode
from accelqual.sim.modelled import ModelledProbeRunner

TARGETS = {"mutating_per_node": 4.0, "cpu_ms_per_node": 2.0, "status_kib": 32.0, "rss_mb": 300.0}
MUTATING = ("create", "update", "patch", "delete")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


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
    runner = ModelledProbeRunner(duration=args.probe_seconds, seed=1)
    with SimulatedCluster(runner=runner, kubelet_parallel=10**6, kubelet_interval=args.kubelet_interval,
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
                 "--log-level", "WARNING"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                time.sleep(args.warmup)
                idle_cpu = proc_cpu_seconds(operator.pid)
                emulator.reset_stats()
                self_before = resource.getrusage(resource.RUSAGE_SELF)
                start = time.perf_counter()
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
    by_verb: Counter[str] = Counter()
    by_key: Counter[str] = Counter()
    for (verb, plural, sub), count in stats.items():
        by_verb[verb] += count
        by_key[f"{verb} {plural}{'/' + sub if sub else ''}"] += count
    # The kubelet's own requests (scheduling, status) are the kubelet's, not the operator's: the
    # operator's mutating requests are pod create/delete, node patch, event create, status patch.
    operator_mutating = sum(c for k, c in by_key.items() if k in (
        "create pods", "delete pods", "patch nodes", "create events", "patch qualifications/status",
        "patch qualifications", "create configmaps", "patch configmaps"))
    n = args.nodes
    status_bytes = len(json.dumps(obj.get("status") or {}))
    emulator_cpu = (self_after.ru_utime + self_after.ru_stime) - (self_before.ru_utime + self_before.ru_stime)
    return {
        "nodes": n,
        "phase": (obj.get("status") or {}).get("phase"),
        "summary": (obj.get("status") or {}).get("summary"),
        "setup_seconds": round(setup_s, 2),
        "run_seconds": round(elapsed, 2),
        "operator_cpu_seconds": round(run_cpu, 2),
        "cpu_ms_per_node": round(1000 * run_cpu / n, 3),
        "mutating_per_node": round(operator_mutating / n, 3),
        "requests_by_key": dict(sorted(by_key.items())),
        "status_kib": round(status_bytes / 1024, 2),
        "rss_mb": round(rss, 1),
        "emulator_and_kubelet_cpu_seconds": round(emulator_cpu, 2),
        "operator_stderr_tail": err.decode(errors="replace")[-2000:],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--faulty", type=int, default=50)
    p.add_argument("--concurrency", default="20%")
    p.add_argument("--probe-seconds", type=float, default=0.0)
    p.add_argument("--kubelet-interval", type=float, default=0.5)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=540.0)
    p.add_argument("--json", help="write the measurements as JSON")
    args = p.parse_args()
    result = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"nodes {result['nodes']}: phase {result['phase']} {result['summary']}")
    print(f"run start -> all verdicts: {result['run_seconds']} s (setup {result['setup_seconds']} s; "
          f"emulator+kubelet CPU {result['emulator_and_kubelet_cpu_seconds']} s, not counted)")
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

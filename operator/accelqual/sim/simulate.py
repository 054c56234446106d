"""`accelqual simulate`: qualify a simulated accelerator fleet with the real operator and print the verdict.

The embedded default of the project: N simulated nodes (K of them with seeded hardware
faults that must fail a node), the emulated Kubernetes API, a local S3 and the real
operator; every node runs the real `accelqual probe` quick suite on this machine's CPU.
Exit 0 only if every faulty node failed with the check that owns its fault and no
healthy node failed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from accelqual.constants import DEFAULT_FAILURE_TAINT_KEY, LABEL_PROFILE, LABEL_VERDICT
from accelqual.logs import configure_logging
from accelqual.sim.cluster import BUCKET, SimulatedCluster
from accelqual.sim.kubelet import SimNode

POOL_LABEL = "accelqual.io/pool"
POOL = "simulated"
SIM_RESOURCE = "accelqual.io/sim-accelerator"
QUALIFICATION = "simulated-pool"


@dataclass(frozen=True)
class Fault:
    """A fault a simulated card can have, and the checks that must catch it (any one of them)."""

    inject: str
    owners: tuple[str, ...]
    symptom: str


#: Faults that must fail a node. `hang` is not among them: it makes a node inconclusive by design.
FAULTS: tuple[Fault, ...] = (
    Fault("slow-compute=0.25", ("perf.gemm.fp32", "perf.gemm.bf16"), "compute throughput at 25%"),
    Fault("slow-memory=0.25", ("perf.membw",), "memory bandwidth at 25%"),
    Fault("corrupt=0.001", ("rel.stress", "func.dtypes"), "bit flips in results"),
    Fault("missing-device", ("gen.inventory",), "a card missing"),
    Fault("memory-shortfall=0.5", ("gen.memory.capacity",), "half the memory usable"),
    Fault("bad-dtype=bf16", ("func.dtypes",), "wrong bf16 numerics"),
    Fault("residual-memory", ("sec.residual",), "memory readable by the next process"),
)


def fleet(nodes: int, faulty: int, seed: int) -> tuple[list[SimNode], dict[str, Fault]]:
    """N nodes named sim-node-00..; K of them, chosen by the seed, get one fault each (as varied as possible)."""
    if not 0 <= faulty <= nodes:
        raise ValueError(f"--faulty must be between 0 and --nodes ({nodes})")
    rng = random.Random(seed)
    names = [f"sim-node-{i:02d}" for i in range(nodes)]
    chosen = sorted(rng.sample(names, faulty))
    kinds = list(FAULTS)
    rng.shuffle(kinds)
    faults = {name: kinds[i % len(kinds)] for i, name in enumerate(chosen)}
    sim_nodes = [
        SimNode(
            name=name,
            labels={POOL_LABEL: POOL, LABEL_PROFILE: "cpu-reference", "kubernetes.io/hostname": name,
                    "node.kubernetes.io/instance-type": "sim-cpu-reference"},
            allocatable={"cpu": "2", "memory": "8Gi", "pods": "110", SIM_RESOURCE: "1"},
            faults=[faults[name].inject] if name in faults else [],
        )
        for name in names
    ]
    return sim_nodes, faults


def qualification(report: dict[str, Any], *, name: str = QUALIFICATION) -> dict[str, Any]:
    """The Qualification the simulation applies, as a user would write it."""
    return {
        "apiVersion": "accelqual.io/v1alpha1",
        "kind": "Qualification",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"matchLabels": {POOL_LABEL: POOL}},
            "profile": "auto",
            "suite": "quick",
            "trigger": "Once",
            "maxConcurrent": "50%",
            # A simulated delivery with several faulty cards on purpose: the budget must not halt it.
            "failureBudget": "50%",
            # All simulated nodes share this machine's two cores (and whatever else runs on it), so
            # they are not independent peers: a probe that ran beside a busy neighbour looks slow.
            # The peer comparison is reported (Events, summary) but does not fail nodes here; the
            # absolute limits, measured against an in-process reference, decide.
            "fleetRelative": {"maxDeviation": 0.3, "minRobustZ": 4, "action": "warn"},
            "probe": {"image": "ghcr.io/accelqual/probe-cpu:0.1.0", "resourceName": SIM_RESOURCE,
                      "cpu": "1", "memory": "2Gi", "timeoutSeconds": 300},
            "report": report,
        },
    }


def outcome(cluster: SimulatedCluster, faults: dict[str, Fault], obj: dict[str, Any]) -> dict[str, Any]:
    """The --json document: per node injected faults, verdict, failed checks, taint; and the tallies."""
    status = obj.get("status") or {}
    failing = {f["node"]: f for f in status.get("failingNodes") or []}
    rows = []
    caught = missed = false_failures = 0
    for name, node in sorted(cluster.nodes().items()):
        labels = (node.get("metadata") or {}).get("labels") or {}
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        taints = (node.get("spec") or {}).get("taints") or []
        verdict = labels.get(LABEL_VERDICT, "none")
        failed = [c for c in annotations.get("accelqual.io/failed-checks", "").split(",") if c]
        if not failed and name in failing:
            failed = list(failing[name].get("failedChecks") or [])
        fault = faults.get(name)
        if fault is not None:
            ok = verdict == "fail" and any(c in failed for c in fault.owners)
            caught += ok
            missed += not ok
        elif verdict != "pass":
            false_failures += 1
        rows.append({"name": name, "injectedFaults": [fault.inject] if fault else [], "verdict": verdict,
                     "failedChecks": failed, "reason": annotations.get("accelqual.io/reason", ""),
                     "tainted": any(t.get("key") == DEFAULT_FAILURE_TAINT_KEY for t in taints)})
    return {"summary": {"nodes": len(rows), "faulty": len(faults), "caught": caught, "missed": missed,
                        "falseFailures": false_failures},
            "nodes": rows, "qualification": {"name": obj["metadata"]["name"], "status": status},
            "reportURI": status.get("reportURI")}


def print_table(console: Console, result: dict[str, Any]) -> None:
    table = Table(title="Simulated fleet", header_style="bold")
    for column in ("node", "injected fault", "verdict", "failed checks", "tainted"):
        table.add_column(column)
    for row in result["nodes"]:
        style = {"pass": "green", "fail": "red"}.get(row["verdict"], "yellow")
        table.add_row(row["name"], ", ".join(row["injectedFaults"]) or "-", f"[{style}]{row['verdict']}[/]",
                      ", ".join(row["failedChecks"]) or "-", "yes" if row["tainted"] else "no")
    console.print(table)
    status = result["qualification"]["status"]
    s = status.get("summary") or {}
    console.print(f"Qualification {result['qualification']['name']}: phase [bold]{status.get('phase')}[/], "
                  f"run {status.get('runId')}: {s.get('passed', 0)} passed, {s.get('failed', 0)} failed, "
                  f"{s.get('inconclusive', 0)} inconclusive, {s.get('skipped', 0)} skipped of {s.get('total', 0)}")
    for cond in status.get("conditions") or []:
        console.print(f"  {cond['type']}={cond['status']} ({cond['reason']}) {cond.get('message', '')}")
    console.print(f"Evidence: {status.get('reportURI')} sha256 {status.get('reportSHA256')}")
    t = result["summary"]
    verdict = "[green]PASS[/]" if t["missed"] == 0 and t["falseFailures"] == 0 else "[red]FAIL[/]"
    console.print(f"Fleet verdict: {verdict} - {t['caught']} of {t['faulty']} faulty nodes caught, "
                  f"{t['missed']} missed, {t['falseFailures']} healthy nodes not passed")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="accelqual simulate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=6, help="simulated nodes (default: %(default)s)")
    p.add_argument("--faulty", type=int, default=2, help="nodes with an injected fault (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7, help="seed choosing faulty nodes and faults")
    p.add_argument("--json", metavar="PATH", help="write the outcome as JSON ('-' for stdout)")
    p.add_argument("--parallel", type=int, default=2, help="probes run at once on this machine")
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    p.add_argument("--log-level", default="WARNING")
    p.add_argument("--scenario", metavar="FILE", help="rehearse a scenario file (examples/scenarios/) in simulated "
                                                      "time instead; --json writes its timeline and runs")
    p.add_argument("--serve", action="store_true",
                   help="keep the simulated cluster running for kubectl (modelled H100 probes) until Ctrl-C")
    p.add_argument("--kubeconfig", metavar="PATH", help="with --serve: write the kubeconfig here "
                                                        "(default: $TMPDIR/accelqual-simulate/kubeconfig)")
    return p.parse_args(list(argv))


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    if args.scenario:
        from accelqual.sim.scenario_cli import main as rehearse

        return rehearse(args.scenario, args.json, args.log_level)
    if args.serve:
        from accelqual.sim.serve import serve

        return serve(args)
    configure_logging("text", args.log_level)
    console = Console(stderr=args.json == "-")
    try:
        nodes, faults = fleet(args.nodes, args.faulty, args.seed)
    except ValueError as exc:
        print(f"accelqual simulate: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    with SimulatedCluster(kubelet_parallel=args.parallel) as cluster:
        cluster.add_nodes(nodes)
        cluster.start_operator()
        cluster.apply(qualification(cluster.report_spec()))
        console.print(f"Simulating {args.nodes} nodes ({args.faulty} faulty, seed {args.seed}) against "
                      f"{cluster.server.url}; probes run on this CPU, {args.parallel} at a time...")
        last = [""]

        def progress(status: dict[str, Any]) -> None:
            s = status.get("summary") or {}
            done = s.get("passed", 0) + s.get("failed", 0) + s.get("inconclusive", 0)
            line = f"  {status.get('phase', 'Pending')}: {done} of {s.get('total', '?')} nodes done"
            if line != last[0]:
                console.print(line)
                last[0] = line

        try:
            obj = cluster.wait_for_phase(QUALIFICATION, timeout=args.timeout, progress=progress)
        except TimeoutError as exc:
            console.print(f"[red]{exc}[/]")
            return 1
        result = outcome(cluster, faults, obj)
        result["elapsedSeconds"] = round(time.monotonic() - started, 1)
        result["summaryDocument"] = _summary_document(cluster, result.get("reportURI"))
    print_table(console, result)
    console.print(f"Elapsed: {result['elapsedSeconds']} s")
    if args.json:
        text = json.dumps(result, indent=2, sort_keys=True)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    t = result["summary"]
    return 0 if t["missed"] == 0 and t["falseFailures"] == 0 and result["qualification"]["status"].get(
        "phase") == "Completed" else 1


def _summary_document(cluster: SimulatedCluster, uri: str | None) -> dict[str, Any] | None:
    """The run's summary.json, fetched before the local S3 goes away, so the run can be rendered later."""
    prefix = f"s3://{BUCKET}/"
    if not uri or cluster.s3 is None or not uri.startswith(prefix):
        return None
    data: dict[str, Any] = json.loads(cluster.s3.read(BUCKET, uri[len(prefix):]))
    return data

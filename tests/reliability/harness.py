"""Runs one fault-matrix scenario end to end and checks what came out of it.

The real operator (kopf, in a thread it can be killed and restarted in), the emulated API
server (with its fault rules and write log), the simulated kubelet, modelled probes and a
moto S3 with bucket versioning, so that every PUT of a key leaves a version to count. The
runner applies the row's faults at their moments, restarts the operator when a crash
fired, waits for the run's final phase (and for the evidence backlog to drain and the
probe pods to go), then `Verdicts.check` compares the cluster, the status and S3 with what
the row's nodes must have produced, counting every way a result could be lost or wrong.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from accelqual.adapters.kube import MERGE_PATCH, KubeError, node_path
from accelqual.constants import DEFAULT_FAILURE_TAINT_KEY, LABEL_PROFILE, LABEL_VERDICT
from accelqual.models import resolve_count
from accelqual.runtime import OperatorOptions
from accelqual.sim.cluster import BUCKET, FINAL_PHASES, SimulatedCluster
from accelqual.sim.crash import CrashAt
from accelqual.sim.emu_faults import FaultRule
from accelqual.sim.kubelet import SimNode
from accelqual.sim.modelled import ModelledProbeRunner
from accelqual.sim.simclock import SteppedClock

from tests.e2e.helpers import sha256, wait_until
from tests.reliability.matrix import (
    HARDWARE_FAULTS,
    ApiFaults,
    ClockStep,
    Crash,
    DeleteNode,
    Evict,
    Moment,
    RivalController,
    S3Outage,
    Scenario,
    expected_verdict,
)

PREFIX = "runs"
POOL = {"accelqual.io/pool": "reliability"}
RESOURCE = "accelqual.io/sim-accelerator"
BASE_SPEC: dict[str, Any] = {
    "nodeSelector": {"matchLabels": POOL},
    "suite": "quick",
    "maxConcurrent": "100%",
    "failureBudget": "50%",
    "fleetRelative": {"enabled": False},
    "probe": {"resourceName": RESOURCE, "timeoutSeconds": 120},
}
ANN_RUN = "accelqual.io/run"
ANN_SHA = "accelqual.io/report-sha256"
PROBE_SELECTOR = "app.kubernetes.io/component=probe"
OUTBOX_SELECTOR = "app.kubernetes.io/component=evidence-outbox"
#: Upper bounds of what a Qualification may write, whatever its nodes sent.
MAX_STATUS_BYTES = 16 * 1024
MAX_NODE_ANNOTATION_BYTES = 4096


@dataclass
class Counters:
    """What one scenario did and what went wrong (every `*_lost`/`wrong`/`duplicate` count must be 0)."""

    nodes: int = 0
    results_expected: int = 0
    results_lost: int = 0
    false_passes: int = 0
    wrong_verdicts: int = 0
    wrong_taints: int = 0
    duplicate_s3_writes: int = 0
    duplicate_marks: int = 0
    duplicate_pods: int = 0
    leftover_pods: int = 0
    faults_injected: int = 0
    operator_restarts: int = 0
    s3_objects: int = 0
    seconds: float = 0.0
    #: The final phase and the reason it names (Progressing/Halted condition).
    phase: str = ""
    reason: str = ""
    #: What was wrong, one line per finding (empty when all is well).
    findings: list[str] = field(default_factory=list)

    def bad(self) -> dict[str, int]:
        return {k: v for k, v in asdict(self).items() if isinstance(v, int) and v and (
            k.endswith("_lost") or k.startswith(("false_", "wrong_", "duplicate_", "leftover_")))}


def spec_for(scenario: Scenario, report: Mapping[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(json.dumps(BASE_SPEC))
    for key, value in scenario.spec.items():
        if isinstance(value, Mapping) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    spec["report"] = dict(report)
    return spec


def node_name(index: int) -> str:
    return f"rel-{index}"


def sim_nodes(scenario: Scenario) -> list[SimNode]:
    nodes = []
    for i, token in enumerate(scenario.nodes):
        fault = HARDWARE_FAULTS.get(token)
        behaviour = None if token == "ok" or fault else token
        nodes.append(SimNode(
            name=node_name(i),
            labels={**POOL, LABEL_PROFILE: "cpu-reference"},
            allocatable={"cpu": "8", "memory": "32Gi", "pods": "110", RESOURCE: "1"},
            faults=[fault] if fault else [],
            env={"ACCELQUAL_SIM_BEHAVIOUR": behaviour} if behaviour else {},
        ))
    return nodes


class Rival:
    """Another controller: keeps its own taint on every pool node and bumps an annotation, with resourceVersions."""

    def __init__(self, cluster: SimulatedCluster, nodes: list[str], taint_key: str) -> None:
        self.cluster, self.nodes, self.taint_key = cluster, nodes, taint_key
        self.writes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rival-controller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        beat = 0
        while not self._stop.is_set():
            for name in self.nodes:
                beat += 1
                try:
                    node = self.cluster.api.get(node_path(name))
                    taints = list((node.get("spec") or {}).get("taints") or [])
                    if not any(t.get("key") == self.taint_key for t in taints):
                        taints.append({"key": self.taint_key, "value": "planned", "effect": "PreferNoSchedule"})
                    self.cluster.api.patch(node_path(name), {
                        "metadata": {"resourceVersion": node["metadata"]["resourceVersion"],
                                     "annotations": {"example.com/heartbeat": str(beat)}},
                        "spec": {"taints": taints}}, MERGE_PATCH)
                    self.writes += 1
                except (KubeError, RuntimeError):
                    continue  # a conflict with the operator, a deleted node, a cluster closing: next round
            self._stop.wait(0.03)


class ScenarioRun:
    """One scenario against a fresh simulated cluster; `run()` returns its `Counters`."""

    def __init__(self, scenario: Scenario, *, timeout: float = 90.0) -> None:
        self.scenario = scenario
        #: The Qualification's name: the scenario's, so that runs keep apart in S3 (moto's state is per process).
        self.name = scenario.id
        self.timeout = timeout
        self.counters = Counters(nodes=len(scenario.nodes))
        self.clock = SteppedClock()
        self.rules: list[FaultRule] = []
        self.crash: CrashAt | None = None
        self.rival: Rival | None = None
        self.deleted: set[str] = set()
        self.fired: set[int] = set()  # indexes of faults applied so far
        self.s3_down = False

    def _options(self, options: OperatorOptions) -> OperatorOptions:
        # S3 retried at least every second; the operator's clock is the one a ClockStep moves.
        return replace(options, debounce=0.1, clock=self.clock.now,
                       config=replace(options.config, evidence_backoff_max=1.0))

    @contextmanager
    def _cluster(self) -> Iterator[SimulatedCluster]:
        runner = ModelledProbeRunner(duration=self.scenario.probe_seconds, seed=7)
        with SimulatedCluster(runner=runner, kubelet_interval=0.05, kubelet_parallel=len(self.scenario.nodes),
                              operator_options=self._options) as cluster:
            assert cluster.s3 is not None and cluster.kubelet is not None
            cluster.s3.client().put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
            cluster.server.emulator.write_log.watch(["nodes", "pods"])
            if self.scenario.kubelet_speed != 1.0:
                real, speed = cluster.kubelet.clock, self.scenario.kubelet_speed
                start = real()
                cluster.kubelet.clock = lambda: start + (real() - start) * speed
            yield cluster

    def run(self) -> Counters:
        began = time.monotonic()
        with self._cluster() as cluster:
            try:
                self._drive(cluster)
            finally:
                if self.rival is not None:
                    self.rival.stop()
            self._settle(cluster)
            Verdicts(self, cluster).check()
        self.counters.seconds = round(time.monotonic() - began, 1)
        return self.counters

    # --- driving the faults ---------------------------------------------------------------

    def _drive(self, cluster: SimulatedCluster) -> None:
        cluster.add_nodes(sim_nodes(self.scenario))
        crash = next((f for f in self.scenario.faults if isinstance(f, Crash)), None)
        if crash is not None:
            self.crash = CrashAt(crash.point, crash.nth)
        self._fire(cluster, "start")
        cluster.start_operator(crash_points=self.crash)
        cluster.apply({"apiVersion": "accelqual.io/v1alpha1", "kind": "Qualification", "metadata": {"name": self.name},
                       "spec": spec_for(self.scenario, cluster.report_spec(PREFIX))})
        deadline = time.monotonic() + self.timeout
        while True:
            status = cluster.qualification(self.name).get("status") or {}
            summary = status.get("summary") or {}
            running = self._running_pods(cluster)
            if running:
                self._fire(cluster, "probe-running", running)
            if sum(summary.get(k, 0) for k in ("passed", "failed", "inconclusive")) >= 1:
                self._fire(cluster, "first-result", running)
            if self.crash is not None and self.crash.fired.is_set() and not self.counters.operator_restarts:
                cluster.restart_operator(crash_points=None)
                self.counters.operator_restarts += 1
            crash_pending = self.crash is not None and not self.counters.operator_restarts
            if status.get("phase") in FINAL_PHASES and not crash_pending:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.scenario.id}: no final phase within {self.timeout:.0f}s; status: "
                                   f"{json.dumps(status)[:600]}")
            time.sleep(0.1)
        self._fire(cluster, "final")

    def _running_pods(self, cluster: SimulatedCluster) -> dict[str, str]:
        """node -> pod name of probe pods whose container runs."""
        assert cluster.kubelet is not None
        running = {key.split("/", 1)[1] for key in cluster.kubelet.running()}
        found = {}
        for pod in cluster.pods(PROBE_SELECTOR):
            name = pod["metadata"]["name"]
            if name in running:
                found[str(pod["spec"].get("nodeName"))] = name
        return found

    def _fire(self, cluster: SimulatedCluster, moment: Moment, running: Mapping[str, str] | None = None) -> None:
        running = running or {}
        for index, fault in enumerate(self.scenario.faults):
            if index in self.fired:
                continue
            if isinstance(fault, ApiFaults) and fault.when == moment:
                self.rules += [cluster.server.emulator.faults.add(FaultRule(**rule)) for rule in fault.rules]
            elif isinstance(fault, S3Outage):
                assert cluster.s3 is not None
                if fault.when == moment:
                    cluster.s3.stop()
                    self.s3_down = True
                    self.counters.faults_injected += 1
                    continue  # fired again at "final": S3 comes back
                if moment != "final" or not self.s3_down:
                    continue
                cluster.s3.start()
                self.s3_down = False
            elif isinstance(fault, DeleteNode | Evict):
                target = node_name(fault.node)
                if target not in running:
                    continue
                if isinstance(fault, DeleteNode):
                    cluster.delete_node(target)
                    self.deleted.add(target)
                else:
                    assert cluster.kubelet is not None
                    cluster.kubelet.evict(cluster.namespace, running[target])
                self.counters.faults_injected += 1
            elif isinstance(fault, ClockStep) and fault.when == moment:
                self.clock.step(fault.seconds)
                self.counters.faults_injected += 1
            elif isinstance(fault, RivalController) and moment == "start":
                self.rival = Rival(cluster, [node_name(i) for i in range(len(self.scenario.nodes))], fault.taint_key)
                self.rival.start()
            elif isinstance(fault, Crash):
                continue  # armed at start (the operator's hook), restarted by `_drive`
            else:
                continue
            self.fired.add(index)

    def _settle(self, cluster: SimulatedCluster) -> None:
        """After the final phase: the evidence backlog drains and the probe pods of a completed run go."""
        if self.scenario.phase == "Completed":
            wait_until("the evidence backlog drained",
                       lambda: (cluster.qualification(self.name).get("status") or {}).get("evidenceBacklog") == 0
                       and not cluster.api.list_all(f"/api/v1/namespaces/{cluster.namespace}/configmaps",
                                                    label_selector=OUTBOX_SELECTOR), timeout=45, poll=0.1)
            wait_until("the probe pods deleted", lambda: not cluster.pods(PROBE_SELECTOR), timeout=30, poll=0.1)
        else:
            wait_until("the probes of the halted run finished", lambda: not any(
                (cluster.qualification(self.name).get("status") or {}).get("summary", {}).get(k) for k in ("running",)),
                timeout=30, poll=0.1)
            time.sleep(1.0)  # a halted run does nothing more: give it the chance to (wrongly) act
        self.counters.faults_injected += sum(rule.fired for rule in self.rules)
        self.counters.faults_injected += int(self.crash is not None and self.crash.fired.is_set())
        self.counters.faults_injected += self.rival.writes if self.rival is not None else 0
        # Faulty cards (caught by the probe) and hostile or killed probes are injected faults too.
        self.counters.faults_injected += sum(1 for t in self.scenario.nodes if t != "ok")
        self._all_fired()

    def _all_fired(self) -> None:
        """A fault that never fired makes a scenario say nothing: that is a finding too."""
        for index, fault in enumerate(self.scenario.faults):
            if isinstance(fault, Crash):
                fired = self.crash is not None and self.crash.fired.is_set()
            elif isinstance(fault, RivalController):
                fired = self.rival is not None and self.rival.writes > 0
            else:
                fired = index in self.fired
            if not fired:
                self.counters.findings.append(f"fault {fault} never fired")
        for rule in self.rules:
            if not rule.fired:
                self.counters.findings.append(f"API fault rule {rule} never fired")


class Verdicts:
    """The invariants of every scenario, checked against the cluster, the status and S3."""

    def __init__(self, run: ScenarioRun, cluster: SimulatedCluster) -> None:
        self.run, self.cluster, self.c = run, cluster, run.counters
        self.scenario, self.name = run.scenario, run.name

    def finding(self, counter: str, text: str) -> None:
        setattr(self.c, counter, getattr(self.c, counter) + 1)
        self.c.findings.append(f"{counter}: {text}")

    def check(self) -> None:
        obj = self.cluster.qualification(self.name)
        status = obj.get("status") or {}
        run = str(status.get("runId"))
        nodes = self.cluster.nodes()
        expected = {node_name(i): expected_verdict(t) for i, t in enumerate(self.scenario.nodes)
                    if node_name(i) not in self.run.deleted}
        self.c.results_expected = len(expected)
        self._outcome(obj, status)
        s3 = self._s3_objects(run)
        summary = self._summary(status, s3)
        marked = {n for n in expected if (nodes[n]["metadata"].get("annotations") or {}).get(ANN_RUN)
                  == f"{self.name}/{run}"}
        self._verdicts(status, nodes, expected, marked)
        self._taints(nodes, expected, marked)
        self._evidence(nodes, expected, marked, s3, summary, run)
        self._writes(run)
        self._bounded(status, nodes)

    def _outcome(self, obj: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        self.c.phase = str(status.get("phase"))
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        cause = conditions.get("Halted" if self.c.phase == "Halted" else "Progressing") or {}
        self.c.reason = str(cause.get("reason") or "")
        if self.c.phase != self.scenario.phase:
            self.c.findings.append(f"phase {self.c.phase}, expected {self.scenario.phase}")
        if not self.c.reason or (self.c.phase == "Halted" and not cause.get("message")):
            self.c.findings.append(f"the {self.c.phase} run names no reason: {conditions}")

    def _s3_objects(self, run: str) -> dict[str, list[bytes]]:
        """key -> the content of every version under the run's prefix (oldest first)."""
        assert self.cluster.s3 is not None
        client = self.cluster.s3.client()
        found: dict[str, list[tuple[str, bytes]]] = {}
        prefix = f"{PREFIX}/{self.name}/{run}/"
        pages = client.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix)
        for page in pages:
            for version in page.get("Versions", []):
                body = client.get_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])
                found.setdefault(version["Key"], []).append((str(version["LastModified"]), body["Body"].read()))
        for key, versions in found.items():
            if len(versions) > 1:
                self.finding("duplicate_s3_writes", f"{key} was written {len(versions)} times")
        self.c.s3_objects = len(found)
        return {key: [body for _, body in sorted(versions)] for key, versions in found.items()}

    def _summary(self, status: Mapping[str, Any], s3: Mapping[str, list[bytes]]) -> dict[str, Any] | None:
        if self.scenario.phase != "Completed":
            return None
        key = f"{PREFIX}/{self.name}/{status.get('runId')}/summary.json"
        if key not in s3:
            self.finding("results_lost", f"the run summary {key} is not in S3")
            return None
        body = s3[key][-1]
        if status.get("reportURI") != f"s3://{BUCKET}/{key}" or status.get("reportSHA256") != sha256(body):
            self.finding("results_lost", "the status does not name the summary in S3 by its digest")
        summary: dict[str, Any] = json.loads(body)
        human = summary.get("humanReport") or {}
        if human.get("key") not in s3 or sha256(s3[human["key"]][-1]) != human.get("sha256"):
            self.finding("results_lost", "report.md is missing or does not match the summary's digest")
        return summary

    def _verdicts(self, status: Mapping[str, Any], nodes: Mapping[str, Any], expected: Mapping[str, str],
                  marked: set[str]) -> None:
        summary = status.get("summary") or {}
        tally = Counter(expected.values())
        for verdict, field_name in (("pass", "passed"), ("fail", "failed"), ("inconclusive", "inconclusive")):
            if summary.get(field_name) != tally[verdict]:
                counter = "false_passes" if verdict == "pass" and summary.get(field_name, 0) > tally[verdict] \
                    else "results_lost"
                self.finding(counter, f"status counts {summary.get(field_name)} {field_name}, expected "
                                      f"{tally[verdict]}")
        if summary.get("total") != len(expected):
            self.finding("results_lost", f"status total {summary.get('total')}, expected {len(expected)}")
        failing = {f["node"]: f["verdict"] for f in status.get("failingNodes") or []}
        if failing != {n: v for n, v in expected.items() if v != "pass"}:
            self.finding("wrong_verdicts", f"failingNodes {failing} do not list exactly the non-passing nodes")
        for name, verdict in expected.items():
            label = (nodes[name]["metadata"].get("labels") or {}).get(LABEL_VERDICT)
            if label == "pass" and verdict != "pass":
                self.finding("false_passes", f"{name} passed, expected {verdict}")
            elif name in marked and label != verdict:
                self.finding("wrong_verdicts", f"{name} is labelled {label}, expected {verdict}")
        for name, node in nodes.items():
            if name not in expected and LABEL_VERDICT in (node["metadata"].get("labels") or {}):
                self.finding("wrong_verdicts", f"{name} is not in the run but carries a verdict")

    def _taints(self, nodes: Mapping[str, Any], expected: Mapping[str, str], marked: set[str]) -> None:
        budget = resolve_count(spec_for(self.scenario, {})["failureBudget"], len(self.scenario.nodes), minimum=0)
        failed = sorted(n for n, v in expected.items() if v == "fail")
        tainted = set()
        for name, node in nodes.items():
            keys = [t["key"] for t in (node.get("spec") or {}).get("taints") or []]
            if DEFAULT_FAILURE_TAINT_KEY in keys:
                tainted.add(name)
            if self.run.rival is not None and self.run.rival.taint_key not in keys:
                self.finding("wrong_taints", f"{name} lost the rival controller's taint")
        for name in tainted:
            if expected.get(name) != "fail":
                self.finding("wrong_taints", f"{name} is tainted, expected verdict {expected.get(name)}")
        if self.scenario.phase == "Completed":
            for name in failed:
                if name not in tainted:
                    self.finding("wrong_taints", f"{name} failed but is not tainted")
        elif len(tainted) != min(budget, len(failed)):
            self.finding("wrong_taints", f"{len(tainted)} nodes tainted in a halted run, the budget is {budget}")
        for name in tainted - marked:
            self.finding("wrong_taints", f"{name} is tainted without this run's mark")

    def _evidence(self, nodes: Mapping[str, Any], expected: Mapping[str, str], marked: set[str],
                  s3: Mapping[str, list[bytes]], summary: Mapping[str, Any] | None, run: str) -> None:
        rows = {r["node"]: r for r in (summary or {}).get("nodes") or []}
        for name in expected:
            key = f"{PREFIX}/{self.name}/{run}/nodes/{name}.json"
            if key not in s3:
                self.finding("results_lost", f"{name}: no evidence in S3 at {key}")
                continue
            digest = sha256(s3[key][-1])
            if name in marked:
                annotated = (nodes[name]["metadata"].get("annotations") or {}).get(ANN_SHA)
                if annotated != digest:
                    self.finding("results_lost", f"{name}: the mark names digest {annotated}, S3 holds {digest}")
            elif self.scenario.phase == "Completed":
                self.finding("results_lost", f"{name}: not marked by run {run}")
            if summary is not None and rows.get(name, {}).get("reportSha256") != digest:
                self.finding("results_lost", f"{name}: the summary row does not name the evidence in S3")
        for key in s3:
            node = key.rsplit("/", 1)[-1].removesuffix(".json")
            if "/nodes/" in key and node not in expected:
                self.finding("wrong_verdicts", f"evidence of {node}, which is not in the run: {key}")

    def _writes(self, run: str) -> None:
        emulator = self.cluster.server.emulator
        marks = Counter(r.name for r in emulator.write_log.records("nodes") if r.verb == "patch" and r.succeeded
                        and LABEL_VERDICT in ((r.body or {}).get("metadata") or {}).get("labels", {})
                        and ((r.body or {}).get("metadata") or {}).get("annotations", {}).get(ANN_RUN)
                        == f"{self.name}/{run}")
        for name, count in marks.items():
            if count > 1:
                self.finding("duplicate_marks", f"{name} was marked {count} times by run {run}")
        created = Counter(r.name for r in emulator.write_log.records("pods") if r.verb == "create" and r.succeeded)
        per_node = Counter(str(((r.body or {}).get("metadata") or {}).get("annotations", {}).get(
            "accelqual.io/node")) for r in emulator.write_log.records("pods") if r.verb == "create" and r.succeeded)
        for pod, count in created.items():
            if count > 1:
                self.finding("duplicate_pods", f"pod {pod} created {count} times")
        for node, count in per_node.items():
            if count > 1:
                self.finding("duplicate_pods", f"{count} probe pods created for {node}")
        left = self.cluster.pods(PROBE_SELECTOR)
        if self.scenario.phase == "Completed" and left:
            self.c.leftover_pods = len(left)
            self.c.findings.append(f"probe pods left after the run: {[p['metadata']['name'] for p in left]}")

    def _bounded(self, status: Mapping[str, Any], nodes: Mapping[str, Any]) -> None:
        size = len(json.dumps(status))
        if size > MAX_STATUS_BYTES:
            self.c.findings.append(f"status is {size} bytes")
        for name, node in nodes.items():
            annotations = node["metadata"].get("annotations") or {}
            ours = sum(len(k) + len(v) for k, v in annotations.items() if k.startswith("accelqual.io/"))
            if ours > MAX_NODE_ANNOTATION_BYTES:
                self.c.findings.append(f"{name}: our annotations are {ours} bytes")



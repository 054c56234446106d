"""`Rehearsal`: play a scenario against the real operator in simulated time and report what happened.

The cluster is the project's `SimulatedCluster` (emulated API server, simulated scheduler
and kubelet, local S3, the real operator in a thread) sharing one `SimClock`, and the probes
are modelled (`ModelledProbeRunner`), so a day of a 200-node fleet replays in about a minute.
The scenario's steps (nodes joining, becoming busy, being deleted; Qualifications applied;
restarts, outages, error bursts, human actions) are executed at their simulated times by
this thread; a `Recorder` watches the API server and writes down what the operator did.
The rehearsal ends at the scenario's duration, or earlier once nothing is left to happen.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from accelqual.adapters.kube import MERGE_PATCH, KubeError, node_path, pod_path, qualification_path
from accelqual.constants import ANN_FAILED_CHECKS, ANN_REASON, ANN_RESUME, LABEL_PROFILE, LABEL_VERDICT
from accelqual.runtime import OperatorOptions
from accelqual.sim.cluster import SimulatedCluster
from accelqual.sim.emu_faults import FaultRule
from accelqual.sim.kubelet import SimNode
from accelqual.sim.modelled import ModelledProbeRunner
from accelqual.sim.recorder import Recorder
from accelqual.sim.scenario import (
    ApiErrors,
    DeleteNodes,
    Event,
    NodeGroup,
    QualificationEntry,
    Relabel,
    RestartOperator,
    Resume,
    S3Outage,
    Scenario,
    SetFaults,
    UpdateQualification,
)
from accelqual.sim.simclock import SimClock

log = logging.getLogger("accelqual.sim.rehearsal")

WORKLOADS = "workloads"
#: Real seconds between the simulated kubelet's passes over the pods.
KUBELET_INTERVAL = 0.1
#: Real seconds the operator waits for more events after a wake-up (batching); see `_quick_reactions`.
OPERATOR_DEBOUNCE = 0.05
#: The rehearsal may end early once this many checks in a row (0.25 s apart) find nothing left to happen.
SETTLED_CHECKS = 3


@dataclass(order=True)
class Step:
    """Something the scenario does at simulated second `at`."""

    at: float
    seq: int
    describe: str = field(compare=False)
    act: Callable[[], object] = field(compare=False)


class Rehearsal:
    def __init__(self, scenario: Scenario, *, progress: Callable[[str], None] | None = None) -> None:
        self.scenario = scenario
        self.progress = progress or (lambda _line: None)
        self.clock = SimClock(scenario.timing.start, scenario.timing.time_scale)
        self._seq = itertools.count()
        self._queue: list[Step] = []
        self._cluster: SimulatedCluster | None = None
        self._group_of = {n: g.name for g in scenario.nodes for n in g.node_names()}
        self._faults: list[FaultRule] = []
        self.executed: list[dict[str, str]] = []

    @property
    def cluster(self) -> SimulatedCluster:
        if self._cluster is None:
            raise RuntimeError("the rehearsal is not running")
        return self._cluster

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        timing = self.scenario.timing
        runner = ModelledProbeRunner(duration=timing.probe_duration, seed=timing.seed, noise=timing.noise,
                                     jitter=timing.probe_jitter, clock=self.clock.elapsed, wallclock=self.clock.now)
        began = time.monotonic()
        with SimulatedCluster(runner=runner, kubelet_parallel=1_000_000, kubelet_interval=KUBELET_INTERVAL,
                              clock=self.clock, operator_options=_quick_reactions) as cluster:
            self._cluster = cluster
            cluster.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": WORKLOADS}})
            self._plan()
            self._run_due()  # what happens at time 0, before the clock starts: the initial fleet
            recorder = Recorder(cluster.server.url, cluster.namespace, self.clock).start()
            cluster.start_operator()
            self._await_first_reconcile()
            self.clock.begin()
            try:
                settled = self._play(recorder)
                outcome = self._outcome(recorder, settled)
            finally:
                recorder.stop()
        outcome["wallSeconds"] = round(time.monotonic() - began, 1)
        self._cluster = None
        return outcome

    def _await_first_reconcile(self, timeout: float = 30.0) -> None:
        """Simulated time starts once the operator has taken up the Qualifications present at time 0.

        The operator's start-up takes real time; at a time scale of 1000 a second of it would
        be a quarter of an hour in which the scenario's fleet waits for nobody.
        """
        deadline = time.monotonic() + timeout
        names = [e.name for e in self.scenario.qualifications if e.at == 0]
        while time.monotonic() < deadline:
            statuses = [self.cluster.qualification(n).get("status") or {} for n in names]
            if all(s.get("observedGeneration") for s in statuses):
                return
            time.sleep(0.05)
        log.warning("the operator did not take up the Qualifications within %.0f s; starting the clock anyway",
                    timeout)

    def _play(self, recorder: Recorder) -> bool:
        end = self.scenario.timing.duration
        quiet = 0
        while True:
            self._run_due()
            if self.clock.elapsed() >= end:
                return False
            if not any(step.at < end for step in self._queue) and self._settled(recorder):
                quiet += 1
                if quiet >= SETTLED_CHECKS:
                    return True
            else:
                quiet = 0
            nxt = self._queue[0].at if self._queue else end
            wait = self.clock.real_seconds(min(nxt, end) - self.clock.elapsed())
            time.sleep(max(0.0, min(wait, 0.25)))

    def _run_due(self) -> None:
        while self._queue and self._queue[0].at <= self.clock.elapsed():
            step = heapq.heappop(self._queue)
            self.progress(f"{self._stamp()} {step.describe}")
            self.executed.append({"t": self._stamp(), "step": step.describe})
            try:
                step.act()
            except KubeError as exc:  # an API error burst the scenario itself asked for
                log.warning("step %r failed: %s", step.describe, exc)
                self.executed[-1]["error"] = str(exc)

    def _stamp(self) -> str:
        return self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _at(self, at: float, describe: str, act: Callable[[], object]) -> None:
        heapq.heappush(self._queue, Step(at, next(self._seq), describe, act))

    def _settled(self, recorder: Recorder) -> bool:
        """Nothing left to happen: every Qualification idle (no run going, none due) and no probe pod alive."""
        if recorder.active_probes():
            return False
        end = self.clock.at(self.scenario.timing.duration)
        for entry in self.scenario.qualifications:
            try:
                obj = self.cluster.qualification(entry.name)
            except KubeError:
                return False
            status = obj.get("status") or {}
            if status.get("observedGeneration") != obj["metadata"].get("generation"):
                return False
            phase = status.get("phase")
            if phase == "Running" or (phase == "Pending" and entry.spec.get("trigger", "Once") == "Once"):
                return False
            if status.get("evidenceBacklog"):
                return False
            due = status.get("nextRunAt")
            if due and datetime.fromisoformat(due.replace("Z", "+00:00")) <= end:
                return False
        return True

    # --- the scenario's steps ----------------------------------------------------------------

    def _plan(self) -> None:
        for group in self.scenario.nodes:
            self._plan_group(group)
        for entry in self.scenario.qualifications:
            self._at(entry.at, f"apply Qualification {entry.name}", partial(self._apply, entry))
        for event in self.scenario.events:
            self._plan_event(event)

    def _plan_group(self, group: NodeGroup) -> None:
        names = group.node_names()
        joins: dict[float, list[str]] = {}
        for i, name in enumerate(names):
            joins.setdefault(group.join_at + i * group.join_every, []).append(name)
        for at, batch in sorted(joins.items()):
            what = f"{len(batch)} nodes of {group.name} join" if len(batch) > 1 else f"node {batch[0]} joins"
            self._at(at, what, partial(self._join, group, batch))
        for window in group.busy:
            busy = names[:window.count] if window.count else names
            self._at(window.from_, f"{len(busy)} nodes of {group.name} become busy",
                     partial(self._set_busy, group, busy, True))
            if window.until is not None:
                self._at(window.until, f"{len(busy)} nodes of {group.name} become idle",
                         partial(self._set_busy, group, busy, False))
        if group.delete_at is not None:
            self._at(group.delete_at, f"{len(names)} nodes of {group.name} are deleted",
                     lambda: self._delete_nodes(names))

    def _plan_event(self, event: Event) -> None:
        if isinstance(event, RestartOperator):
            if event.down_for:
                self._at(event.at, "operator stops", lambda: self.cluster.stop_operator())
                self._at(event.at + event.down_for, "operator starts",
                         lambda: self._paused(self.cluster.start_operator))
            else:
                self._at(event.at, "operator restarts", lambda: self._paused(self.cluster.restart_operator))
        elif isinstance(event, S3Outage):
            self._at(event.at, "S3 outage begins", lambda: self._s3(False))
            self._at(event.at + event.duration, "S3 outage ends", lambda: self._s3(True))
        elif isinstance(event, ApiErrors):
            rule = FaultRule(status=event.status, count=None, resource=event.resource, action=event.verb,
                             retry_after=event.retry_after)
            what = (f"API server answers {event.status} to {event.verb or 'every'} request on "
                    f"{event.resource or 'every resource'}")
            self._at(event.at, what, lambda: self.cluster.server.emulator.faults.add(rule))
            self._at(event.at + event.duration, "API errors end",
                     lambda: self.cluster.server.emulator.faults.remove(rule))
        elif isinstance(event, Resume):
            body = {"metadata": {"annotations": {ANN_RESUME: "true"}}}
            self._at(event.at, f"a human resumes {event.qualification}",
                     lambda: self.cluster.api.patch(qualification_path(event.qualification), body, MERGE_PATCH))
        elif isinstance(event, UpdateQualification):
            self._at(event.at, f"spec of {event.qualification} changes", lambda: self.cluster.api.patch(
                qualification_path(event.qualification), {"spec": event.spec}, MERGE_PATCH))
        elif isinstance(event, Relabel):
            nodes = self.scenario.expand(event.nodes)
            self._at(event.at, f"{len(nodes)} nodes relabelled", lambda: self._relabel(nodes, event.labels))
        elif isinstance(event, DeleteNodes):
            nodes = self.scenario.expand(event.nodes)
            self._at(event.at, f"{len(nodes)} nodes deleted", lambda: self._delete_nodes(nodes))
        elif isinstance(event, SetFaults):
            nodes = self.scenario.expand(event.nodes)
            what = f"faults of {len(nodes)} nodes become {', '.join(event.faults) or 'none'}"
            if event.driver:
                what += f"; driver {event.driver}"
            self._at(event.at, what, lambda: self._set_faults(nodes, event.faults, event.driver))

    def _paused(self, act: Callable[[], object]) -> None:
        """Do `act` (an operator start) with simulated time standing still: start-up is real time."""
        self.clock.pause()
        try:
            act()
        finally:
            self.clock.resume()

    def _join(self, group: NodeGroup, names: list[str]) -> None:
        self.cluster.add_nodes(self._sim_node(group, n) for n in names)

    def _sim_node(self, group: NodeGroup, name: str) -> SimNode:
        taints = [t.to_json_dict() for t in ([group.gate()] if group.gate() else []) + list(group.taints) if t]
        return SimNode(
            name=name,
            labels={**group.labels, LABEL_PROFILE: group.profile, "kubernetes.io/hostname": name},
            allocatable={"cpu": "64", "memory": "512Gi", "pods": "110", group.resource: str(group.accelerators)},
            taints=taints,
            faults=list(group.faults),
            env={"SIM_DRIVER": group.driver, "ACCELQUAL_SIM_BEHAVIOUR": group.behaviour},
            unschedulable=group.unschedulable,
        )

    def _apply(self, entry: QualificationEntry) -> None:
        spec = dict(entry.spec)
        if entry.report:
            spec["report"] = self.cluster.report_spec(prefix="rehearsal")
        self.cluster.apply({"apiVersion": "accelqual.io/v1alpha1", "kind": "Qualification",
                            "metadata": {"name": entry.name}, "spec": spec})

    def _set_busy(self, group: NodeGroup, nodes: list[str], busy: bool) -> None:
        """Real work: a pod requesting all the node's accelerators, placed by the scheduler like any other."""
        for node in nodes:
            name = f"work-{node}"
            if not busy:
                try:
                    self.cluster.api.delete(pod_path(WORKLOADS, name))
                except KubeError as exc:
                    if not exc.not_found:
                        raise
                continue
            request = {group.resource: str(group.accelerators)}
            self.cluster.api.create(pod_path(WORKLOADS), {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": WORKLOADS, "labels": {"app": "training"}},
                "spec": {
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": [node]}]}]}}},
                    "containers": [{"name": "train", "image": "registry.example/train:1",
                                    "resources": {"requests": request, "limits": request}}],
                },
            })

    def _delete_nodes(self, nodes: list[str]) -> None:
        gone = set(nodes)
        for node in nodes:
            try:
                self.cluster.delete_node(node)
            except KubeError as exc:
                if not exc.not_found:
                    raise
        # The pod garbage collector removes pods bound to nodes that no longer exist.
        for pod in self.cluster.api.list_all("/api/v1/pods"):
            if (pod.get("spec") or {}).get("nodeName") in gone:
                meta = pod["metadata"]
                try:
                    self.cluster.api.delete(pod_path(meta["namespace"], meta["name"]))
                except KubeError as exc:
                    if not exc.not_found:
                        raise

    def _set_faults(self, nodes: list[str], faults: list[str], driver: str | None) -> None:
        """The node's 'hardware' the kubelet's probes run on (the same objects the kubelet holds)."""
        for node in nodes:
            sim = self.cluster.sim_nodes.get(node)
            if sim is None:
                continue
            sim.faults = list(faults)
            if driver:
                sim.env["SIM_DRIVER"] = driver

    def _relabel(self, nodes: list[str], labels: dict[str, str | None]) -> None:
        for node in nodes:
            self.cluster.api.patch(node_path(node), {"metadata": {"labels": dict(labels)}}, MERGE_PATCH)

    def _s3(self, up: bool) -> None:
        s3 = self.cluster.s3
        assert s3 is not None
        if up:
            s3.start()
        else:
            s3.stop()

    # --- the outcome -------------------------------------------------------------------------

    def _outcome(self, recorder: Recorder, settled: bool) -> dict[str, Any]:
        cluster = self.cluster
        seen = recorder.result()
        nodes: dict[str, Any] = {}
        for name, obj in sorted(cluster.nodes().items()):
            meta = obj.get("metadata") or {}
            annotations = meta.get("annotations") or {}
            nodes[name] = {
                "group": self._group_of.get(name, ""),
                "verdict": (meta.get("labels") or {}).get(LABEL_VERDICT),
                "taints": [_taint(t) for t in (obj.get("spec") or {}).get("taints") or []],
                "unschedulable": bool((obj.get("spec") or {}).get("unschedulable")),
                "reason": annotations.get(ANN_REASON, ""),
                "failedChecks": [c for c in annotations.get(ANN_FAILED_CHECKS, "").split(",") if c],
            }
        qualifications = {e.name: cluster.qualification(e.name).get("status") or {}
                          for e in self.scenario.qualifications}
        events = [{"t": e.get("lastTimestamp"), "type": e.get("type"), "reason": e.get("reason"),
                   "object": f"{e['involvedObject'].get('kind')}/{e['involvedObject'].get('name')}",
                   "message": e.get("message", "")}
                  for e in cluster.events()]
        events.sort(key=lambda e: (e["t"] or "", e["object"]))
        kubelet = cluster.kubelet
        return {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "simulated": {"start": self.clock.start.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": self._stamp(),
                          "seconds": round(self.clock.elapsed()), "timeScale": self.clock.scale,
                          "endedEarly": settled},
            "steps": list(self.executed),
            "timeline": seen["timeline"],
            "runs": seen["runs"],
            "concurrency": seen["concurrency"],
            "probesStarted": kubelet.started_count if kubelet is not None else 0,
            "events": events,
            "final": {"nodes": nodes, "qualifications": qualifications},
            "touchedNodes": sorted(recorder.touched),
        }


def _quick_reactions(options: OperatorOptions) -> OperatorOptions:
    """A shorter debounce: it is real time, and at a time scale of 1000 the default would be minutes."""
    return replace(options, debounce=OPERATOR_DEBOUNCE)


def _taint(taint: dict[str, Any]) -> str:
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key')}{value}:{taint.get('effect')}"

"""A tiny in-memory cluster that applies `plan()`'s actions, for multi-step policy tests without a server.

It is deliberately simple (no scheduler, no watch lag): the point is to test the
decisions, step by step, exactly as the handler would feed them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from accelqual.constants import LABEL_POD_RUN
from accelqual.models import QualificationSpec, QualificationStatus
from accelqual.planning.actions import (
    CreatePod,
    DeletePod,
    MarkNode,
    PostEvent,
    RemoveAnnotation,
    UploadSummary,
    node_patch,
)
from accelqual.planning.plan import Plan, plan
from accelqual.planning.results import evaluate_pod
from accelqual.planning.snapshot import NodeInfo, NodeResult, PodPhase, ProbePodInfo, Snapshot, Taint
from accelqual_probes.catalog import select
from accelqual_probes.profiles import BUILTIN
from accelqual_probes.schema import ProbeReport

from tests.support.reports import T0, exit_code, pod_output


@dataclass
class World:
    spec: QualificationSpec
    nodes: dict[str, NodeInfo]
    name: str = "pool-a"
    generation: int = 1
    now: datetime = T0
    status: QualificationStatus = field(default_factory=QualificationStatus)
    pods: dict[str, ProbePodInfo] = field(default_factory=dict)
    results: dict[str, NodeResult] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    busy: dict[str, frozenset[str]] = field(default_factory=dict)
    events: list[PostEvent] = field(default_factory=list)
    summaries: list[UploadSummary] = field(default_factory=list)
    marks: list[MarkNode] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    max_in_flight: int = 0
    rv: int = 100

    def snapshot(self) -> Snapshot:
        pool = tuple(n for n in self.nodes.values() if self.spec.node_selector.matches(dict(n.labels)))
        return Snapshot(name=self.name, uid="uid-q", generation=self.generation, annotations=dict(self.annotations),
                        nodes=pool, busy=dict(self.busy), pods=tuple(self.pods.values()),
                        results=dict(self.results))

    def step(self, seconds: float = 1.0) -> Plan:
        self.now += timedelta(seconds=seconds)
        decided = plan(self.spec, self.snapshot(), self.status, self.now, namespace="accelqual-system")
        for action in decided.actions:
            self._apply(action)
        self.status = decided.status
        in_flight = sum(1 for p in self.pods.values() if not p.finished)
        self.max_in_flight = max(self.max_in_flight, in_flight)
        return decided

    def _apply(self, action: Any) -> None:
        if isinstance(action, CreatePod):
            meta = action.manifest["metadata"]
            self.pods[meta["name"]] = ProbePodInfo(name=meta["name"], node=action.node,
                                                   run_id=meta["labels"][LABEL_POD_RUN], phase=PodPhase.PENDING,
                                                   uid=f"uid-{meta['name']}", created_at=self.now)
            self.created.append(action.node)
        elif isinstance(action, DeletePod):
            self.pods.pop(action.name, None)
            self.results.pop(action.name, None)
        elif isinstance(action, MarkNode):
            node = self.nodes[action.node]
            assert action.resource_version == node.resource_version
            body = node_patch(action, node.taints, node.unschedulable, node.resource_version)
            self.nodes[action.node] = _patched(node, body, self._next_rv())
            self.marks.append(action)
        elif isinstance(action, PostEvent):
            self.events.append(action)
        elif isinstance(action, UploadSummary):
            self.summaries.append(action)
        elif isinstance(action, RemoveAnnotation):
            self.annotations.pop(action.key, None)

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def start_pods(self) -> None:
        for name, p in self.pods.items():
            if p.phase is PodPhase.PENDING:
                self.pods[name] = replace(p, phase=PodPhase.RUNNING, started_at=self.now)

    def finish(self, node: str, rep: ProbeReport) -> None:
        """The probe pod on `node` ends with `rep` as its output; the handler collects it."""
        pod = next(p for p in self.pods.values() if p.node == node and not p.finished)
        log, term = pod_output(rep)
        code = exit_code(rep)
        done = replace(pod, phase=PodPhase.SUCCEEDED if code == 0 else PodPhase.FAILED, exit_code=code,
                       started_at=pod.started_at or self.now)
        self.pods[pod.name] = done
        expected = tuple(select(self.spec.suite, self.spec.checks or None, self.spec.skip_checks))
        self.results[pod.name] = evaluate_pod(done, log, term, expected_checks=expected,
                                              profile=BUILTIN["cpu-reference"])

    def running_nodes(self) -> list[str]:
        return sorted(p.node for p in self.pods.values() if not p.finished)

    def tainted(self, key: str) -> set[str]:
        return {n.name for n in self.nodes.values() if n.has_taint(key)}


def _patched(node: NodeInfo, body: Mapping[str, Any], rv: str) -> NodeInfo:
    meta = body.get("metadata") or {}
    labels = dict(node.labels)
    for k, v in (meta.get("labels") or {}).items():
        if v is None:
            labels.pop(k, None)
        else:
            labels[k] = v
    annotations = dict(node.annotations)
    for k, v in (meta.get("annotations") or {}).items():
        if v is None:
            annotations.pop(k, None)
        else:
            annotations[k] = v
    spec = body.get("spec") or {}
    taints = node.taints
    if "taints" in spec:
        taints = tuple(Taint(t["key"], t.get("value", ""), t["effect"]) for t in spec["taints"] or [])
    unschedulable = node.unschedulable
    if "unschedulable" in spec:
        unschedulable = bool(spec["unschedulable"])
    return replace(node, labels=labels, annotations=annotations, taints=taints, unschedulable=unschedulable,
                   resource_version=rv)

"""Where each node of a run stands (`NodeView`) and which nodes get a probe pod now (pure; called by `plan()`).

A node's state is derived from what the cluster shows: its probe pod of the run, the mark
it carries, whether its accelerators are in use, whether a probe could be scheduled there
at all. Who belongs to a run:
- `Once`/`Schedule`: the pool's nodes, except those created after the run started (they
  wait for the next run; otherwise a pool that keeps growing would keep its run open);
  a node that leaves the pool mid-run is dropped, one that enters it (relabelled) is tested.
- `OnJoin`: gated nodes without a verdict, including those that join while the run is going.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from accelqual_probes.schema import OverallVerdict

from accelqual.constants import ANN_CORDONED_BY, ANN_REASON, ANN_RUN, LABEL_VERDICT, Phase
from accelqual.models import QualificationSpec, QualificationStatus, Toleration, Trigger, resolve_count
from accelqual.planning.actions import CreatePod
from accelqual.planning.podspec import ProbeTarget, build_probe_pod, probe_image
from accelqual.planning.profiles import expected_devices, profile_for, resource_count
from accelqual.planning.snapshot import VERDICT_BY_LABEL, NodeInfo, NodeResult, ProbePodInfo, Snapshot, Taint

#: A probe pod still running this long past its own deadline is given up on (the kubelet
#: should have killed it at activeDeadlineSeconds; a node that does not is itself suspect).
DEADLINE_GRACE = timedelta(seconds=120)
#: The taint Kubernetes puts on a cordoned node; tolerated only when we cordoned the node.
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
HARD_EFFECTS = ("NoSchedule", "NoExecute")


class NodeState(StrEnum):
    WAITING = "waiting"  # not started: no slot, busy, not schedulable, run halted
    STARTING = "starting"  # a pod is created in this plan
    RUNNING = "running"  # pod exists, not finished (or finished and being collected)
    DONE = "done"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)  # one per pool node in every reconcile: slots build in half the time
class NodeView:
    node: NodeInfo
    state: NodeState
    pod: ProbePodInfo | None = None
    result: NodeResult | None = None
    #: The verdict when DONE: from the result, else from the node's label (result not at hand).
    verdict: OverallVerdict | None = None
    reason: str = ""


def run_marker(qualification: str, run: str) -> str:
    """The value of a node's `accelqual.io/run` annotation once marked by this run."""
    return f"{qualification}/{run}"


def marked_by(view: NodeView, marker: str) -> bool:
    return view.node.annotations.get(ANN_RUN) == marker


def eligible_on_join(spec: QualificationSpec, node: NodeInfo) -> bool:
    """A gated node with no verdict yet is qualified as it appears."""
    if spec.gate_taint is None or not node.has_taint(spec.gate_taint.key):
        return False
    return LABEL_VERDICT not in node.labels


def dry_run_decided(spec: QualificationSpec, snap: Snapshot, run: str | None) -> frozenset[str]:
    """Gated nodes an earlier OnJoin dry run already decided on.

    A dry run marks no node, so a gated node stays eligible; the finished probe pod of the
    earlier run is the record instead (kept while the node is still gated, see `plan`), and
    without it the dry run would probe the same nodes again and again.
    """
    if not (spec.dry_run and spec.trigger is Trigger.ON_JOIN):
        return frozenset()
    return frozenset(p.node for p in snap.pods if p.finished and not p.deleting and p.run_id != run)


def joined_after(node: NodeInfo, moment: datetime) -> bool:
    return node.created_at is not None and node.created_at > moment


def node_views(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, run: str,
               pool: Mapping[str, NodeInfo], now: datetime) -> dict[str, NodeView]:
    """The run's members and their states, by node name (sorted)."""
    pods: dict[str, ProbePodInfo] = {}
    for candidate in snap.pods:
        if candidate.run_id == run and not candidate.deleting and candidate.node in pool:
            pods.setdefault(candidate.node, candidate)
    marker = run_marker(snap.name, run)
    started = st.started_at or now
    waited_out = now - started >= timedelta(seconds=spec.wait_seconds)
    decided = dry_run_decided(spec, snap, run)
    views: dict[str, NodeView] = {}
    for name in sorted(pool):
        node = pool[name]
        pod = pods.get(name)
        marked = node.annotations.get(ANN_RUN) == marker
        if pod is None and not marked:
            if spec.trigger is Trigger.ON_JOIN:
                if not eligible_on_join(spec, node) or name in decided:
                    continue
            elif joined_after(node, started):
                continue
        views[name] = _node_view(spec, snap, st, node, pod, marked, waited_out, now)
    return views


def _node_view(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, node: NodeInfo,
               pod: ProbePodInfo | None, marked: bool, waited_out: bool, now: datetime) -> NodeView:
    if pod is not None:
        if pod.finished:
            result = snap.results.get(pod.name)
            if result is None:
                return NodeView(node, NodeState.RUNNING, pod, reason="collecting results")
            return NodeView(node, NodeState.DONE, pod, result, result.verdict, result.reason)
        deadline = timedelta(seconds=spec.probe.timeout_seconds) + DEADLINE_GRACE
        if pod.started_at is not None and pod_age(pod, pod.started_at, now) > deadline:
            result = NodeResult(node=node.name, run_id=pod.run_id, verdict=OverallVerdict.INCONCLUSIVE,
                                reason=f"probe still running {int(deadline.total_seconds())} s after start; "
                                       "its deadline was not enforced")
            return NodeView(node, NodeState.DONE, pod, result, result.verdict, result.reason)
        if pod.started_at is None and pod.created_at is not None and waited_out \
                and pod_age(pod, pod.created_at, now) >= timedelta(seconds=spec.wait_seconds):
            return NodeView(node, NodeState.SKIPPED, pod, reason="probe pod was not scheduled in time")
        return NodeView(node, NodeState.RUNNING, pod)
    if marked:
        label = node.labels.get(LABEL_VERDICT, "")
        verdict = VERDICT_BY_LABEL.get(label, OverallVerdict.INCONCLUSIVE)
        return NodeView(node, NodeState.DONE, None, None, verdict, node.annotations.get(ANN_REASON, ""))
    blocked = blocked_reason(spec, snap, st, node)
    if blocked and waited_out and st.phase is not Phase.HALTED:
        return NodeView(node, NodeState.SKIPPED, reason=blocked)
    return NodeView(node, NodeState.WAITING, reason=blocked)


def pod_age(pod: ProbePodInfo, since: datetime, now: datetime) -> timedelta:
    """How long the pod has been in its phase since `since` (its start or creation, stamped by the kubelet or the
    API server): never more than the operator itself has watched it, when it did, so that a skewed node clock
    or a step of the operator's clock does not make a probe look overdue."""
    age = now - since
    if pod.observed_seconds is not None:
        age = min(age, timedelta(seconds=pod.observed_seconds))
    return age


def blocked_reason(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, node: NodeInfo) -> str:
    """Why a node cannot be tested now ('' if it can)."""
    if st.phase is Phase.HALTED:
        return "run halted by the failure budget"
    if not node.ready:
        return "node is not Ready"
    if node.unschedulable and node.annotations.get(ANN_CORDONED_BY) != snap.name:
        return "node is cordoned"
    taint = untolerated_taint(spec, node)
    if taint is not None:
        # The probe pod would never be scheduled; waiting for it would hold a slot for nothing.
        return f"node has taint {taint.key}:{taint.effect}, which the probe does not tolerate"
    if spec.only_idle_nodes:
        profile = profile_for(spec.profile, node, snap.custom_profiles)
        resource = spec.probe.resource_name or (profile.spec.resource_name if profile.spec else None)
        used = snap.busy.get(node.name, frozenset())
        if (resource and resource in used) or (not resource and used):
            return "accelerators in use by other pods"
    return ""


def untolerated_taint(spec: QualificationSpec, node: NodeInfo) -> Taint | None:
    """A taint of the node that keeps the probe pod off it (our own taints are always tolerated)."""
    if not node.taints:
        return None
    ours = {(t.key, t.effect.value) for t in (spec.gate_taint, spec.on_failure.taint) if t is not None}
    for taint in node.taints:
        if taint.effect not in HARD_EFFECTS or (taint.key, taint.effect) in ours:
            continue
        if taint.key == UNSCHEDULABLE_TAINT and node.unschedulable:
            continue  # the cordon itself: judged above
        if not any(_tolerates(tol, taint) for tol in spec.probe.tolerations):
            return taint
    return None


def _tolerates(tol: Toleration, taint: Taint) -> bool:
    if tol.effect is not None and tol.effect.value != taint.effect:
        return False
    if tol.operator == "Exists":
        return tol.key is None or tol.key == taint.key
    return tol.key == taint.key and (tol.value or "") == taint.value


def in_flight(views: Mapping[str, NodeView], pods: Iterable[ProbePodInfo]) -> int:
    """Our probe pods that exist and have not finished: they count against `maxConcurrent`.

    Counted from the pods, not the run's members: a skipped node's pod that is still pending
    (the scheduler may yet bind it) and a superseded run's pod not yet deleted count too, for
    a probe must never run beyond the limit. A pod overrunning its deadline is given up on.
    """
    given_up = {v.pod.name for v in views.values() if v.state is NodeState.DONE and v.pod is not None}
    return sum(1 for p in pods if not p.deleting and not p.finished and p.name not in given_up)


def start_pods(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, run: str,
               views: dict[str, NodeView], pool_size: int, namespace: str) -> list[CreatePod]:
    """Probe pods for waiting, unblocked nodes, up to `maxConcurrent` (a share of the whole pool)."""
    if st.phase is Phase.HALTED:
        return []
    limit = resolve_count(spec.max_concurrent, pool_size, minimum=1)
    slots = max(0, limit - in_flight(views, snap.pods))
    created: list[CreatePod] = []
    for name, view in views.items():
        if slots == 0:
            break
        if view.state is not NodeState.WAITING or view.reason:
            continue
        node = view.node
        profile = profile_for(spec.profile, node, snap.custom_profiles)
        resource = spec.probe.resource_name or (profile.spec.resource_name if profile.spec else None)
        target = ProbeTarget(
            node=name,
            image=probe_image(spec, profile.spec, snap.probe_images),
            profile=profile.name,
            profile_json=profile.custom_json,
            resource_name=resource,
            resource_count=resource_count(node, resource),
            checks=tuple(spec.checks) if spec.checks else (),
            expected_devices=expected_devices(node, resource),
        )
        manifest = build_probe_pod(qualification=snap.name, qualification_uid=snap.uid, run=run,
                                   namespace=namespace, spec=spec, target=target,
                                   tolerate=_tolerations(spec, snap, node))
        created.append(CreatePod(name, manifest))
        views[name] = replace(view, state=NodeState.STARTING)
        slots -= 1
    return created


def skip_stalled(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, views: dict[str, NodeView],
                 pool_size: int, now: datetime) -> None:
    """Give up on nodes waiting for a slot that only skipped nodes' pending probes hold.

    Those pods count against the limit until the run ends, and might never be scheduled;
    without this the run would wait for them forever instead of reporting what it could not test.
    """
    started = st.started_at or now
    if st.phase is Phase.HALTED or now - started < timedelta(seconds=spec.wait_seconds):
        return
    if any(v.state in (NodeState.RUNNING, NodeState.STARTING) for v in views.values()):
        return  # a probe is running: a slot will free up
    if resolve_count(spec.max_concurrent, pool_size, minimum=1) > in_flight(views, snap.pods):
        return
    for name, view in views.items():
        if view.state is NodeState.WAITING:
            views[name] = replace(view, state=NodeState.SKIPPED,
                                  reason=view.reason or "no free probe slot: pending probes of skipped nodes hold them")


def _tolerations(spec: QualificationSpec, snap: Snapshot, node: NodeInfo) -> list[dict[str, str]]:
    """Tolerate our own taints (gate and failure) and a cordon we placed, nothing else by default."""
    tolerations = []
    for taint in (spec.gate_taint, spec.on_failure.taint):
        if taint is not None:
            tolerations.append({"key": taint.key, "operator": "Exists", "effect": taint.effect.value})
    if node.unschedulable and node.annotations.get(ANN_CORDONED_BY) == snap.name:
        tolerations.append({"key": UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations

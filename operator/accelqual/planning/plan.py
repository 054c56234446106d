"""`plan(spec, snapshot, status, now)`: the whole reconcile decision of one Qualification.

Level-based: everything is derived from what the cluster shows now (nodes, their marks,
our probe pods and the results collected from them) plus the small status we wrote last
time, so running it twice does nothing the second time, and an operator restarted at any
moment picks up where it was. A run's probe pods are kept until the run completes: they
are the durable record of the run (and the outbox of evidence not yet uploaded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from accelqual_probes.catalog import BY_ID, select
from accelqual_probes.schema import OverallVerdict

from accelqual.constants import (
    ANN_CHECKED_AT,
    ANN_FAILED_CHECKS,
    ANN_PROFILE,
    ANN_QUALIFICATION,
    ANN_REASON,
    ANN_REPORT_SHA256,
    ANN_REPORT_URI,
    ANN_RESUME,
    ANN_RUN,
    ANN_TAINTED_BY,
    LABEL_VERDICT,
    ConditionType,
    Phase,
    Reason,
)
from accelqual.models import (
    MAX_FAILING_NODES,
    FailingNode,
    OutlierAction,
    QualificationSpec,
    QualificationStatus,
    RunSummary,
    Trigger,
    resolve_count,
)
from accelqual.planning import schedule
from accelqual.planning.actions import (
    Action,
    CreatePod,
    DeletePod,
    MarkNode,
    PostEvent,
    RemoveAnnotation,
    UploadSummary,
)
from accelqual.planning.conditions import set_condition
from accelqual.planning.fleet import Outlier, common_factor, find_outliers
from accelqual.planning.naming import evidence_key, run_id
from accelqual.planning.podspec import ProbeTarget, build_probe_pod
from accelqual.planning.profiles import expected_devices, profile_for, resource_count
from accelqual.planning.snapshot import CheckOutcome, NodeInfo, NodeResult, ProbePodInfo, Snapshot, Taint
from accelqual.planning.summary import build_summary

#: A probe pod still running this long past its own deadline is given up on (the kubelet
#: should have killed it at activeDeadlineSeconds; a node that does not is itself suspect).
DEADLINE_GRACE = timedelta(seconds=120)
REQUEUE_RUNNING = 5.0
REQUEUE_IDLE = 60.0
REQUEUE_ONJOIN = 30.0


class NodeState(StrEnum):
    WAITING = "waiting"  # not started: no slot, busy, not ready, run halted
    STARTING = "starting"  # a pod is created in this plan
    RUNNING = "running"  # pod exists, not finished (or finished and being collected)
    DONE = "done"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class NodeView:
    node: NodeInfo
    state: NodeState
    pod: ProbePodInfo | None = None
    result: NodeResult | None = None
    #: The verdict when DONE: from the result, else from the node's label (result not at hand).
    verdict: OverallVerdict | None = None
    reason: str = ""


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    status: QualificationStatus = field(default_factory=QualificationStatus)
    requeue_after: float = REQUEUE_IDLE


def plan(
    spec: QualificationSpec,
    snap: Snapshot,
    status: QualificationStatus,
    now: datetime,
    *,
    namespace: str,
) -> Plan:
    """Decide the actions and the new status of one Qualification."""
    out = Plan(status=status.model_copy(deep=True))
    st = out.status
    spec_changed = st.observed_generation != snap.generation
    pool = {n.name: n for n in snap.nodes}

    _handle_resume(spec, snap, st, out, spec_changed, now)
    active = _decide_run(spec, snap, st, out, spec_changed, pool, now)
    st.observed_generation = snap.generation
    st.evidence_backlog = len(snap.evidence_pending) + snap.evidence_outbox
    set_condition(st, ConditionType.READY, True, Reason.SPEC_VALID, "spec accepted", now, snap.generation)

    if active is None:
        _cleanup_pods(snap, out, keep_run=None, members=set())
        _idle_conditions(spec, st, now, snap.generation)
        out.requeue_after = _idle_requeue(spec, st, now)
        return out

    views = _node_views(spec, snap, st, active, pool, now)
    _start_pods(spec, snap, st, active, views, out, namespace, now)
    complete = all(v.state in (NodeState.DONE, NodeState.SKIPPED) for v in views.values())
    outliers = find_outliers(_run_results(views), spec.fleet_relative) if complete else []
    effective = _apply_outliers(views, outliers, spec)
    marks_pending = _mark_nodes(spec, snap, st, active, effective, complete, out, now)
    _cleanup_pods(snap, out, keep_run=active, members=set(views))
    _write_summary(st, effective)

    if st.phase is Phase.HALTED:
        out.requeue_after = REQUEUE_RUNNING
        return out
    if complete and not marks_pending:
        _complete_run(spec, snap, st, active, effective, outliers, out, now)
        out.requeue_after = _idle_requeue(spec, st, now)
    else:
        st.phase = Phase.RUNNING
        running = st.summary.running + st.summary.pending
        set_condition(st, ConditionType.PROGRESSING, True, Reason.RUN_IN_PROGRESS,
                      f"run {active}: {running} of {st.summary.total} nodes still to finish", now, snap.generation)
        out.requeue_after = REQUEUE_RUNNING
    _degraded_condition(st, now, snap.generation)
    return out


# --- run lifecycle -------------------------------------------------------------------------

def _handle_resume(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, out: Plan,
                   spec_changed: bool, now: datetime) -> None:
    requested = snap.annotations.get(ANN_RESUME, "").lower() == "true"
    if requested:
        out.actions.append(RemoveAnnotation(ANN_RESUME))
    if st.phase is not Phase.HALTED or not (requested or spec_changed):
        return
    why = "resumed by the accelqual.io/resume annotation" if requested else "resumed by a spec change"
    st.failures_at_resume = st.summary.failed
    st.phase = Phase.RUNNING
    set_condition(st, ConditionType.HALTED, False, Reason.RESUMED, why, now, snap.generation)
    out.actions.append(PostEvent("Qualification", snap.name, "Normal", Reason.RESUMED.value,
                                 f"run {st.run_id} {why}", key=f"{st.run_id}/resumed/{st.summary.failed}"))


def _decide_run(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, out: Plan,
                spec_changed: bool, pool: Mapping[str, NodeInfo], now: datetime) -> str | None:
    """The id of the run to work on now, starting a new one when the trigger says so."""
    active = st.run_id if st.phase in (Phase.RUNNING, Phase.HALTED) else None
    start = False
    if spec.trigger is Trigger.ONCE:
        start = spec_changed or st.run_id is None
    elif spec.trigger is Trigger.SCHEDULE:
        assert spec.schedule is not None  # the model requires it
        if spec_changed or st.next_run_at is None:
            st.next_run_at = schedule.next_after(spec.schedule, now)
        # A run never overlaps the previous one; runs missed while the operator was down are run
        # once (the next time is computed from now, not from the missed slot).
        if active is None and st.next_run_at <= now:
            start = True
            st.next_run_at = schedule.next_after(spec.schedule, now)
    elif active is None:
        start = any(_eligible_on_join(spec, n) for n in pool.values())
    if not start:
        return active
    new_run = run_id(now)
    if new_run == st.run_id:
        new_run += "-1"
    if active is not None:
        out.actions.append(PostEvent("Qualification", snap.name, "Normal", "RunSuperseded",
                                     f"run {active} superseded by run {new_run} after a spec change",
                                     key=f"{active}/superseded"))
    st.run_id = new_run
    st.started_at = now
    st.finished_at = None
    st.phase = Phase.RUNNING
    st.summary = RunSummary()
    st.failing_nodes = []
    st.failing_nodes_omitted = 0
    st.failures_at_resume = 0
    st.report_uri = None
    st.report_sha256 = None
    set_condition(st, ConditionType.HALTED, False, Reason.NOT_HALTED, "", now, snap.generation)
    out.actions.append(PostEvent("Qualification", snap.name, "Normal", Reason.RUN_STARTED.value,
                                 f"run {new_run} started ({spec.trigger.value}, suite {spec.suite.value})",
                                 key=f"{new_run}/started"))
    return new_run


def _eligible_on_join(spec: QualificationSpec, node: NodeInfo) -> bool:
    """A gated node with no verdict yet is qualified as it appears."""
    if spec.gate_taint is None or not node.has_taint(spec.gate_taint.key):
        return False
    return LABEL_VERDICT not in node.labels


def _run_marker(snap: Snapshot, run: str) -> str:
    return f"{snap.name}/{run}"


def _node_views(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, run: str,
                pool: Mapping[str, NodeInfo], now: datetime) -> dict[str, NodeView]:
    pods: dict[str, ProbePodInfo] = {}
    for candidate in snap.pods:
        if candidate.run_id == run and not candidate.deleting and candidate.node in pool:
            pods.setdefault(candidate.node, candidate)
    marker = _run_marker(snap, run)
    started = st.started_at or now
    waited_out = now - started >= timedelta(seconds=spec.wait_seconds)
    views: dict[str, NodeView] = {}
    for name in sorted(pool):
        node = pool[name]
        pod = pods.get(name)
        marked = node.annotations.get(ANN_RUN) == marker
        if spec.trigger is Trigger.ON_JOIN and pod is None and not marked and not _eligible_on_join(spec, node):
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
        if pod.started_at is not None and now - pod.started_at > deadline:
            result = NodeResult(node=node.name, run_id=pod.run_id, verdict=OverallVerdict.INCONCLUSIVE,
                                reason=f"probe still running {int(deadline.total_seconds())} s after start; "
                                       "its deadline was not enforced")
            return NodeView(node, NodeState.DONE, pod, result, result.verdict, result.reason)
        if pod.started_at is None and pod.created_at is not None and waited_out \
                and now - pod.created_at >= timedelta(seconds=spec.wait_seconds):
            return NodeView(node, NodeState.SKIPPED, pod, reason="probe pod was not scheduled in time")
        return NodeView(node, NodeState.RUNNING, pod)
    if marked:
        label = node.labels.get(LABEL_VERDICT, "")
        verdict = OverallVerdict(label) if label in set(OverallVerdict) else OverallVerdict.INCONCLUSIVE
        return NodeView(node, NodeState.DONE, None, None, verdict, node.annotations.get(ANN_REASON, ""))
    blocked = _blocked_reason(spec, snap, st, node)
    if blocked:
        if waited_out and st.phase is not Phase.HALTED:
            return NodeView(node, NodeState.SKIPPED, reason=blocked)
        return NodeView(node, NodeState.WAITING, reason=blocked)
    return NodeView(node, NodeState.WAITING, reason="")


def _blocked_reason(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, node: NodeInfo) -> str:
    """Why a node cannot be tested now ('' if it can)."""
    if st.phase is Phase.HALTED:
        return "run halted by the failure budget"
    if not node.ready:
        return "node is not Ready"
    if node.unschedulable and node.annotations.get(ANN_TAINTED_BY) != snap.name:
        return "node is cordoned"
    if spec.only_idle_nodes:
        profile = profile_for(spec.profile, node, snap.custom_profiles)
        resource = spec.probe.resource_name or (profile.spec.resource_name if profile.spec else None)
        used = snap.busy.get(node.name, frozenset())
        if (resource and resource in used) or (not resource and used):
            return "accelerators in use by other pods"
    return ""


def _start_pods(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, run: str,
                views: dict[str, NodeView], out: Plan, namespace: str, now: datetime) -> None:
    if st.phase is Phase.HALTED:
        return
    limit = resolve_count(spec.max_concurrent, len(views), minimum=1)
    in_flight = sum(1 for v in views.values() if v.state is NodeState.RUNNING and v.pod and not v.pod.finished)
    slots = max(0, limit - in_flight)
    checks = tuple(select(spec.suite, spec.checks or None, spec.skip_checks))
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
            profile=profile.name,
            profile_json=profile.custom_json,
            resource_name=resource,
            resource_count=resource_count(node, resource),
            checks=tuple(spec.checks) if spec.checks else (),
            expected_devices=expected_devices(node, resource),
        )
        manifest = build_probe_pod(qualification=snap.name, qualification_uid=snap.uid, run=run,
                                   namespace=namespace, spec=spec, target=target,
                                   tolerate=_tolerations(spec, node))
        out.actions.append(CreatePod(name, manifest))
        views[name] = replace(view, state=NodeState.STARTING)
        slots -= 1
    del checks  # the probe derives the same selection from --suite/--checks/--skip-checks


def _tolerations(spec: QualificationSpec, node: NodeInfo) -> list[dict[str, str]]:
    """Tolerate our own taints (gate and failure) and a cordon we placed, nothing else by default."""
    tolerations = []
    for taint in (spec.gate_taint, spec.on_failure.taint):
        if taint is not None:
            tolerations.append({"key": taint.key, "operator": "Exists", "effect": taint.effect.value})
    if node.unschedulable:
        tolerations.append({"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                            "effect": "NoSchedule"})
    return tolerations


def _run_results(views: Mapping[str, NodeView]) -> dict[str, NodeResult]:
    return {name: v.result for name, v in views.items() if v.state is NodeState.DONE and v.result is not None}


def _apply_outliers(
    views: dict[str, NodeView], outliers: list[Outlier], spec: QualificationSpec
) -> dict[str, NodeView]:
    """Views with peer-comparison failures folded into the verdicts (action `fail`)."""
    if not outliers or spec.fleet_relative.action is not OutlierAction.FAIL:
        return views
    by_node: dict[str, list[Outlier]] = {}
    for o in outliers:
        by_node.setdefault(o.node, []).append(o)
    effective = dict(views)
    for node, found in by_node.items():
        view = views[node]
        if view.result is None or view.verdict is not OverallVerdict.PASS:
            continue
        reason = "fleet outlier: " + "; ".join(o.describe() for o in found)
        failed = tuple(dict.fromkeys((*view.result.failed_checks, *(o.check for o in found))))
        result = replace(view.result, verdict=OverallVerdict.FAIL, reason=reason[:256], failed_checks=failed)
        effective[node] = replace(view, result=result, verdict=OverallVerdict.FAIL, reason=result.reason)
    return effective


# --- node marks ------------------------------------------------------------------------------

def _mark_nodes(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, run: str,
                views: Mapping[str, NodeView], complete: bool, out: Plan, now: datetime) -> bool:
    """Issue the node marks the results call for; True if any mark is still to be applied."""
    marker = _run_marker(snap, run)
    budget = resolve_count(spec.failure_budget, len(views), minimum=0) + st.failures_at_resume
    defer_passes = spec.fleet_relative.enabled and spec.fleet_relative.action is OutlierAction.FAIL \
        and not complete
    failed = [v for v in views.values() if v.state is NodeState.DONE and v.verdict is OverallVerdict.FAIL]

    def already_marked(v: NodeView) -> bool:
        return v.node.annotations.get(ANN_RUN) == marker and v.node.labels.get(LABEL_VERDICT) == v.verdict

    # Failures that already carry our mark count first; the rest in the order their probes ended.
    failed.sort(key=lambda v: (not already_marked(v), _finish_key(v), v.node.name))
    allowed = {v.node.name for v in failed[:budget]}
    over_budget = len(failed) > budget
    # While halted the operator stops acting on nodes, except for the failures within the budget.
    halted = over_budget or st.phase is Phase.HALTED
    pending = False
    for view in views.values():
        if view.state is not NodeState.DONE or view.verdict is None or already_marked(view):
            continue
        if view.verdict is OverallVerdict.FAIL and view.node.name not in allowed:
            continue
        if (view.verdict is OverallVerdict.PASS and defer_passes) or \
                (halted and view.verdict is not OverallVerdict.FAIL):
            pending = True
            continue
        mark = _mark_for(spec, snap, run, view, now)
        if spec.dry_run:
            out.actions.append(_dry_run_event(run, view, mark))
            continue
        out.actions.append(mark)
        if view.verdict is not OverallVerdict.PASS:
            out.actions.append(_node_event(spec, snap, run, view))
        pending = True
    if over_budget and st.phase is not Phase.HALTED:
        _halt(spec, snap, st, run, views, failed, budget, out, now)
    return pending


def _finish_key(view: NodeView) -> str:
    pod = view.pod
    return pod.started_at.isoformat() if pod is not None and pod.started_at is not None else ""


def _mark_for(spec: QualificationSpec, snap: Snapshot, run: str, view: NodeView, now: datetime) -> MarkNode:
    node, verdict = view.node, view.verdict
    assert verdict is not None
    result = view.result
    annotations: dict[str, str | None] = {
        ANN_QUALIFICATION: snap.name,
        ANN_RUN: _run_marker(snap, run),
        ANN_CHECKED_AT: now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ANN_REASON: view.reason[:256] or None,
        ANN_FAILED_CHECKS: ",".join(result.failed_checks)[:512] if result and result.failed_checks else None,
        ANN_PROFILE: result.profile if result and result.profile else None,
    }
    if spec.report is not None and result is not None and result.report_sha256:
        key = evidence_key(spec.report.prefix, snap.name, run, node.name)
        annotations[ANN_REPORT_URI] = f"s3://{spec.report.bucket}/{key}"
        annotations[ANN_REPORT_SHA256] = result.report_sha256
    else:
        annotations[ANN_REPORT_URI] = None
        annotations[ANN_REPORT_SHA256] = None
    labels: dict[str, str | None] = {LABEL_VERDICT: verdict.value}
    add: tuple[Taint, ...] = ()
    remove: list[Taint] = []
    cordon: bool | None = None
    fail_taint = Taint(spec.on_failure.taint.key, spec.on_failure.taint.value, spec.on_failure.taint.effect.value)
    if verdict is OverallVerdict.FAIL:
        add = (fail_taint,)
        annotations[ANN_TAINTED_BY] = snap.name
        labels.update(spec.on_failure.labels)
        if spec.on_failure.cordon:
            cordon = True
    elif verdict is OverallVerdict.PASS:
        if spec.gate_taint is not None and node.has_taint(spec.gate_taint.key):
            remove.append(Taint(spec.gate_taint.key, spec.gate_taint.value, spec.gate_taint.effect.value))
        # Release only what this Qualification placed; anybody else's taint or cordon stays.
        if spec.auto_release and node.annotations.get(ANN_TAINTED_BY) == snap.name:
            if node.has_taint(fail_taint.key, fail_taint.effect):
                remove.append(fail_taint)
            annotations[ANN_TAINTED_BY] = None
            for key in spec.on_failure.labels:
                labels[key] = None
            if spec.on_failure.cordon and node.unschedulable:
                cordon = False
    return MarkNode(node=node.name, verdict=verdict, resource_version=node.resource_version, labels=labels,
                    annotations=annotations, add_taints=add, remove_taints=tuple(remove), unschedulable=cordon)


def _node_event(spec: QualificationSpec, snap: Snapshot, run: str, view: NodeView) -> PostEvent:
    verdict = view.verdict
    assert verdict is not None
    where = ""
    if spec.report is not None and view.result is not None and view.result.report_sha256:
        key = evidence_key(spec.report.prefix, snap.name, run, view.node.name)
        where = f"; evidence s3://{spec.report.bucket}/{key}"
    reason = "QualificationFailed" if verdict is OverallVerdict.FAIL else "QualificationInconclusive"
    taint = f"; tainted {spec.on_failure.taint.key}" if verdict is OverallVerdict.FAIL else ""
    what = _failure_details(view.result) if verdict is OverallVerdict.FAIL else ""
    # The evidence URI goes before the details are cut to fit, so `kubectl describe node` always shows it.
    head = f"{snap.name} run {run}: "
    tail = f"{taint}{where}"
    body = (what or view.reason)[:max(0, 1024 - len(head) - len(tail))]
    return PostEvent("Node", view.node.name, "Warning", reason, f"{head}{body}{tail}"[:1024],
                     key=f"{snap.name}/{run}/{verdict.value}")


def _failure_details(result: NodeResult | None, most: int = 4) -> str:
    """Which checks failed and by how much: measured value against the limit, and the check's own reason."""
    if result is None:
        return ""
    parts: list[str] = []
    for check_id in result.failed_checks[:most]:
        outcome = result.checks.get(check_id)
        if outcome is None or outcome.verdict not in ("fail", "error"):
            continue  # a fleet outlier: the node's reason describes it
        parts.append(f"{check_id} {outcome.verdict}ed: {_against_limit(check_id, outcome)}")
    if not parts:
        return ""
    more = len(result.failed_checks) - most
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _against_limit(check_id: str, outcome: CheckOutcome) -> str:
    unit = BY_ID[check_id].unit if check_id in BY_ID else ""
    value, low, high = outcome.value, outcome.minimum, outcome.maximum
    reason = outcome.reason or "no reason given"
    if value is None or (low is None and high is None):
        return reason
    limit: float
    if low is not None and (value < low or high is None or value <= high):
        limit, bound = low, ">="
    else:
        assert high is not None
        limit, bound = high, "<="
    off = f", {abs(value - limit) / abs(limit):.0%} {'below' if value < limit else 'above'} it" if limit else ""
    return f"measured {value:.4g} {unit} against limit {bound} {limit:.4g} {unit}{off} ({reason})".replace(
        "  ", " ")


def _dry_run_event(run: str, view: NodeView, mark: MarkNode) -> PostEvent:
    changes = [f"label {LABEL_VERDICT}={mark.verdict.value}"]
    changes += [f"add taint {t.key}:{t.effect}" for t in mark.add_taints]
    changes += [f"remove taint {t.key}:{t.effect}" for t in mark.remove_taints]
    if mark.unschedulable is not None:
        changes.append("cordon" if mark.unschedulable else "uncordon")
    kind = "Warning" if mark.verdict is not OverallVerdict.PASS else "Normal"
    return PostEvent("Node", view.node.name, kind, "DryRun",
                     f"dry run {run}: {view.verdict}: {view.reason}; would {', '.join(changes)}"[:1024],
                     key=f"{run}/dryrun/{mark.verdict.value}")


def _halt(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, run: str,
          views: Mapping[str, NodeView], failed: list[NodeView], budget: int, out: Plan, now: datetime) -> None:
    results_failed = [v.result for v in failed if v.result is not None]
    results_passed = [v.result for v in views.values()
                      if v.result is not None and v.verdict is OverallVerdict.PASS]
    factor = common_factor(results_failed, results_passed)
    message = (f"run {run}: {len(failed)} of {len(views)} nodes failed, over the failure budget of {budget}; "
               f"stopped tainting after {budget}. ")
    message += f"Common factor: {factor}. " if factor else "No common factor found. "
    message += f"Check the probes and the fleet, then `kubectl annotate aq {snap.name} {ANN_RESUME}=true`."
    st.phase = Phase.HALTED
    set_condition(st, ConditionType.HALTED, True, Reason.FAILURE_BUDGET_EXCEEDED, message, now, snap.generation)
    set_condition(st, ConditionType.PROGRESSING, False, Reason.FAILURE_BUDGET_EXCEEDED, "halted", now,
                  snap.generation)
    st.message = message[:1024]
    out.actions.append(PostEvent("Qualification", snap.name, "Warning", Reason.FAILURE_BUDGET_EXCEEDED.value,
                                 message, key=f"{run}/halted/{st.failures_at_resume}"))


# --- completion, summary, cleanup ---------------------------------------------------------

def _complete_run(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, run: str,
                  views: Mapping[str, NodeView], outliers: list[Outlier], out: Plan, now: datetime) -> None:
    st.phase = Phase.COMPLETED
    st.finished_at = now
    if spec.trigger is Trigger.SCHEDULE and spec.schedule and (st.next_run_at is None or st.next_run_at <= now):
        st.next_run_at = schedule.next_after(spec.schedule, now)
    s = st.summary
    text = (f"run {run} completed: {s.passed} passed, {s.failed} failed, {s.inconclusive} inconclusive, "
            f"{s.skipped} skipped of {s.total}")
    st.message = text
    set_condition(st, ConditionType.PROGRESSING, False, Reason.RUN_COMPLETED, text, now, snap.generation)
    if spec.fleet_relative.action is OutlierAction.WARN:
        for o in outliers:
            out.actions.append(PostEvent("Node", o.node, "Warning", "FleetOutlier", f"{snap.name} run {run}: "
                                         f"{o.describe()}", key=f"{snap.name}/{run}/outlier/{o.check}"))
    if spec.report is not None:
        document = build_summary(spec=spec, qualification=snap.name, run=run, started=st.started_at or now,
                                 finished=now, summary=s,
                                 nodes=[(v.node.name, v.verdict, v.reason, v.result, v.state.value)
                                        for v in views.values()],
                                 outliers=outliers, custom_profiles=snap.custom_profiles)
        out.actions.append(UploadSummary(run, document))
    kind = "Warning" if s.failed or s.inconclusive else "Normal"
    out.actions.append(PostEvent("Qualification", snap.name, kind, Reason.RUN_COMPLETED.value, text,
                                 key=f"{run}/completed"))


def _write_summary(st: QualificationStatus, views: Mapping[str, NodeView]) -> None:
    s = RunSummary(total=len(views))
    failing: list[FailingNode] = []
    for view in views.values():
        if view.state is NodeState.DONE:
            if view.verdict is OverallVerdict.PASS:
                s.passed += 1
            elif view.verdict is OverallVerdict.FAIL:
                s.failed += 1
            else:
                s.inconclusive += 1
            if view.verdict is not OverallVerdict.PASS and view.verdict is not None:
                failed = list(view.result.failed_checks[:8]) if view.result else []
                failing.append(FailingNode(node=view.node.name, verdict=view.verdict, failed_checks=failed,
                                           reason=view.reason[:256]))
        elif view.state is NodeState.SKIPPED:
            s.skipped += 1
        elif view.state is NodeState.WAITING:
            s.pending += 1
        else:
            s.running += 1
    failing.sort(key=lambda f: (f.verdict is not OverallVerdict.FAIL, f.node))
    st.summary = s
    st.failing_nodes = failing[:MAX_FAILING_NODES]
    st.failing_nodes_omitted = max(0, len(failing) - MAX_FAILING_NODES)


def _cleanup_pods(snap: Snapshot, out: Plan, *, keep_run: str | None, members: set[str]) -> None:
    """Delete probe pods that no longer belong to the active run (never one holding unsent evidence)."""
    for pod in snap.pods:
        if pod.deleting or pod.name in snap.evidence_pending:
            continue
        if pod.run_id != keep_run:
            out.actions.append(DeletePod(pod.name, "run is over"))
        elif pod.node not in members:
            out.actions.append(DeletePod(pod.name, "node left the pool"))


def _idle_conditions(spec: QualificationSpec, st: QualificationStatus, now: datetime, generation: int) -> None:
    if st.phase is Phase.INVALID:
        st.phase = Phase.PENDING if st.run_id is None else Phase.COMPLETED
    if st.run_id is None:
        st.phase = Phase.PENDING
        waiting = {Trigger.SCHEDULE: f"first run at {st.next_run_at}",
                   Trigger.ON_JOIN: "waiting for gated nodes to join",
                   Trigger.ONCE: "starting"}[spec.trigger]
        set_condition(st, ConditionType.PROGRESSING, False, Reason.WAITING, waiting, now, generation)
        set_condition(st, ConditionType.HALTED, False, Reason.NOT_HALTED, "", now, generation)
    elif spec.trigger is not Trigger.ONCE:
        nxt = f"next run at {st.next_run_at}" if spec.trigger is Trigger.SCHEDULE else "waiting for gated nodes"
        set_condition(st, ConditionType.PROGRESSING, False, Reason.WAITING, nxt, now, generation)
    _degraded_condition(st, now, generation)


def _degraded_condition(st: QualificationStatus, now: datetime, generation: int) -> None:
    s = st.summary
    if st.evidence_backlog:
        set_condition(st, ConditionType.DEGRADED, True, Reason.EVIDENCE_BACKLOG,
                      f"{st.evidence_backlog} reports wait for upload", now, generation)
    elif s.failed:
        set_condition(st, ConditionType.DEGRADED, True, Reason.NODES_FAILED,
                      f"{s.failed} of {s.total} nodes failed", now, generation)
    elif s.inconclusive:
        set_condition(st, ConditionType.DEGRADED, True, Reason.NODES_INCONCLUSIVE,
                      f"{s.inconclusive} of {s.total} nodes inconclusive", now, generation)
    elif s.total == 0 and st.run_id is not None:
        set_condition(st, ConditionType.DEGRADED, False, Reason.EMPTY_POOL, "no node matches the selector", now,
                      generation)
    else:
        set_condition(st, ConditionType.DEGRADED, False, Reason.ALL_PASSED, "", now, generation)


def _idle_requeue(spec: QualificationSpec, st: QualificationStatus, now: datetime) -> float:
    if spec.trigger is Trigger.SCHEDULE and st.next_run_at is not None:
        return float(min(300.0, max(1.0, math.ceil((st.next_run_at - now).total_seconds()))))
    if spec.trigger is Trigger.ON_JOIN:
        return REQUEUE_ONJOIN
    return REQUEUE_IDLE

"""`plan(spec, snapshot, status, now)`: the whole reconcile decision of one Qualification.

Level-based: everything is derived from what the cluster shows now (nodes, their marks,
our probe pods and the results collected from them) plus the small status we wrote last
time, so running it twice does nothing the second time, and an operator restarted at any
moment picks up where it was. A run's probe pods are kept until the run completes: they
are the durable record of the run (and the outbox of evidence not yet uploaded).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from accelqual_probes.schema import OverallVerdict

from accelqual.constants import ANN_RESUME, ConditionType, Phase, Reason
from accelqual.models import (
    MAX_FAILING_NODES,
    FailingNode,
    OutlierAction,
    QualificationSpec,
    QualificationStatus,
    RunSummary,
    Trigger,
)
from accelqual.planning import schedule
from accelqual.planning.actions import Action, DeletePod, PostEvent, RemoveAnnotation, UploadSummary
from accelqual.planning.conditions import set_condition
from accelqual.planning.fleet import Outlier
from accelqual.planning.marks import fleet_verdicts, mark_nodes
from accelqual.planning.naming import run_id
from accelqual.planning.snapshot import NodeInfo, Snapshot
from accelqual.planning.summary import build_summary
from accelqual.planning.views import (
    NodeState,
    NodeView,
    dry_run_decided,
    eligible_on_join,
    node_views,
    skip_stalled,
    start_pods,
)

REQUEUE_RUNNING = 5.0
#: The soonest a plan asks to be looked at again (a deadline just ahead is not polled for).
REQUEUE_MIN = 0.2
REQUEUE_IDLE = 60.0
REQUEUE_ONJOIN = 30.0


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
        _cleanup_pods(spec, snap, pool, out, keep_run=None, members=set())
        _idle_conditions(spec, st, now, snap.generation)
        out.requeue_after = _idle_requeue(spec, st, now)
        return out

    views = node_views(spec, snap, st, active, pool, now)
    # Shares (maxConcurrent, failureBudget) are of the whole pool, also in an OnJoin run of a few joiners.
    out.actions.extend(start_pods(spec, snap, st, active, views, len(pool), namespace))
    skip_stalled(spec, snap, st, views, len(pool), now)
    complete = all(v.state in (NodeState.DONE, NodeState.SKIPPED) for v in views.values())
    effective, outliers = fleet_verdicts(spec, snap, active, views, complete)
    marks_pending = mark_nodes(spec, snap, st, active, effective, complete, len(pool), out.actions, now)
    _cleanup_pods(spec, snap, pool, out, keep_run=active, members=set(views))
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
        out.requeue_after = _running_requeue(spec, st, views, now)
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
        decided = dry_run_decided(spec, snap, None)
        start = any(eligible_on_join(spec, n) and n.name not in decided for n in pool.values())
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
    skipped = [v for v in views.values() if v.state is NodeState.SKIPPED]
    if skipped:
        # Nodes the run could not test are reported with why, never silently left out.
        reasons = Counter(v.reason or "not tested" for v in skipped)
        text += " (not tested: " + "; ".join(f"{n} {r}" for r, n in reasons.most_common()) + ")"
        for v in skipped:
            out.actions.append(PostEvent("Node", v.node.name, "Normal", "QualificationSkipped",
                                         f"{snap.name} run {run}: not tested: {v.reason or 'not tested'}",
                                         key=f"{snap.name}/{run}/skipped"))
    text = text[:1024]
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
    # Counted in a Counter, not on the model: a pydantic attribute assignment costs a microsecond or two,
    # once per node in every reconcile.
    counts: Counter[str] = Counter()
    failing: list[FailingNode] = []
    for view in views.values():
        state = view.state
        if state is NodeState.DONE:
            verdict = view.verdict
            if verdict is OverallVerdict.PASS:
                counts["passed"] += 1
                continue
            counts["failed" if verdict is OverallVerdict.FAIL else "inconclusive"] += 1
            if verdict is not None:
                failed = list(view.result.failed_checks[:8]) if view.result else []
                failing.append(FailingNode(node=view.node.name, verdict=verdict, failed_checks=failed,
                                           reason=view.reason[:256]))
        elif state is NodeState.SKIPPED:
            counts["skipped"] += 1
        elif state is NodeState.WAITING:
            counts["pending"] += 1
        else:
            counts["running"] += 1
    s = RunSummary(total=len(views), **counts)
    failing.sort(key=lambda f: (f.verdict is not OverallVerdict.FAIL, f.node))
    st.summary = s
    st.failing_nodes = failing[:MAX_FAILING_NODES]
    st.failing_nodes_omitted = max(0, len(failing) - MAX_FAILING_NODES)


def _cleanup_pods(spec: QualificationSpec, snap: Snapshot, pool: Mapping[str, NodeInfo], out: Plan, *,
                  keep_run: str | None, members: set[str]) -> None:
    """Delete probe pods that no longer belong to the active run (never one holding unsent evidence)."""
    keep_records = spec.dry_run and spec.trigger is Trigger.ON_JOIN
    for pod in snap.pods:
        if pod.deleting or pod.name in snap.evidence_pending:
            continue
        if keep_records and pod.finished and pod.node in pool and eligible_on_join(spec, pool[pod.node]):
            continue  # an OnJoin dry run's record of a still-gated node (see views.dry_run_decided)
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


def _running_requeue(spec: QualificationSpec, st: QualificationStatus, views: Mapping[str, NodeView],
                     now: datetime) -> float:
    """Look again in REQUEUE_RUNNING seconds, or sooner when a node's wait is up (it is then skipped)."""
    wait = timedelta(seconds=spec.wait_seconds)
    run_wait_over = (st.started_at or now) + wait
    moments = []
    for v in views.values():
        if v.state is NodeState.WAITING and v.reason:
            moments.append(run_wait_over)
        elif v.state is NodeState.RUNNING and v.pod is not None and v.pod.started_at is None \
                and v.pod.created_at is not None:
            moments.append(max(run_wait_over, v.pod.created_at + wait))
    due = [(m - now).total_seconds() for m in moments if m > now]
    return max(REQUEUE_MIN, min([REQUEUE_RUNNING, *due]))


def _idle_requeue(spec: QualificationSpec, st: QualificationStatus, now: datetime) -> float:
    if spec.trigger is Trigger.SCHEDULE and st.next_run_at is not None:
        return float(min(300.0, max(1.0, math.ceil((st.next_run_at - now).total_seconds()))))
    if spec.trigger is Trigger.ON_JOIN:
        return REQUEUE_ONJOIN
    return REQUEUE_IDLE

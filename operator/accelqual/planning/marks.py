"""Verdicts into node marks: peer comparison, the failure budget, taints, release, dry-run reports (pure).

Called by `plan()` with the run's node views. Rules:
- A node's mark for a run is the record of its verdict in that run: once applied it stands
  (peers that finish later do not reopen it), so reconciling again never flips a mark.
- With fleet-relative comparison in `fail` mode a pass waits for its peers: until the run
  completes (`Once`/`Schedule`), or until the probes started no later than its own have
  finished (`OnJoin`, whose run keeps admitting joiners and must not hold a healthy one back).
- More failures in one run than the failure budget (a share of the pool) halt the run: the
  failures within the budget are marked, nothing else is until a human resumes.
- Only our own taint is ever added or removed, and a cordon only if we placed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from accelqual_probes.catalog import BY_ID
from accelqual_probes.schema import OverallVerdict

from accelqual.constants import (
    ANN_CHECKED_AT,
    ANN_CORDONED_BY,
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
from accelqual.models import OutlierAction, QualificationSpec, QualificationStatus, Trigger, resolve_count
from accelqual.planning.actions import Action, MarkNode, PostEvent
from accelqual.planning.conditions import set_condition
from accelqual.planning.fleet import Outlier, common_factor, find_outliers
from accelqual.planning.naming import evidence_key
from accelqual.planning.snapshot import VERDICT_BY_LABEL, CheckOutcome, NodeResult, Snapshot, Taint
from accelqual.planning.views import NodeState, NodeView, marked_by, run_marker


def fleet_verdicts(spec: QualificationSpec, snap: Snapshot, run: str, views: Mapping[str, NodeView],
                   complete: bool) -> tuple[dict[str, NodeView], list[Outlier]]:
    """The views with their final verdicts (marks that stand, peer-comparison failures) and the outliers."""
    compare = complete or spec.trigger is Trigger.ON_JOIN
    results = {name: v.result for name, v in views.items() if v.state is NodeState.DONE and v.result is not None}
    outliers = find_outliers(results, spec.fleet_relative) if compare else []
    by_node: dict[str, list[Outlier]] = {}
    for o in outliers:
        by_node.setdefault(o.node, []).append(o)
    marker = run_marker(snap.name, run)
    effective = dict(views)
    for name, view in views.items():
        if view.state is not NodeState.DONE or view.result is None:
            continue
        if marked_by(view, marker):
            verdict = VERDICT_BY_LABEL.get(view.node.labels.get(LABEL_VERDICT, ""))
            if verdict is not None and verdict is not view.verdict:
                reason = view.node.annotations.get(ANN_REASON, view.reason)
                result = replace(view.result, verdict=verdict, reason=reason)
                effective[name] = replace(view, result=result, verdict=verdict, reason=reason)
            continue
        found = by_node.get(name)
        if not found or view.verdict is not OverallVerdict.PASS or spec.fleet_relative.action is not OutlierAction.FAIL:
            continue
        reason = ("fleet outlier: " + "; ".join(o.describe() for o in found))[:256]
        failed = tuple(dict.fromkeys((*view.result.failed_checks, *(o.check for o in found))))
        result = replace(view.result, verdict=OverallVerdict.FAIL, reason=reason, failed_checks=failed)
        effective[name] = replace(view, result=result, verdict=OverallVerdict.FAIL, reason=reason)
    return effective, outliers


def _waits_for_peers(spec: QualificationSpec, view: NodeView, views: Mapping[str, NodeView], complete: bool) -> bool:
    policy = spec.fleet_relative
    if not policy.enabled or policy.action is not OutlierAction.FAIL:
        return False
    if spec.trigger is not Trigger.ON_JOIN:
        return not complete
    created = view.pod.created_at if view.pod is not None else None
    if created is None:
        return False
    return any(w.state is NodeState.RUNNING and w.pod is not None and w.pod.created_at is not None
               and w.pod.created_at <= created for w in views.values())


def failure_budget(spec: QualificationSpec, st: QualificationStatus, pool_size: int) -> int:
    """How many failures this run may mark: a count or a share of the pool (rounded up), plus what a human accepted."""
    return resolve_count(spec.failure_budget, pool_size, minimum=0) + st.failures_at_resume


def mark_nodes(spec: QualificationSpec, snap: Snapshot, st: QualificationStatus, run: str,
               views: Mapping[str, NodeView], complete: bool, pool_size: int, actions: list[Action],
               now: datetime) -> bool:
    """Issue the node marks the verdicts call for; True if any mark is still to be applied."""
    marker = run_marker(snap.name, run)
    budget = failure_budget(spec, st, pool_size)
    failed = [v for v in views.values() if v.state is NodeState.DONE and v.verdict is OverallVerdict.FAIL]

    def already_marked(v: NodeView) -> bool:
        return marked_by(v, marker) and v.node.labels.get(LABEL_VERDICT) == v.verdict

    # Failures that already carry our mark count first; the rest in the order their probes started.
    failed.sort(key=lambda v: (not already_marked(v), _start_key(v), v.node.name))
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
        if (view.verdict is OverallVerdict.PASS and _waits_for_peers(spec, view, views, complete)) or \
                (halted and view.verdict is not OverallVerdict.FAIL):
            pending = True
            continue
        mark = mark_for(spec, snap, run, view, now)
        if spec.dry_run:
            actions.append(_dry_run_event(run, view, mark))
            continue
        actions.append(mark)
        if view.verdict is not OverallVerdict.PASS:
            actions.append(_node_event(spec, snap, run, view))
        pending = True
    if over_budget and st.phase is not Phase.HALTED:
        _halt(snap, st, run, views, failed, budget, actions, now)
    return pending


def _start_key(view: NodeView) -> str:
    pod = view.pod
    return pod.started_at.isoformat() if pod is not None and pod.started_at is not None else ""


def mark_for(spec: QualificationSpec, snap: Snapshot, run: str, view: NodeView, now: datetime) -> MarkNode:
    node, verdict = view.node, view.verdict
    assert verdict is not None
    result = view.result
    annotations: dict[str, str | None] = {
        ANN_QUALIFICATION: snap.name,
        ANN_RUN: run_marker(snap.name, run),
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
        # Claim the taint only if we add it (or placed it before): one with our key placed by
        # anybody else is theirs, and autoRelease must never remove it.
        if not node.has_taint(fail_taint.key, fail_taint.effect) or node.annotations.get(ANN_TAINTED_BY) == snap.name:
            annotations[ANN_TAINTED_BY] = snap.name
        labels.update(spec.on_failure.labels)
        if spec.on_failure.cordon and not node.unschedulable:
            cordon = True
            annotations[ANN_CORDONED_BY] = snap.name
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
        if spec.auto_release and node.annotations.get(ANN_CORDONED_BY) == snap.name:
            if node.unschedulable:
                cordon = False
            annotations[ANN_CORDONED_BY] = None
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


def _halt(snap: Snapshot, st: QualificationStatus, run: str, views: Mapping[str, NodeView],
          failed: list[NodeView], budget: int, actions: list[Action], now: datetime) -> None:
    results_failed: list[NodeResult] = [v.result for v in failed if v.result is not None]
    results_passed: list[NodeResult] = [v.result for v in views.values()
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
    actions.append(PostEvent("Qualification", snap.name, "Warning", Reason.FAILURE_BUDGET_EXCEEDED.value,
                             message, key=f"{run}/halted/{st.failures_at_resume}"))

"""Policy decisions of `plan()`, step by step, without a server (tests/support/world.py applies the actions)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from accelqual.constants import (
    ANN_RESUME,
    ANN_RUN,
    ANN_TAINTED_BY,
    DEFAULT_FAILURE_TAINT_KEY,
    DEFAULT_GATE_TAINT_KEY,
    LABEL_VERDICT,
    ConditionType,
    Phase,
    Reason,
)
from accelqual.models import QualificationSpec
from accelqual.planning.actions import CreatePod, MarkNode
from accelqual.planning.conditions import get_condition
from accelqual.planning.snapshot import Taint
from accelqual_probes.catalog import Suite
from accelqual_probes.schema import Verdict

from tests.support.reports import check, node, report
from tests.support.world import World

GATE = Taint(DEFAULT_GATE_TAINT_KEY, "", "NoSchedule")


def phase(w: World) -> Phase:
    """The current phase (a call, so the type checker does not narrow it across steps)."""
    return w.status.phase


def make_spec(**overrides: Any) -> QualificationSpec:
    data: dict[str, Any] = {"nodeSelector": {"matchLabels": {"pool": "a"}}, "suite": "quick",
                            "maxConcurrent": "100%", "failureBudget": "50%",
                            "fleetRelative": {"enabled": False}}
    data.update(overrides)
    return QualificationSpec.model_validate(data)


def world(n: int, **spec: Any) -> World:
    return World(spec=make_spec(**spec), nodes={f"n{i}": node(f"n{i}") for i in range(n)})


def failing(name: str, check_id: str = "perf.membw", driver: str | None = None) -> Any:
    return report(name, overrides={check_id: check(check_id, Verdict.FAIL, 1.0, "too slow")}, driver=driver)


def run_to_end(w: World, verdicts: dict[str, Any], steps: int = 6) -> None:
    """Let every started probe finish with the given report (default: passing)."""
    for _ in range(steps):
        w.step()
        w.start_pods()
        for n in w.running_nodes():
            w.finish(n, verdicts.get(n) or report(n))


def test_first_reconcile_starts_a_run_and_creates_one_pod_per_node() -> None:
    w = world(3)
    decided = w.step()
    assert phase(w) is Phase.RUNNING
    assert w.status.run_id is not None
    assert sorted(a.node for a in decided.actions if isinstance(a, CreatePod)) == ["n0", "n1", "n2"]
    assert get_condition(w.status, ConditionType.PROGRESSING).status.value == "True"  # type: ignore[union-attr]


def test_reconcile_is_idempotent() -> None:
    w = world(3)
    w.step()
    again = w.step()
    assert not any(isinstance(a, CreatePod) for a in again.actions)


def test_mixed_verdicts_taint_only_the_failed_node_and_complete_the_run() -> None:
    w = world(3, report={"bucket": "evidence"})
    run_to_end(w, {"n1": failing("n1")})
    assert phase(w) is Phase.COMPLETED
    s = w.status.summary
    assert (s.total, s.passed, s.failed, s.inconclusive) == (3, 2, 1, 0)
    assert w.tainted(DEFAULT_FAILURE_TAINT_KEY) == {"n1"}
    assert w.nodes["n0"].labels[LABEL_VERDICT] == "pass"
    assert w.nodes["n1"].labels[LABEL_VERDICT] == "fail"
    assert [f.node for f in w.status.failing_nodes] == ["n1"]
    assert w.status.failing_nodes[0].failed_checks == ["perf.membw"]
    assert len(w.summaries) == 1
    doc = w.summaries[0].document
    assert doc["summary"]["failed"] == 1 and len(doc["nodes"]) == 3
    assert any(e.reason == "QualificationFailed" and e.name == "n1" for e in w.events)


def test_completed_run_deletes_its_pods_and_stays_quiet() -> None:
    w = world(2)
    run_to_end(w, {})
    assert phase(w) is Phase.COMPLETED
    w.step()
    assert w.pods == {}
    quiet = w.step()
    assert quiet.actions == []


def test_max_concurrent_is_never_exceeded_and_percentages_round_up() -> None:
    w = world(10, maxConcurrent="25%")  # 2.5 -> 3
    run_to_end(w, {}, steps=12)
    assert w.max_in_flight == 3
    assert phase(w) is Phase.COMPLETED
    assert w.status.summary.passed == 10


def test_percentage_that_rounds_to_zero_still_tests_one_node_at_a_time() -> None:
    w = world(3, maxConcurrent="1%")
    run_to_end(w, {}, steps=10)
    assert w.max_in_flight == 1
    assert w.status.summary.passed == 3


def test_empty_pool_completes_with_zero_nodes() -> None:
    w = World(spec=make_spec(), nodes={"other": node("other", labels={"pool": "b"})})
    w.step()
    w.step()
    assert phase(w) is Phase.COMPLETED
    assert w.status.summary.total == 0
    assert get_condition(w.status, ConditionType.DEGRADED).reason == Reason.EMPTY_POOL.value  # type: ignore[union-attr]


def test_nodes_outside_the_pool_are_never_touched() -> None:
    w = world(2)
    w.nodes["outsider"] = node("outsider", labels={"pool": "b"})
    run_to_end(w, {"n0": failing("n0"), "outsider": failing("outsider")})
    assert "outsider" not in w.created
    assert all(m.node != "outsider" for m in w.marks)


def test_pool_of_one_failing_node_is_tainted_within_a_percentage_budget() -> None:
    w = world(1, failureBudget="20%")  # ceil(0.2) = 1 node may be failed
    run_to_end(w, {"n0": failing("n0")})
    assert w.tainted(DEFAULT_FAILURE_TAINT_KEY) == {"n0"}
    assert phase(w) is Phase.COMPLETED


def test_inconclusive_node_is_labelled_but_not_tainted() -> None:
    w = world(2)
    w.step()
    w.start_pods()
    w.finish("n0", report("n0"))
    w.finish("n1", report("n1", overrides={"rel.stress": check("rel.stress", Verdict.ERROR, None, "timed out")}))
    for _ in range(3):
        w.step()
    assert w.nodes["n1"].labels[LABEL_VERDICT] == "inconclusive"
    assert w.tainted(DEFAULT_FAILURE_TAINT_KEY) == set()
    assert w.status.summary.inconclusive == 1


def test_failure_budget_halts_the_run_names_the_common_factor_and_caps_taints() -> None:
    w = world(10, failureBudget="20%", maxConcurrent="100%")
    bad = {f"n{i}": failing(f"n{i}", "func.dtypes", driver="550.1") for i in range(6)}
    good = {f"n{i}": report(f"n{i}", driver="535.2") for i in range(6, 10)}
    run_to_end(w, {**bad, **good})
    assert phase(w) is Phase.HALTED
    assert len(w.tainted(DEFAULT_FAILURE_TAINT_KEY)) == 2
    halted = get_condition(w.status, ConditionType.HALTED)
    assert halted is not None and halted.status.value == "True"
    assert halted.reason == Reason.FAILURE_BUDGET_EXCEEDED.value
    assert "func.dtypes" in halted.message and "550.1" in halted.message
    assert any(e.reason == Reason.FAILURE_BUDGET_EXCEEDED.value for e in w.events)
    # Halted: nothing more is done, however often it reconciles.
    for _ in range(3):
        assert not any(isinstance(a, MarkNode | CreatePod) for a in w.step().actions)


def test_resume_annotation_lifts_the_halt_and_applies_the_held_marks() -> None:
    w = world(5, failureBudget=1)
    run_to_end(w, {"n0": failing("n0"), "n1": failing("n1"), "n2": failing("n2")})
    assert phase(w) is Phase.HALTED
    assert len(w.tainted(DEFAULT_FAILURE_TAINT_KEY)) == 1
    w.annotations[ANN_RESUME] = "true"
    for _ in range(3):
        w.step()
    assert ANN_RESUME not in w.annotations
    assert w.tainted(DEFAULT_FAILURE_TAINT_KEY) == {"n0", "n1", "n2"}
    assert phase(w) is Phase.COMPLETED


def test_dry_run_decides_and_reports_but_changes_no_node() -> None:
    w = world(3, dryRun=True, report={"bucket": "evidence"})
    run_to_end(w, {"n2": failing("n2")})
    assert w.marks == []
    assert phase(w) is Phase.COMPLETED
    assert w.status.summary.failed == 1
    dry = [e for e in w.events if e.reason == "DryRun"]
    assert any(e.name == "n2" and "would" in e.message and DEFAULT_FAILURE_TAINT_KEY in e.message for e in dry)
    assert len(w.summaries) == 1


def test_on_join_tests_only_gated_nodes_without_a_verdict_and_releases_those_that_pass() -> None:
    w = World(spec=make_spec(trigger="OnJoin"), nodes={
        "old": node("old", labels={LABEL_VERDICT: "pass"}),
        "new-good": node("new-good", taints=(GATE,)),
        "new-bad": node("new-bad", taints=(GATE,)),
    })
    run_to_end(w, {"new-bad": failing("new-bad")})
    assert sorted(w.created) == ["new-bad", "new-good"]
    assert not w.nodes["new-good"].has_taint(DEFAULT_GATE_TAINT_KEY)
    assert w.nodes["new-bad"].has_taint(DEFAULT_GATE_TAINT_KEY)
    assert w.nodes["new-bad"].has_taint(DEFAULT_FAILURE_TAINT_KEY)
    assert phase(w) is Phase.COMPLETED


def test_on_join_picks_up_a_node_that_joins_mid_run() -> None:
    w = World(spec=make_spec(trigger="OnJoin", maxConcurrent=1),
              nodes={"a": node("a", taints=(GATE,)), "b": node("b", taints=(GATE,))})
    w.step()
    run_id = w.status.run_id
    w.nodes["c"] = node("c", taints=(GATE,))
    run_to_end(w, {}, steps=10)
    assert sorted(w.created) == ["a", "b", "c"]
    assert w.status.run_id == run_id
    assert not any(n.has_taint(DEFAULT_GATE_TAINT_KEY) for n in w.nodes.values())


def test_on_join_waits_quietly_when_no_node_is_gated() -> None:
    w = World(spec=make_spec(trigger="OnJoin"), nodes={"a": node("a")})
    w.step()
    assert phase(w) is Phase.PENDING
    assert w.created == []


def test_schedule_runs_when_due_never_overlaps_and_runs_missed_slots_once() -> None:
    w = world(2, trigger="Schedule", schedule="0 */6 * * *")
    w.step()
    assert phase(w) is Phase.PENDING
    assert w.status.next_run_at is not None
    first_due = w.status.next_run_at
    w.now = first_due
    run_to_end(w, {})
    assert phase(w) is Phase.COMPLETED
    first_run = w.status.run_id
    assert w.status.next_run_at is not None and w.status.next_run_at > w.now
    # The operator was down for a day: one run, not four.
    w.now += timedelta(days=1)
    w.step()
    assert w.status.run_id != first_run
    second_run = w.status.run_id
    w.now += timedelta(hours=7)  # a slot passes while the run is still going: no second run starts
    w.step()
    assert w.status.run_id == second_run
    assert w.status.next_run_at is not None and w.status.next_run_at > w.now


def test_busy_nodes_wait_and_are_skipped_after_the_wait_limit() -> None:
    w = world(2, waitSeconds=600)
    w.busy = {"n1": frozenset({"accelqual.io/sim-accelerator"})}
    w.spec = make_spec(probe={"resourceName": "accelqual.io/sim-accelerator"}, waitSeconds=600)
    run_to_end(w, {})
    assert "n1" not in w.created
    assert phase(w) is Phase.RUNNING
    assert w.status.summary.pending == 1
    w.now += timedelta(seconds=601)
    w.step()
    w.step()
    assert phase(w) is Phase.COMPLETED
    assert w.status.summary.skipped == 1


def test_busy_node_freed_in_time_is_tested() -> None:
    w = world(2, probe={"resourceName": "accelqual.io/sim-accelerator"})
    w.busy = {"n1": frozenset({"accelqual.io/sim-accelerator"})}
    run_to_end(w, {}, steps=3)
    w.busy = {}
    run_to_end(w, {}, steps=4)
    assert sorted(w.created) == ["n0", "n1"]
    assert w.status.summary.passed == 2


def test_only_idle_nodes_false_tests_busy_nodes_too() -> None:
    w = world(2, onlyIdleNodes=False, probe={"resourceName": "accelqual.io/sim-accelerator"})
    w.busy = {"n1": frozenset({"accelqual.io/sim-accelerator"})}
    w.step()
    assert sorted(w.created) == ["n0", "n1"]


def test_auto_release_removes_only_our_taint_from_a_node_that_passes_again() -> None:
    ours = Taint(DEFAULT_FAILURE_TAINT_KEY, "true", "NoSchedule")
    theirs = Taint("maintenance", "", "NoSchedule")
    # The probe tolerates the maintenance taint, so the node is tested and its taints can be compared.
    spec = make_spec(autoRelease=True, probe={"tolerations": [{"key": "maintenance", "operator": "Exists"}]})
    w = World(spec=spec, nodes={
        "repaired": node("repaired", taints=(ours, theirs), annotations={ANN_TAINTED_BY: "pool-a"}),
        "foreign": node("foreign", taints=(ours,)),  # same key, placed by someone else
    })
    run_to_end(w, {})
    assert w.nodes["repaired"].taints == (theirs,)
    assert w.nodes["foreign"].taints == (ours,)


def test_without_auto_release_a_passing_node_keeps_its_failure_taint() -> None:
    ours = Taint(DEFAULT_FAILURE_TAINT_KEY, "true", "NoSchedule")
    w = World(spec=make_spec(), nodes={"n": node("n", taints=(ours,), annotations={ANN_TAINTED_BY: "pool-a"})})
    run_to_end(w, {})
    assert w.nodes["n"].taints == (ours,)


def test_node_leaving_the_pool_mid_run_is_dropped_and_its_pod_deleted() -> None:
    w = world(3, maxConcurrent="100%")
    w.step()
    w.nodes["n2"] = node("n2", labels={"pool": "b"})
    run_to_end(w, {})
    assert w.status.summary.total == 2
    assert not any(p.node == "n2" for p in w.pods.values())
    assert all(m.node != "n2" for m in w.marks)


def test_probe_overrunning_its_deadline_is_inconclusive_and_not_tainted() -> None:
    w = world(1, probe={"timeoutSeconds": 60})
    w.step()
    w.start_pods()
    w.now += timedelta(seconds=600)
    for _ in range(3):
        w.step()
    assert w.status.summary.inconclusive == 1
    assert w.tainted(DEFAULT_FAILURE_TAINT_KEY) == set()
    assert phase(w) is Phase.COMPLETED


def test_restarted_operator_recovers_from_node_marks_when_pods_are_gone() -> None:
    w = world(2)
    run_to_end(w, {"n1": failing("n1")}, steps=2)
    run = w.status.run_id
    assert w.nodes["n1"].annotations[ANN_RUN] == f"pool-a/{run}"
    # Everything in memory is lost and the pods were removed by someone.
    w.pods.clear()
    w.results.clear()
    for _ in range(2):
        w.step()
    assert w.created.count("n1") == 1
    assert w.status.summary.failed == 1


def test_spec_change_starts_a_new_run_for_once() -> None:
    w = world(1)
    run_to_end(w, {})
    first = w.status.run_id
    w.generation = 2
    w.now += timedelta(seconds=5)
    w.step()
    assert w.status.run_id != first
    assert phase(w) is Phase.RUNNING


def test_fleet_outlier_below_its_peers_fails_even_above_the_absolute_floor() -> None:
    w = world(8, fleetRelative={"enabled": True, "maxDeviation": 0.05, "minPeers": 5})
    values = {f"n{i}": 100.0 + i * 0.2 for i in range(8)}
    values["n3"] = 91.0  # 9% below the median, far above any absolute floor
    reports = {n: report(n, overrides={"perf.gemm.fp32": check("perf.gemm.fp32", Verdict.PASS, v)})
               for n, v in values.items()}
    run_to_end(w, reports, steps=8)
    assert phase(w) is Phase.COMPLETED
    assert w.tainted(DEFAULT_FAILURE_TAINT_KEY) == {"n3"}
    assert "fleet outlier" in w.nodes["n3"].annotations["accelqual.io/reason"]


def test_fleet_outlier_warn_action_only_reports() -> None:
    w = world(6, fleetRelative={"enabled": True, "maxDeviation": 0.05, "action": "warn"})
    reports = {f"n{i}": report(f"n{i}") for i in range(6)}
    reports["n0"] = report("n0", overrides={"perf.gemm.fp32": check("perf.gemm.fp32", Verdict.PASS, 80.0)})
    run_to_end(w, reports)
    assert w.tainted(DEFAULT_FAILURE_TAINT_KEY) == set()
    assert any(e.reason == "FleetOutlier" and e.name == "n0" for e in w.events)


@pytest.mark.parametrize("suite", [Suite.QUICK])
def test_pod_manifest_is_least_privilege(suite: Suite) -> None:
    w = world(1, suite=suite.value)
    create = next(a for a in w.step().actions if isinstance(a, CreatePod))
    pod = create.manifest
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    container = spec["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert not any("AWS" in e["name"] or "SECRET" in e["name"].upper() for e in container["env"])
    assert "command" not in container
    assert container["args"][:2] == ["--pod", "--device"]
    assert len(pod["metadata"]["name"]) <= 63
    owner = pod["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "Qualification" and owner["controller"] is True

"""Edge cases of the fleet policies, decided by `plan()` step by step without a server.

Empty pool, pool of one, every node failing, shares that round to zero, nodes that change
labels or join mid-run, slots held by probes that never start, taints and cordons that are
not ours, dry runs of the onboarding gate, and peer comparison of joiners.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from accelqual.constants import (
    ANN_CORDONED_BY,
    ANN_RESUME,
    ANN_TAINTED_BY,
    DEFAULT_FAILURE_TAINT_KEY,
    DEFAULT_GATE_TAINT_KEY,
    LABEL_VERDICT,
    ConditionType,
    Phase,
    Reason,
)
from accelqual.models import resolve_count
from accelqual.planning.actions import CreatePod, MarkNode
from accelqual.planning.conditions import get_condition
from accelqual.planning.snapshot import Taint
from accelqual_probes.schema import Verdict

from tests.support.reports import check, node, report
from tests.support.world import World
from tests.unit.test_plan import GATE, failing, make_spec, run_to_end, world

FAILURE_TAINT = Taint(DEFAULT_FAILURE_TAINT_KEY, "true", "NoSchedule")
SIM_RESOURCE = "accelqual.io/sim-accelerator"


def phase(w: World) -> Phase:
    return w.status.phase


def halted_message(w: World) -> str:
    cond = get_condition(w.status, ConditionType.HALTED)
    assert cond is not None
    return cond.message if cond.status.value == "True" else ""


@pytest.mark.parametrize(("value", "pool", "minimum", "expected"), [
    ("25%", 10, 1, 3),  # percentages round up
    ("1%", 3, 1, 1),  # ... so a small share of a small pool is still one node
    ("1%", 50, 0, 1),
    ("0%", 50, 1, 1),  # maxConcurrent never drops below one
    ("0%", 50, 0, 0),  # a failure budget of 0% allows no failure
    (0, 5, 1, 1),
    ("20%", 0, 0, 0),  # empty pool
    ("20%", 0, 1, 1),
    ("150%", 4, 0, 6),
    (7, 3, 0, 7),  # a count larger than the pool stays a count
])
def test_counts_and_shares_resolve_against_the_pool(value: int | str, pool: int, minimum: int, expected: int) -> None:
    assert resolve_count(value, pool, minimum=minimum) == expected


# --- empty pool, pool of one, everything failing ------------------------------------------------

def test_empty_pool_on_a_schedule_completes_each_run_with_zero_nodes_and_waits_for_the_next() -> None:
    w = World(spec=make_spec(trigger="Schedule", schedule="0 */6 * * *"), nodes={})
    w.step()
    assert w.status.next_run_at is not None
    w.now = w.status.next_run_at
    w.step()
    w.step()
    assert phase(w) is Phase.COMPLETED
    assert w.status.summary.total == 0
    degraded = get_condition(w.status, ConditionType.DEGRADED)
    assert degraded is not None and degraded.reason == Reason.EMPTY_POOL.value
    assert w.status.next_run_at > w.now
    assert w.created == []


def test_empty_pool_on_join_waits_without_a_run() -> None:
    w = World(spec=make_spec(trigger="OnJoin"), nodes={"elsewhere": node("elsewhere", labels={"pool": "b"},
                                                                          taints=(GATE,))})
    for _ in range(3):
        w.step()
    assert phase(w) is Phase.PENDING
    assert w.status.run_id is None


def test_pool_of_one_with_a_zero_budget_halts_without_tainting() -> None:
    w = world(1, maxConcurrent="25%", failureBudget="0%")
    run_to_end(w, {"n0": failing("n0")})
    assert w.max_in_flight == 1
    assert phase(w) is Phase.HALTED
    assert w.tainted(DEFAULT_FAILURE_TAINT_KEY) == set()
    assert "over the failure budget of 0" in halted_message(w)


def test_pool_of_one_that_passes_completes() -> None:
    w = world(1, maxConcurrent="1%", failureBudget="1%")
    run_to_end(w, {})
    assert phase(w) is Phase.COMPLETED
    assert w.status.summary.passed == 1


@pytest.mark.parametrize(("budget", "tainted", "halted"), [
    ("0%", 0, True), ("1%", 1, True), ("20%", 2, True), (3, 3, True), ("100%", 10, False), (10, 10, False)])
def test_every_node_failing_taints_no_more_than_the_budget(budget: int | str, tainted: int, halted: bool) -> None:
    w = world(10, failureBudget=budget)
    run_to_end(w, {f"n{i}": failing(f"n{i}", "func.dtypes", driver="550.0-bad") for i in range(10)})
    assert len(w.tainted(DEFAULT_FAILURE_TAINT_KEY)) == tainted
    assert (phase(w) is Phase.HALTED) == halted
    assert w.status.summary.failed == 10
    if halted:
        message = halted_message(w)
        assert "check func.dtypes failed on 10 of 10 failing nodes" in message
        assert "driver 550.0-bad" in message
        assert sum(e.reason == Reason.FAILURE_BUDGET_EXCEEDED.value for e in w.events) == 1


def test_a_halted_run_resumed_and_halted_again_raises_a_second_alert() -> None:
    w = world(10, failureBudget=1, maxConcurrent=3)
    bad = {f"n{i}": failing(f"n{i}") for i in range(10)}
    run_to_end(w, bad, steps=2)
    assert phase(w) is Phase.HALTED
    first = len(w.tainted(DEFAULT_FAILURE_TAINT_KEY))
    w.annotations[ANN_RESUME] = "true"
    run_to_end(w, bad, steps=8)
    assert phase(w) is Phase.HALTED
    assert len(w.tainted(DEFAULT_FAILURE_TAINT_KEY)) > first
    assert sum(e.reason == Reason.FAILURE_BUDGET_EXCEEDED.value for e in w.events) == 2


# --- shares are of the pool -----------------------------------------------------------------

def test_on_join_shares_are_of_the_whole_pool_not_of_the_joiners() -> None:
    nodes = {f"old{i}": node(f"old{i}", labels={LABEL_VERDICT: "pass"}) for i in range(18)}
    nodes |= {f"new{i}": node(f"new{i}", taints=(GATE,)) for i in range(2)}
    w = World(spec=make_spec(trigger="OnJoin", maxConcurrent="10%", failureBudget="10%"), nodes=nodes)
    w.step()
    assert sorted(w.created) == ["new0", "new1"], "10% of a pool of 20 is 2 at once, not 10% of 2 joiners"
    run_to_end(w, {"new0": failing("new0"), "new1": failing("new1")})
    assert phase(w) is Phase.COMPLETED, "2 failures are within 10% of the pool"
    assert w.tainted(DEFAULT_FAILURE_TAINT_KEY) == {"new0", "new1"}


# --- nodes changing labels or joining mid-run -------------------------------------------------

def test_node_relabelled_into_the_pool_mid_run_is_tested_in_that_run() -> None:
    w = world(2, maxConcurrent=1)
    w.nodes["moved"] = node("moved", labels={"pool": "b"}, created_at=w.now - timedelta(days=3))
    w.step()
    run = w.status.run_id
    w.nodes["moved"] = node("moved", created_at=w.now - timedelta(days=3))
    run_to_end(w, {}, steps=10)
    assert w.status.run_id == run
    assert sorted(w.created) == ["moved", "n0", "n1"]
    assert w.status.summary.passed == 3


def test_node_created_after_a_scheduled_run_started_waits_for_the_next_run() -> None:
    w = world(2, trigger="Schedule", schedule="0 */6 * * *")
    w.step()
    assert w.status.next_run_at is not None
    w.now = w.status.next_run_at
    w.step()
    first = w.status.run_id
    w.nodes["late"] = node("late", created_at=w.now + timedelta(seconds=1))
    run_to_end(w, {})
    assert phase(w) is Phase.COMPLETED
    assert w.status.run_id == first
    assert "late" not in w.created
    assert w.status.summary.total == 2
    assert w.status.next_run_at is not None
    w.now = w.status.next_run_at
    run_to_end(w, {})
    assert w.status.run_id != first
    assert "late" in w.created and w.status.summary.total == 3


def test_node_that_leaves_the_pool_after_its_mark_drops_out_of_the_run() -> None:
    w = world(3)
    run_to_end(w, {"n1": failing("n1")}, steps=2)
    assert w.nodes["n1"].labels[LABEL_VERDICT] == "fail"
    labels = dict(w.nodes["n1"].labels, pool="b")
    w.nodes["n1"] = node("n1", labels=labels, taints=w.nodes["n1"].taints,
                         annotations=dict(w.nodes["n1"].annotations))
    run_to_end(w, {})
    assert phase(w) is Phase.COMPLETED
    assert w.status.summary.total == 2
    assert w.nodes["n1"].has_taint(DEFAULT_FAILURE_TAINT_KEY), "leaving the pool releases nothing"


# --- concurrency and what cannot be tested now -----------------------------------------------

def test_probe_that_is_never_scheduled_keeps_its_slot_and_the_run_still_ends() -> None:
    w = world(3, maxConcurrent=1, waitSeconds=600)
    w.step()  # a probe pod for n0, which the scheduler never binds
    for _ in range(3):
        w.step()
    assert w.created == ["n0"]
    w.now += timedelta(seconds=601)
    for _ in range(3):
        w.step()
    assert w.created == ["n0"], "a pending probe of a skipped node still holds the only slot"
    assert phase(w) is Phase.COMPLETED
    assert w.status.summary.skipped == 3
    assert "not scheduled in time" in w.status.message and "no free probe slot" in w.status.message
    assert w.pods == {}, "the pending probe is deleted with the run"


def test_node_with_a_foreign_taint_the_probe_does_not_tolerate_is_skipped_with_the_reason() -> None:
    w = World(spec=make_spec(waitSeconds=600), nodes={
        "ok": node("ok"),
        "maint": node("maint", taints=(Taint("maintenance", "", "NoSchedule"),)),
        "soft": node("soft", taints=(Taint("prefer-other", "", "PreferNoSchedule"),)),
    })
    run_to_end(w, {})
    assert sorted(w.created) == ["ok", "soft"]
    assert phase(w) is Phase.RUNNING
    w.now += timedelta(seconds=601)
    w.step()
    w.step()
    assert phase(w) is Phase.COMPLETED
    assert w.status.summary.skipped == 1
    assert "maintenance:NoSchedule" in w.status.message
    assert any(e.reason == "QualificationSkipped" and e.name == "maint" for e in w.events)
    assert w.nodes["maint"].taints == (Taint("maintenance", "", "NoSchedule"),)


def test_busy_node_is_reported_skipped_with_why_and_other_resources_do_not_count() -> None:
    w = world(3, probe={"resourceName": SIM_RESOURCE}, waitSeconds=600)
    w.busy = {"n1": frozenset({SIM_RESOURCE}), "n2": frozenset({"example.com/nic"})}
    run_to_end(w, {})
    assert sorted(w.created) == ["n0", "n2"]
    w.now += timedelta(seconds=601)
    w.step()
    w.step()
    assert phase(w) is Phase.COMPLETED
    assert "1 accelerators in use by other pods" in w.status.message
    skipped = [e for e in w.events if e.reason == "QualificationSkipped"]
    assert [e.name for e in skipped] == ["n1"] and "accelerators in use" in skipped[0].message


def test_max_concurrent_holds_while_busy_nodes_come_and_go() -> None:
    w = world(8, maxConcurrent="25%", probe={"resourceName": SIM_RESOURCE})
    w.busy = {f"n{i}": frozenset({SIM_RESOURCE}) for i in range(0, 8, 2)}
    run_to_end(w, {}, steps=6)
    w.busy = {f"n{i}": frozenset({SIM_RESOURCE}) for i in range(1, 8, 2)}
    run_to_end(w, {}, steps=6)
    w.busy = {}
    run_to_end(w, {}, steps=8)
    assert w.max_in_flight == 2
    assert w.status.summary.passed == 8
    assert sorted(w.created) == sorted(set(w.created))


# --- taints and cordons that are not ours ----------------------------------------------------

def test_failure_taint_placed_by_someone_else_is_not_claimed_and_never_released() -> None:
    w = World(spec=make_spec(autoRelease=True), nodes={"n": node("n", taints=(FAILURE_TAINT,))})
    run_to_end(w, {"n": failing("n")})
    assert ANN_TAINTED_BY not in w.nodes["n"].annotations
    w.generation = 2  # a new run; the node passes now
    run_to_end(w, {})
    assert w.nodes["n"].labels[LABEL_VERDICT] == "pass"
    assert w.nodes["n"].taints == (FAILURE_TAINT,)


def test_only_a_cordon_we_placed_is_lifted_and_a_node_cordoned_by_others_is_not_tested() -> None:
    spec = make_spec(autoRelease=True, onFailure={"cordon": True}, waitSeconds=60)
    w = World(spec=spec, nodes={"ours": node("ours"), "theirs": node("theirs", unschedulable=True)})
    run_to_end(w, {"ours": failing("ours")})
    assert w.nodes["ours"].unschedulable
    assert w.nodes["ours"].annotations[ANN_CORDONED_BY] == "pool-a"
    assert "theirs" not in w.created
    w.generation = 2
    w.now += timedelta(seconds=61)
    run_to_end(w, {})
    assert not w.nodes["ours"].unschedulable
    assert ANN_CORDONED_BY not in w.nodes["ours"].annotations
    assert not w.nodes["ours"].has_taint(DEFAULT_FAILURE_TAINT_KEY)
    assert w.nodes["theirs"].unschedulable
    assert "theirs" not in w.created
    assert all(m.node != "theirs" for m in w.marks)


# --- dry run of the onboarding gate -----------------------------------------------------------

def test_on_join_dry_run_decides_each_gated_node_once_and_changes_nothing() -> None:
    w = World(spec=make_spec(trigger="OnJoin", dryRun=True), nodes={"a": node("a", taints=(GATE,))})
    run_to_end(w, {"a": failing("a")})
    assert phase(w) is Phase.COMPLETED
    first = w.status.run_id
    for _ in range(4):
        w.step()
    assert w.created == ["a"], "a gated node the dry run decided is not probed again"
    assert w.status.run_id == first
    w.nodes["b"] = node("b", taints=(GATE,))
    run_to_end(w, {})
    assert w.created == ["a", "b"]
    assert w.status.summary.total == 1
    assert w.marks == []
    assert all(n.taints == (GATE,) for n in w.nodes.values())
    assert {e.name for e in w.events if e.reason == "DryRun"} == {"a", "b"}
    # Dry run off: now the gated nodes are qualified for real.
    w.spec = make_spec(trigger="OnJoin")
    w.generation = 2
    run_to_end(w, {"a": failing("a")})
    assert w.created == ["a", "b", "a", "b"]
    assert w.nodes["a"].has_taint(DEFAULT_FAILURE_TAINT_KEY)
    assert not w.nodes["b"].has_taint(DEFAULT_GATE_TAINT_KEY)


# --- peer comparison --------------------------------------------------------------------------

def gemm(name: str, value: float) -> Any:
    return report(name, overrides={"perf.gemm.fp32": check("perf.gemm.fp32", Verdict.PASS, value)})


def test_on_join_pass_waits_for_its_batch_but_not_for_later_joiners() -> None:
    spec = make_spec(trigger="OnJoin", fleetRelative={"enabled": True, "minPeers": 3, "maxDeviation": 0.05})
    w = World(spec=spec, nodes={n: node(n, taints=(GATE,)) for n in ("a", "b", "c")})
    w.step()
    w.start_pods()
    w.finish("a", gemm("a", 100.0))
    w.step()
    assert w.nodes["a"].has_taint(DEFAULT_GATE_TAINT_KEY), "a waits for b and c, started with it"
    w.nodes["d"] = node("d", taints=(GATE,))
    w.step()
    w.start_pods()
    w.finish("b", gemm("b", 101.0))
    w.finish("c", gemm("c", 90.0))  # 10% below its peers
    w.step()
    w.step()
    assert not w.nodes["a"].has_taint(DEFAULT_GATE_TAINT_KEY), "d, which joined later, holds nobody back"
    assert not w.nodes["b"].has_taint(DEFAULT_GATE_TAINT_KEY)
    assert w.nodes["c"].has_taint(DEFAULT_FAILURE_TAINT_KEY)
    assert "fleet outlier" in w.nodes["c"].annotations["accelqual.io/reason"]
    w.finish("d", gemm("d", 100.5))
    run_to_end(w, {})
    assert phase(w) is Phase.COMPLETED
    assert not w.nodes["d"].has_taint(DEFAULT_GATE_TAINT_KEY)


def test_verdicts_once_marked_stand_when_later_peers_shift_the_median() -> None:
    spec = make_spec(trigger="OnJoin", fleetRelative={"enabled": True, "minPeers": 3, "maxDeviation": 0.05})
    w = World(spec=spec, nodes={n: node(n, taints=(GATE,)) for n in ("a", "b", "c")})
    w.step()
    w.start_pods()
    for n, v in (("a", 94.0), ("b", 95.0), ("c", 96.0)):
        w.finish(n, gemm(n, v))
    w.step()
    w.step()
    assert {n for n in "abc" if w.nodes[n].labels.get(LABEL_VERDICT) == "pass"} == {"a", "b", "c"}
    # Faster cards join: against them, a would now be an outlier; its pass stands.
    for n in ("d", "e", "f"):
        w.nodes[n] = node(n, taints=(GATE,))
    w.step()
    w.start_pods()
    for n in ("d", "e", "f"):
        w.finish(n, gemm(n, 104.0))
    for _ in range(3):
        w.step()
    assert w.nodes["a"].labels[LABEL_VERDICT] == "pass"
    assert not w.nodes["a"].has_taint(DEFAULT_FAILURE_TAINT_KEY)
    assert sum(1 for m in w.marks if m.node == "a") == 1


def test_fleet_outlier_marks_are_idempotent_after_the_run_completes() -> None:
    w = world(6, fleetRelative={"enabled": True, "maxDeviation": 0.05})
    reports = {f"n{i}": gemm(f"n{i}", 100.0 + i * 0.1) for i in range(6)}
    reports["n2"] = gemm("n2", 80.0)
    run_to_end(w, reports)
    assert phase(w) is Phase.COMPLETED
    assert w.tainted(DEFAULT_FAILURE_TAINT_KEY) == {"n2"}
    for _ in range(3):
        assert not any(isinstance(a, MarkNode | CreatePod) for a in w.step().actions)


def test_probe_of_a_superseded_run_holds_its_slot_until_it_is_deleted() -> None:
    w = world(2, maxConcurrent=1)
    w.step()
    w.start_pods()
    assert w.running_nodes() == ["n0"]
    w.generation = 2  # a spec change supersedes the run while n0's probe is running
    superseding = w.step()
    assert not any(isinstance(a, CreatePod) for a in superseding.actions), "the old probe still runs"
    assert w.pods == {}
    after = w.step()
    assert [a.node for a in after.actions if isinstance(a, CreatePod)] == ["n0"]


def test_a_run_asks_to_be_looked_at_again_when_a_nodes_wait_is_up() -> None:
    w = world(2, waitSeconds=2)
    w.busy = {"n1": frozenset({SIM_RESOURCE})}
    w.spec = make_spec(probe={"resourceName": SIM_RESOURCE}, waitSeconds=2)
    decided = w.step(0.0)
    assert 1.9 <= decided.requeue_after <= 2.0, "not the usual 5 s: the busy node is skipped in 2 s"
    w.busy = {}
    w.step(0.0)
    assert w.step(0.0).requeue_after == 2.0, "n1's probe pod is not scheduled yet: it has 2 s"
    w.start_pods()
    assert w.step(0.0).requeue_after == 5.0, "nobody waits for a deadline"


def test_a_spec_change_resumes_a_halted_scheduled_run_without_starting_another() -> None:
    w = world(5, trigger="Schedule", schedule="0 */6 * * *", failureBudget=1)
    w.step()
    assert w.status.next_run_at is not None
    w.now = w.status.next_run_at
    run_to_end(w, {f"n{i}": failing(f"n{i}") for i in range(3)})
    assert phase(w) is Phase.HALTED
    run = w.status.run_id
    w.spec = make_spec(trigger="Schedule", schedule="0 */6 * * *", failureBudget=3)
    w.generation = 2
    run_to_end(w, {})
    assert w.status.run_id == run, "the halted run goes on; a spec change is not a schedule slot"
    assert phase(w) is Phase.COMPLETED
    assert w.tainted(DEFAULT_FAILURE_TAINT_KEY) == {"n0", "n1", "n2"}
    assert any(e.reason == Reason.RESUMED.value and "spec change" in e.message for e in w.events)

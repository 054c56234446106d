"""Every trigger and fleet policy end to end: the real operator, the emulated API server, the simulated kubelet.

The rehearsal scenarios (tests/e2e/test_scenarios.py) play the same policies at fleet scale;
these tests look closer at one policy each: the Events, conditions, annotations and pod
manifests a user sees, and the human actions (resume) the policies wait for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from accelqual.adapters.kube import MERGE_PATCH, pod_path, qualification_path
from accelqual.constants import (
    ANN_CORDONED_BY,
    ANN_RESUME,
    ANN_RUN,
    ANN_TAINTED_BY,
    DEFAULT_FAILURE_TAINT_KEY,
    DEFAULT_GATE_TAINT_KEY,
    LABEL_VERDICT,
)
from accelqual.sim.cluster import SimulatedCluster
from accelqual.sim.modelled import ModelledProbeRunner
from accelqual.sim.simclock import SimClock

from tests.e2e.helpers import RESOURCE, condition, labels, qualification, sim_nodes, taint_keys, wait_until

GATE = [{"key": DEFAULT_GATE_TAINT_KEY, "effect": "NoSchedule"}]


def status(cluster: SimulatedCluster, name: str = "e2e") -> dict[str, Any]:
    return dict(cluster.qualification(name).get("status") or {})


def tainted(cluster: SimulatedCluster, key: str = DEFAULT_FAILURE_TAINT_KEY) -> set[str]:
    return {n for n, obj in cluster.nodes().items() if key in taint_keys(obj)}


def events(cluster: SimulatedCluster, reason: str) -> list[dict[str, Any]]:
    return [e for e in cluster.events() if e["reason"] == reason]


def busy_pod(cluster: SimulatedCluster, node: str) -> None:
    """Real work holding the node's accelerator, placed by the scheduler like any pod."""
    cluster.api.create(pod_path("default"), {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"work-{node}", "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "train", "image": "train:1", "resources": {
            "requests": {RESOURCE: "1"}, "limits": {RESOURCE: "1"}}}]},
    })


# --- triggers -------------------------------------------------------------------------------

def test_on_join_qualifies_gated_nodes_as_they_join_including_during_a_run(cluster: SimulatedCluster) -> None:
    cluster.add_nodes(sim_nodes(2, prefix="serving"))
    cluster.add_nodes(sim_nodes(3, prefix="new", taints=GATE, faults={2: ["slow-memory=0.25"]}))
    cluster.start_operator()
    cluster.apply(qualification(trigger="OnJoin", maxConcurrent=1))
    run = wait_until("the first run started", lambda: status(cluster).get("runId"))

    cluster.add_nodes(sim_nodes(1, prefix="late", taints=GATE))
    assert status(cluster)["phase"] == "Running", "the late node joins while the run is in progress"
    obj = cluster.wait_for_phase("e2e", ("Completed",), timeout=60)

    st = obj["status"]
    assert st["runId"] == run, "the joiner was picked up by the run in progress"
    assert (st["summary"]["total"], st["summary"]["passed"], st["summary"]["failed"]) == (4, 3, 1)
    nodes = cluster.nodes()
    for name in ("new-0", "new-1", "late-0"):
        assert taint_keys(nodes[name]) == [], f"{name} passed and entered service"
        assert labels(nodes[name])[LABEL_VERDICT] == "pass"
    assert nodes["late-0"]["metadata"]["annotations"][ANN_RUN] == f"e2e/{run}"
    assert sorted(taint_keys(nodes["new-2"])) == sorted([DEFAULT_GATE_TAINT_KEY, DEFAULT_FAILURE_TAINT_KEY])
    for name in ("serving-0", "serving-1"):
        assert LABEL_VERDICT not in labels(nodes[name])
        assert not any(k.startswith("accelqual.io/") for k in nodes[name]["metadata"].get("annotations") or {})
    assert cluster.kubelet is not None and cluster.kubelet.started_count == 4, "each joiner probed once"


@pytest.fixture
def timed_cluster() -> Iterator[tuple[SimulatedCluster, SimClock]]:
    """A cluster on simulated time running 60x faster: a minutely schedule fires every real second."""
    clock = SimClock(datetime(2026, 3, 2, 0, 0, 40, tzinfo=UTC), scale=60)
    runner = ModelledProbeRunner(duration=5, clock=clock.elapsed, wallclock=clock.now)
    with SimulatedCluster(runner=runner, kubelet_interval=0.05, clock=clock) as sim:
        yield sim, clock


def test_schedule_publishes_next_run_never_overlaps_and_runs_missed_slots_once(
        timed_cluster: tuple[SimulatedCluster, SimClock]) -> None:
    cluster, clock = timed_cluster
    cluster.add_nodes(sim_nodes(2))
    cluster.start_operator()
    cluster.apply(qualification(trigger="Schedule", schedule="* * * * *"))
    first_slot = wait_until("nextRunAt is published", lambda: status(cluster).get("nextRunAt"))
    assert first_slot == "2026-03-02T00:01:00Z"
    assert status(cluster)["phase"] == "Pending"
    clock.begin()
    first = cluster.wait_for_phase("e2e", ("Completed",), timeout=30)["status"]
    assert first["startedAt"] >= "2026-03-02T00:01:00"

    cluster.stop_operator()
    down_from = clock.now()
    clock.sleep_until(clock.elapsed() + 200)  # the operator misses three slots
    clock.pause()
    cluster.start_operator()
    clock.resume()
    seen: set[str] = set()

    def caught_up() -> bool:
        st = status(cluster)
        seen.add(st.get("runId") or "")
        return st.get("phase") == "Completed" and st.get("runId") != first["runId"]

    after = wait_until("the missed run ran", caught_up, timeout=30) and status(cluster)
    started = datetime.fromisoformat(after["startedAt"].replace("Z", "+00:00"))
    assert started - down_from >= timedelta(seconds=200)
    assert seen - {first["runId"], ""} == {after["runId"]}, "three missed slots, one run"
    next_run = datetime.fromisoformat(after["nextRunAt"].replace("Z", "+00:00"))
    assert next_run > started and next_run.second == 0, "the schedule goes on from now"
    assert datetime.fromisoformat(after["finishedAt"].replace("Z", "+00:00")) <= next_run, "no overlap"


# --- concurrency and idle nodes ---------------------------------------------------------------

def test_busy_nodes_are_not_probed_retried_when_idle_and_reported_skipped(cluster: SimulatedCluster) -> None:
    cluster.add_nodes(sim_nodes(4))
    busy_pod(cluster, "node-1")
    busy_pod(cluster, "node-2")
    wait_until("the workloads run", lambda: all(
        (p.get("status") or {}).get("phase") == "Running" for p in cluster.api.list_all(pod_path("default"))))
    cluster.start_operator()
    cluster.apply(qualification(maxConcurrent=1, waitSeconds=6))
    wait_until("the idle nodes are qualified", lambda: {"node-0", "node-3"} <= {
        n for n, o in cluster.nodes().items() if LABEL_VERDICT in labels(o)})
    probes = cluster.pods("app.kubernetes.io/component=probe")
    assert not {p["spec"].get("nodeName") for p in probes} & {"node-1", "node-2"}, "busy nodes are not probed"
    assert all(p["spec"]["containers"][0]["resources"]["requests"][RESOURCE] == "1" for p in probes), \
        "the probe requests the accelerators, so the scheduler keeps real work and probes apart"

    cluster.api.delete(pod_path("default", "work-node-1"))
    obj = cluster.wait_for_phase("e2e", ("Completed",), timeout=60)

    st = obj["status"]
    assert (st["summary"]["passed"], st["summary"]["skipped"]) == (3, 1)
    assert "accelerators in use by other pods" in st["message"]
    assert LABEL_VERDICT not in labels(cluster.nodes()["node-2"])
    assert [e["involvedObject"]["name"] for e in events(cluster, "QualificationSkipped")] == ["node-2"]
    assert cluster.kubelet is not None and cluster.kubelet.max_seen_parallel == 1, "maxConcurrent 1 at the kubelet"


# --- failure budget ---------------------------------------------------------------------------

def test_failure_budget_halts_names_the_common_factor_and_waits_for_a_human(cluster: SimulatedCluster) -> None:
    nodes = sim_nodes(6, faults={i: ["bad-dtype=bf16"] for i in range(4)})
    for node in nodes:
        node.env["SIM_DRIVER"] = "560.0-rc1" if node.faults else "550.54.15"
    cluster.add_nodes(nodes)
    cluster.start_operator()
    cluster.apply(qualification(failureBudget=1))

    obj = cluster.wait_for_phase("e2e", ("Halted",), timeout=60)

    halted = condition(obj, "Halted")
    assert (halted["status"], halted["reason"]) == ("True", "FailureBudgetExceeded")
    assert "func.dtypes" in halted["message"] and "driver 560.0-rc1, which no passing node runs" in halted["message"]
    assert f"kubectl annotate aq e2e {ANN_RESUME}=true" in halted["message"]
    assert len(tainted(cluster)) == 1
    alert = events(cluster, "FailureBudgetExceeded")
    assert len(alert) == 1 and alert[0]["type"] == "Warning" and "560.0-rc1" in alert[0]["message"]
    time.sleep(1.0)
    assert status(cluster)["phase"] == "Halted" and len(tainted(cluster)) == 1, "it waits for a human"

    cluster.api.patch(qualification_path("e2e"), {"metadata": {"annotations": {ANN_RESUME: "true"}}}, MERGE_PATCH)
    obj = cluster.wait_for_phase("e2e", ("Completed",), timeout=60)

    assert tainted(cluster) == {"node-0", "node-1", "node-2", "node-3"}
    assert ANN_RESUME not in (obj["metadata"].get("annotations") or {}), "the request is consumed"
    assert condition(obj, "Halted")["status"] == "False"
    assert events(cluster, "Resumed")


# --- release, dry run, peers ---------------------------------------------------------------

def test_auto_release_lifts_only_the_taint_and_cordon_we_placed(cluster: SimulatedCluster) -> None:
    nodes = sim_nodes(3, faults={0: ["slow-memory=0.25"]})
    nodes[1].taints = [{"key": DEFAULT_FAILURE_TAINT_KEY, "value": "true", "effect": "NoSchedule"}]  # a human's
    nodes[2].unschedulable = True  # cordoned for maintenance
    cluster.add_nodes(nodes)
    cluster.start_operator()
    policy: dict[str, Any] = {"autoRelease": True, "onFailure": {"cordon": True}, "waitSeconds": 1}
    cluster.apply(qualification(**policy))
    cluster.wait_for_phase("e2e", ("Completed",), timeout=60)
    failed = cluster.nodes()["node-0"]
    assert DEFAULT_FAILURE_TAINT_KEY in taint_keys(failed) and failed["spec"].get("unschedulable")
    assert failed["metadata"]["annotations"][ANN_TAINTED_BY] == "e2e"
    assert failed["metadata"]["annotations"][ANN_CORDONED_BY] == "e2e"

    cluster.sim_nodes["node-0"].faults = []  # the card is replaced
    run = status(cluster)["runId"]
    cluster.apply(qualification(**{**policy, "waitSeconds": 2}))  # a spec change: a new run
    obj = cluster.wait_for_phase("e2e", ("Completed",), timeout=60, run_id=run)

    assert obj["status"]["summary"]["passed"] == 2
    nodes_now = cluster.nodes()
    repaired = nodes_now["node-0"]
    assert taint_keys(repaired) == [] and not repaired["spec"].get("unschedulable")
    assert not {ANN_TAINTED_BY, ANN_CORDONED_BY} & set(repaired["metadata"]["annotations"])
    assert taint_keys(nodes_now["node-1"]) == [DEFAULT_FAILURE_TAINT_KEY], "a human's taint stays"
    assert labels(nodes_now["node-1"])[LABEL_VERDICT] == "pass"
    assert nodes_now["node-2"]["spec"].get("unschedulable") is True, "a human's cordon stays"
    assert LABEL_VERDICT not in labels(nodes_now["node-2"])


def test_dry_run_reports_every_decision_and_changes_no_node(cluster: SimulatedCluster) -> None:
    cluster.add_nodes(sim_nodes(3, faults={1: ["residual-memory"]}))
    cluster.add_nodes(sim_nodes(1, prefix="gated", taints=GATE))
    before = {n: o["metadata"]["resourceVersion"] for n, o in cluster.nodes().items()}
    cluster.start_operator()
    cluster.apply(qualification(dryRun=True, report=cluster.report_spec()))

    obj = cluster.wait_for_phase("e2e", ("Completed",), timeout=60)

    after = {n: o["metadata"]["resourceVersion"] for n, o in cluster.nodes().items()}
    assert after == before, "not a single write to a node"
    st = obj["status"]
    assert (st["summary"]["passed"], st["summary"]["failed"]) == (3, 1)
    assert [f["node"] for f in st["failingNodes"]] == ["node-1"]
    assert st["reportURI"].endswith("/summary.json")
    dry = {e["involvedObject"]["name"]: e["message"] for e in events(cluster, "DryRun")}
    assert f"would label {LABEL_VERDICT}=fail, add taint {DEFAULT_FAILURE_TAINT_KEY}:NoSchedule" in dry["node-1"]
    assert f"remove taint {DEFAULT_GATE_TAINT_KEY}:NoSchedule" in dry["gated-0"]
    assert set(dry) == {"node-0", "node-1", "node-2", "gated-0"}


def test_card_slower_than_its_peers_fails_although_it_clears_the_absolute_floor() -> None:
    # Identical cards differ by about half a percent; one computes 10% slower than its peers.
    with SimulatedCluster(runner=ModelledProbeRunner(duration=0.3, noise=0.005), kubelet_interval=0.05) as cluster:
        cluster.add_nodes(sim_nodes(7, faults={3: ["slow-compute=0.9"]}))
        cluster.start_operator()
        cluster.apply(qualification(fleetRelative={"enabled": True, "maxDeviation": 0.08, "minPeers": 5}))

        obj = cluster.wait_for_phase("e2e", ("Completed",), timeout=60)

        assert tainted(cluster) == {"node-3"}
        reason = cluster.nodes()["node-3"]["metadata"]["annotations"]["accelqual.io/reason"]
        assert reason.startswith("fleet outlier: perf.gemm") and "worse than the pool median" in reason
        assert obj["status"]["summary"]["failed"] == 1

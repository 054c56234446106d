"""A Qualification qualifies a pool end to end: real kopf operator, emulated API over HTTP, moto S3."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from accelqual.adapters.kube import KubeError
from accelqual.constants import DEFAULT_FAILURE_TAINT_KEY, LABEL_VERDICT
from accelqual.models import MAX_FAILING_NODES
from accelqual.sim.cluster import BUCKET, SimulatedCluster

from tests.e2e.conftest import E2ECluster
from tests.e2e.helpers import condition, labels, qualification, sim_nodes, taint_keys


def test_pool_with_mixed_verdicts_is_qualified_tainted_and_reported(cluster: SimulatedCluster) -> None:
    cluster.add_nodes(sim_nodes(5, faults={1: ["slow-memory=0.25"], 3: ["residual-memory"]}))
    cluster.start_operator()
    cluster.apply(qualification(report=cluster.report_spec()))

    obj = cluster.wait_for_phase("e2e", timeout=60)

    status = obj["status"]
    assert status["phase"] == "Completed"
    assert status["summary"] == {"total": 5, "pending": 0, "running": 0, "passed": 3, "failed": 2,
                                 "inconclusive": 0, "skipped": 0}
    assert {f["node"]: f["failedChecks"] for f in status["failingNodes"]} == {
        "node-1": ["perf.membw"], "node-3": ["sec.residual"]}
    assert status["observedGeneration"] == 1
    nodes = cluster.nodes()
    assert {n for n, o in nodes.items() if DEFAULT_FAILURE_TAINT_KEY in taint_keys(o)} == {"node-1", "node-3"}
    assert labels(nodes["node-0"])[LABEL_VERDICT] == "pass"
    assert labels(nodes["node-1"])[LABEL_VERDICT] == "fail"
    # Evidence: every node's report and the run summary in S3, with the digests the marks and status name.
    assert cluster.s3 is not None
    run = status["runId"]
    keys = set(cluster.s3.keys(BUCKET))
    assert {f"runs/e2e/{run}/nodes/node-{i}.json" for i in range(5)} | {f"runs/e2e/{run}/summary.json"} <= keys
    node1 = nodes["node-1"]["metadata"]["annotations"]
    body = cluster.s3.read(BUCKET, f"runs/e2e/{run}/nodes/node-1.json")
    assert hashlib.sha256(body).hexdigest() == node1["accelqual.io/report-sha256"]
    assert node1["accelqual.io/report-uri"] == f"s3://{BUCKET}/runs/e2e/{run}/nodes/node-1.json"
    summary = cluster.s3.read(BUCKET, f"runs/e2e/{run}/summary.json")
    assert status["reportURI"] == f"s3://{BUCKET}/runs/e2e/{run}/summary.json"
    assert hashlib.sha256(summary).hexdigest() == status["reportSHA256"]
    assert json.loads(summary)["summary"]["failed"] == 2
    # Node events say which check failed and where the evidence is.
    events = [e for e in cluster.events() if e["involvedObject"]["name"] == "node-1"]
    assert any(e["reason"] == "QualificationFailed" and "perf.membw" in e["message"]
               and "s3://" in e["message"] for e in events)
    # The run's probe pods are cleaned up once the run is over.
    deadline = time.monotonic() + 10
    while cluster.pods("app.kubernetes.io/component=probe") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cluster.pods("app.kubernetes.io/component=probe") == []


@pytest.mark.realcluster
def test_nodes_outside_the_selector_are_never_touched(cluster: E2ECluster) -> None:
    cluster.add_nodes(sim_nodes(2))
    cluster.add_nodes(sim_nodes(2, prefix="other", labels={"accelqual.io/pool": "other"}))
    cluster.start_operator()
    cluster.apply(qualification())
    obj = cluster.wait_for_phase("e2e", timeout=60)
    assert obj["status"]["summary"]["total"] == 2
    nodes = cluster.nodes()
    outside = {cluster.node_name("other-0"), cluster.node_name("other-1")}
    for name in ("other-0", "other-1"):
        assert LABEL_VERDICT not in labels(nodes[name])
        assert DEFAULT_FAILURE_TAINT_KEY not in taint_keys(nodes[name])
        assert not any(k.startswith("accelqual.io/") for k in nodes[name]["metadata"].get("annotations") or {})
    probe_nodes = {p["spec"].get("nodeName") for p in cluster.pods()}
    assert not probe_nodes & outside


@pytest.mark.realcluster
def test_healthy_pool_is_qualified_with_its_evidence_across_an_operator_restart(cluster: E2ECluster) -> None:
    cluster.add_nodes(sim_nodes(3))
    cluster.start_operator()
    cluster.apply(qualification(maxConcurrent=1, report=cluster.report_spec()))
    deadline = time.monotonic() + 30 * cluster.timeout_scale
    while time.monotonic() < deadline:  # restart once one node is done and others still to go
        if ((cluster.qualification("e2e").get("status") or {}).get("summary") or {}).get("passed", 0) >= 1:
            break
        time.sleep(0.1)
    cluster.restart_operator()

    obj = cluster.wait_for_phase("e2e", timeout=60)

    status = obj["status"]
    assert status["phase"] == "Completed"
    assert status["summary"]["passed"] == 3, status
    assert cluster.s3 is not None
    for test_name, node in cluster.nodes().items():
        assert labels(node)[LABEL_VERDICT] == "pass", test_name
        assert DEFAULT_FAILURE_TAINT_KEY not in taint_keys(node)
        annotations = node["metadata"]["annotations"]
        key = f"runs/e2e/{status['runId']}/nodes/{cluster.node_name(test_name)}.json"
        assert annotations["accelqual.io/report-uri"] == f"s3://{BUCKET}/{key}"
        assert hashlib.sha256(cluster.s3.read(BUCKET, key)).hexdigest() == annotations["accelqual.io/report-sha256"]
    summary = cluster.s3.read(BUCKET, f"runs/e2e/{status['runId']}/summary.json")
    assert hashlib.sha256(summary).hexdigest() == status["reportSHA256"]


def test_operator_restarted_mid_run_neither_duplicates_pods_nor_loses_results(cluster: SimulatedCluster) -> None:
    cluster.add_nodes(sim_nodes(6, faults={2: ["missing-device"]}))
    cluster.start_operator()
    cluster.apply(qualification(maxConcurrent=2))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # restart once some nodes are done and others still to go
        summary = (cluster.qualification("e2e").get("status") or {}).get("summary") or {}
        if summary.get("passed", 0) + summary.get("failed", 0) >= 2:
            break
        time.sleep(0.1)
    created_before = cluster.kubelet.started_count if cluster.kubelet else 0
    cluster.restart_operator()

    obj = cluster.wait_for_phase("e2e", timeout=60)

    assert obj["status"]["summary"]["passed"] == 5
    assert obj["status"]["summary"]["failed"] == 1
    assert cluster.kubelet is not None
    assert cluster.kubelet.started_count == 6, "every node probed exactly once"
    assert created_before <= 6
    stats = cluster.server.emulator.stats()
    creates = sum(count for (verb, resource, sub), count in stats.items()
                  if verb == "create" and resource == "pods" and not sub)
    assert creates == 6, f"no twin pods were created: {creates}"


def test_probe_that_never_finishes_is_inconclusive_at_its_deadline_and_not_tainted(
        cluster: SimulatedCluster) -> None:
    cluster.add_nodes(sim_nodes(2, behaviours={1: "hang"}))
    cluster.start_operator()
    cluster.apply(qualification(probe={"resourceName": "accelqual.io/sim-accelerator", "timeoutSeconds": 30}))
    # The simulated kubelet enforces activeDeadlineSeconds like the real one; speed its clock up.
    assert cluster.kubelet is not None
    real_clock = cluster.kubelet.clock
    start = real_clock()
    cluster.kubelet.clock = lambda: start + (real_clock() - start) * 20

    obj = cluster.wait_for_phase("e2e", timeout=60)

    assert obj["status"]["summary"]["inconclusive"] == 1
    node = cluster.nodes()["node-1"]
    assert labels(node)[LABEL_VERDICT] == "inconclusive"
    assert DEFAULT_FAILURE_TAINT_KEY not in taint_keys(node)
    assert "deadline" in node["metadata"]["annotations"]["accelqual.io/reason"]


def test_hostile_outputs_are_inconclusive_and_the_status_stays_bounded(cluster: SimulatedCluster) -> None:
    behaviours = {0: "garbage", 1: "huge", 2: "forged", 3: "other-node", 4: "crash", 5: "silent"}
    cluster.add_nodes(sim_nodes(7, behaviours=behaviours))
    cluster.start_operator()
    cluster.apply(qualification(report=cluster.report_spec()))

    obj = cluster.wait_for_phase("e2e", timeout=90)

    status = obj["status"]
    assert status["summary"]["passed"] == 1  # node-6 is the only honest one
    assert status["summary"]["inconclusive"] + status["summary"]["failed"] == 6
    nodes = cluster.nodes()
    for i in range(6):
        assert labels(nodes[f"node-{i}"])[LABEL_VERDICT] != "pass", behaviours[i]
    assert labels(nodes["node-1"])[LABEL_VERDICT] == "inconclusive"
    assert "limit" in nodes["node-1"]["metadata"]["annotations"]["accelqual.io/reason"]
    assert "other-node" in nodes["node-3"]["metadata"]["annotations"]["accelqual.io/reason"] or \
        "some-other-node" in nodes["node-3"]["metadata"]["annotations"]["accelqual.io/reason"]
    assert len(json.dumps(status)) < 16 * 1024
    assert len(status["failingNodes"]) <= MAX_FAILING_NODES
    for node in nodes.values():
        assert sum(len(k) + len(v) for k, v in (node["metadata"].get("annotations") or {}).items()) < 4096
    # A rejected output is kept as evidence of what the node sent.
    assert cluster.s3 is not None
    doc = json.loads(cluster.s3.read(BUCKET, f"runs/e2e/{status['runId']}/nodes/node-0.json"))
    assert doc["schemaVersion"] == "accelqual.io/v1/rejected-output"


def test_status_stays_small_with_many_failing_nodes(cluster: SimulatedCluster) -> None:
    cluster.add_nodes(sim_nodes(30, faults={i: ["slow-memory=0.1"] for i in range(25)}))
    cluster.start_operator()
    cluster.apply(qualification(failureBudget="100%"))
    obj = cluster.wait_for_phase("e2e", timeout=90)
    status = obj["status"]
    assert status["summary"]["failed"] == 25
    assert len(status["failingNodes"]) == MAX_FAILING_NODES
    assert status["failingNodesOmitted"] == 5


@pytest.mark.realcluster
def test_unknown_profile_is_refused_with_a_condition_and_no_node_is_touched(cluster: E2ECluster) -> None:
    cluster.add_nodes(sim_nodes(2))
    cluster.start_operator()
    cluster.apply(qualification(profile="no-such-card"))
    obj = cluster.wait_for_phase("e2e", phases=("Invalid",), timeout=30)
    ready = condition(obj, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "UnknownProfile"
    assert "no-such-card" in ready["message"]
    time.sleep(1.0)
    assert cluster.pods() == []
    assert all(LABEL_VERDICT not in labels(n) for n in cluster.nodes().values())
    assert any(e["reason"] == "UnknownProfile" for e in cluster.events())


@pytest.mark.realcluster
def test_api_server_rejects_what_the_crd_schema_forbids(cluster: E2ECluster) -> None:
    for bad in ({"maxConcurrent": -1}, {"suite": "everything"},
                {"nodeSelector": {"matchExpressions": [{"key": "pool", "operator": "Near"}]}}):
        with pytest.raises(KubeError) as caught:
            cluster.apply(qualification(name="bad", **bad))
        assert caught.value.status == 422
        assert "is invalid" in caught.value.message
    with pytest.raises(KubeError):
        cluster.qualification("bad")


@pytest.mark.realcluster
def test_empty_selector_and_unknown_check_are_refused(cluster: E2ECluster) -> None:
    cluster.start_operator()
    cluster.apply(qualification(name="everything", nodeSelector={}))
    cluster.apply(qualification(name="typo", checks=["perf.gemm.bf61"]))
    assert condition(cluster.wait_for_phase("everything", phases=("Invalid",), timeout=30),
                     "Ready")["reason"] == "InvalidSelector"
    assert condition(cluster.wait_for_phase("typo", phases=("Invalid",), timeout=30),
                     "Ready")["reason"] == "UnknownCheck"


@pytest.mark.realcluster
def test_fixing_an_invalid_spec_starts_the_run(cluster: E2ECluster) -> None:
    cluster.add_nodes(sim_nodes(1))
    cluster.start_operator()
    cluster.apply(qualification(profile="no-such-card"))
    cluster.wait_for_phase("e2e", phases=("Invalid",), timeout=30)
    cluster.apply(qualification(profile="auto"))
    obj = cluster.wait_for_phase("e2e", phases=("Completed",), timeout=30)
    assert obj["status"]["phase"] == "Completed"
    assert obj["status"]["observedGeneration"] == 2
    assert condition(obj, "Ready")["status"] == "True"

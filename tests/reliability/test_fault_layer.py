"""The fault-injection layer the matrix stands on: operator death at a crash point, kubelet evictions and
OOM kills, the stepped operator clock, and evidence written once in S3 (versions counted)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from accelqual.adapters.evidence import S3Credentials, S3Evidence, sha256_hex
from accelqual.handlers.reconcile import CRASH_POINTS
from accelqual.sim.cluster import SimulatedCluster
from accelqual.sim.crash import CrashAt, SimulatedCrash
from accelqual.sim.modelled import ModelledProbeRunner
from accelqual.sim.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from accelqual.sim.simclock import SteppedClock

from tests.e2e.helpers import qualification, sim_nodes, wait_until

PROBES = "app.kubernetes.io/component=probe"


@pytest.fixture
def cluster() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(runner=ModelledProbeRunner(duration=0.3), kubelet_interval=0.05) as sim:
        yield sim


def test_crash_at_fires_once_at_the_nth_pass_of_its_point() -> None:
    crash = CrashAt("node-marked", nth=2)
    crash("pod-created")
    crash("node-marked")
    with pytest.raises(SimulatedCrash):
        crash("node-marked")
    crash("node-marked")  # dead already: the harness restarts the operator
    assert crash.fired.is_set()
    assert crash.passed["node-marked"] == 3
    with pytest.raises(ValueError, match="unknown crash point"):
        CrashAt("somewhere")
    assert "evidence-stored" in CRASH_POINTS


def test_an_operator_killed_at_a_crash_point_writes_nothing_more(cluster: SimulatedCluster) -> None:
    emulator = cluster.server.emulator
    emulator.write_log.watch(["pods", "qualifications", "events", "nodes", "configmaps"])
    crash = CrashAt("pod-created", nth=1)
    cluster.add_nodes(sim_nodes(1))
    cluster.start_operator(crash_points=crash)
    cluster.apply(qualification())
    assert crash.fired.wait(30)
    writes_at_death = _operator_writes(cluster)

    time.sleep(1.5)  # its probe finishes meanwhile: a live operator would collect, mark and write status

    assert _operator_writes(cluster) == writes_at_death
    assert cluster.operator is not None and cluster.operator.reconciler is not None
    assert cluster.operator.reconciler.died_at == "pod-created"
    cluster.restart_operator(crash_points=None)
    status = cluster.wait_for_phase("e2e", timeout=30)["status"]
    assert status["summary"]["passed"] == 1


def _operator_writes(cluster: SimulatedCluster) -> int:
    """Writes by the operator: all but the kubelet's (pod binding and pod status)."""
    return sum(1 for r in cluster.server.emulator.write_log.records() if r.resource != "pods" or r.verb != "patch")


def test_the_kubelet_evicts_a_running_probe_and_reports_an_oom_kill(cluster: SimulatedCluster) -> None:
    assert cluster.kubelet is not None
    cluster.add_nodes(sim_nodes(2, behaviours={0: "hang", 1: "oom"}))
    cluster.start_operator()
    cluster.apply(qualification())
    hanging = wait_until("the hanging probe runs", lambda: [k for k in cluster.kubelet.running() if "node-0" in k]
                         if cluster.kubelet else None, timeout=30)
    namespace, name = hanging[0].split("/")

    cluster.kubelet.evict(namespace, name)

    status = cluster.wait_for_phase("e2e", timeout=30)["status"]
    assert status["summary"]["inconclusive"] == 2
    reasons = {n: o["metadata"]["annotations"]["accelqual.io/reason"] for n, o in cluster.nodes().items()}
    assert reasons == {"node-0": "probe pod was evicted", "node-1": "probe was killed for exceeding its memory limit"}


def test_the_stepped_clock_moves_by_its_steps_only() -> None:
    clock = SteppedClock()
    before = datetime.now(UTC)
    clock.step(7200)
    clock.step(-600)
    assert (clock.now() - before).total_seconds() == pytest.approx(6600, abs=5)
    assert clock.steps == [7200, -600]


def test_evidence_is_written_once_whatever_is_put_again() -> None:
    with LocalS3() as s3:
        s3.create_bucket("once")
        client = s3.client()
        client.put_bucket_versioning(Bucket="once", VersioningConfiguration={"Status": "Enabled"})
        store = S3Evidence("once", region=REGION, endpoint=s3.endpoint,
                           credentials=S3Credentials(ACCESS_KEY, SECRET_KEY))

        first = store.put("r/nodes/n1.json", b'{"verdict": "fail"}')
        again = store.put("r/nodes/n1.json", b'{"verdict": "fail"}')
        other = store.put("r/nodes/n1.json", b'{"verdict": "pass"}')  # someone else's content is not overwritten

        versions = client.list_object_versions(Bucket="once", Prefix="r/")["Versions"]
        assert len(versions) == 1
        assert first == again == other == sha256_hex(b'{"verdict": "fail"}')
        assert store.replace("r/nodes/n1.json", b'{"verdict": "pass"}') == sha256_hex(b'{"verdict": "pass"}')
        assert len(client.list_object_versions(Bucket="once", Prefix="r/")["Versions"]) == 2


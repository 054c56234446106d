"""The real-cluster harness itself, pointed at the emulator through a kubeconfig as at any cluster.

`RealCluster` must map the tests' nodes onto the cluster's, run the operator against the
kubeconfig, and leave every node exactly as it found it; that is checked here, where the
"real" cluster is a `SimulatedCluster` with nodes of its own names and no operator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from accelqual.constants import DEFAULT_FAILURE_TAINT_KEY, LABEL_VERDICT
from accelqual.sim.cluster import SimulatedCluster
from accelqual.sim.kubelet import SimNode
from accelqual.sim.modelled import ModelledProbeRunner

from tests.e2e.helpers import POOL, qualification, sim_nodes, taint_keys
from tests.support.realcluster import RealCluster

THEIR_TAINT = {"key": "example.com/maintenance", "value": "soon", "effect": "PreferNoSchedule"}


@pytest.fixture
def backing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SimulatedCluster, Path]]:
    with SimulatedCluster(runner=ModelledProbeRunner(duration=0.2), kubelet_interval=0.05) as sim:
        sim.add_nodes(SimNode(name=f"rack7-{i}", labels={"topology.example.com/rack": "7"},
                              allocatable={"cpu": "8", "memory": "32Gi", "pods": "110"},
                              taints=[THEIR_TAINT] if i == 0 else [])
                      for i in range(3))
        kubeconfig = sim.server.write_kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.setenv("ACCELQUAL_E2E_NAMESPACE", "e2e-probes")
        monkeypatch.setenv("ACCELQUAL_E2E_TIMEOUT_SCALE", "2")
        yield sim, kubeconfig


def test_runs_a_qualification_on_the_clusters_own_nodes_and_restores_them(
        backing: tuple[SimulatedCluster, Path]) -> None:
    sim, kubeconfig = backing
    before = sim.nodes()
    with RealCluster(str(kubeconfig)) as real:
        real.add_nodes(sim_nodes(2))
        assert [real.node_name("node-0"), real.node_name("node-1")] == ["rack7-0", "rack7-1"]
        real.start_operator()
        real.apply(qualification(report=real.report_spec()))
        obj = real.wait_for_phase("e2e", timeout=30)
        assert obj["status"]["summary"]["passed"] == 2
        # The probe pods ran in the harness's namespace with its image, on the mapped nodes.
        nodes = real.nodes()
        assert set(nodes) == {"node-0", "node-1"}
        assert all(n["metadata"]["labels"][LABEL_VERDICT] == "pass" for n in nodes.values())
        assert {POOL["accelqual.io/pool"]} == {n["metadata"]["labels"]["accelqual.io/pool"] for n in nodes.values()}
        spec = real.qualification("e2e")["spec"]["probe"]
        assert spec["image"] == real.image and "resourceName" not in spec
    after = sim.nodes()
    for name, node in before.items():
        assert after[name]["metadata"]["labels"] == node["metadata"]["labels"], name
        assert (after[name]["spec"].get("taints") or []) == (node["spec"].get("taints") or []), name
        assert not any(k.startswith("accelqual.io/") for k in after[name]["metadata"].get("annotations") or {})
    assert taint_keys(after["rack7-0"]) == [THEIR_TAINT["key"]]
    assert DEFAULT_FAILURE_TAINT_KEY not in taint_keys(after["rack7-1"])
    assert sim.api.list_all("/apis/accelqual.io/v1alpha1/qualifications") == []
    assert sim.pods() == [] and sim.api.list_all("/api/v1/namespaces/e2e-probes/pods") == []


def test_skips_what_a_real_cluster_cannot_do_with_the_reason(backing: tuple[SimulatedCluster, Path]) -> None:
    _, kubeconfig = backing
    with RealCluster(str(kubeconfig)) as real:
        with pytest.raises(pytest.skip.Exception, match="per-node fault"):
            real.add_nodes(sim_nodes(1, faults={0: ["slow-memory=0.5"]}))
        with pytest.raises(pytest.skip.Exception, match="needs 4 nodes; the real cluster offers 3"):
            real.add_nodes(sim_nodes(4))

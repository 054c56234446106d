"""The simulated kubelet does the same in both of its modes: listing over HTTP, or watching and
writing into the emulator's store (the fleet mode the control-plane benchmark uses).

Pods are created through the API as the operator would create them; a scripted container
ends when the test says so, so each step of a pod's life is observed, not timed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from accelqual.adapters.kube import KubeClient, pod_path
from accelqual.sim.cluster import SimulatedCluster
from accelqual.sim.emulator import FaultRule
from accelqual.sim.kubelet import SimNode, _Watches, affinity_node_names
from accelqual.sim.server import EmulatorServer

NAMESPACE = "accelqual-system"


class ScriptedProbe:
    """A container that runs until `finish(code)`; records whether the kubelet killed it."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.killed = False

    def poll(self) -> int | None:
        return self.code

    def kill(self) -> None:
        self.killed = True
        self.code = 137

    def output(self) -> str:
        return "probe output\n"

    def termination_message(self) -> str:
        return "done"

    def ended_by(self) -> str:
        return ""


class ScriptedRunner:
    def __init__(self) -> None:
        self.started: dict[str, ScriptedProbe] = {}
        self.nodes: dict[str, str] = {}
        self._lock = threading.Lock()

    def start(self, pod: Mapping[str, Any], node: SimNode) -> ScriptedProbe:
        probe = ScriptedProbe()
        with self._lock:
            self.started[pod["metadata"]["name"]] = probe
            self.nodes[pod["metadata"]["name"]] = node.name
        return probe


def _wait(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _probe_pod(name: str, node: str, gpus: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/component": "probe"}},
        "spec": {
            "restartPolicy": "Never",
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                        "values": [node]}]}]}}},
            "containers": [{"name": "probe", "image": "probe:1",
                            "resources": {"requests": {"nvidia.com/gpu": str(gpus)},
                                          "limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
    }


@pytest.fixture(params=["http", "fleet"])
def sim(request: pytest.FixtureRequest) -> Iterator[tuple[SimulatedCluster, ScriptedRunner]]:
    runner = ScriptedRunner()
    with SimulatedCluster(runner=runner, kubelet_interval=0.02, kubelet_parallel=100, with_s3=False,
                          kubelet_fleet_mode=request.param == "fleet") as cluster:
        cluster.add_nodes(SimNode(name=f"n{i}", allocatable={"nvidia.com/gpu": "1"}) for i in range(3))
        yield cluster, runner


def _pod(cluster: SimulatedCluster, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = cluster.api.get(pod_path(NAMESPACE, name))
    return pod


def _in_phase(cluster: SimulatedCluster, name: str, phase: str) -> dict[str, Any] | None:
    pod = _pod(cluster, name)
    return pod if (pod.get("status") or {}).get("phase") == phase else None


def test_a_probe_pod_goes_to_its_named_node_runs_and_succeeds_with_its_log(
        sim: tuple[SimulatedCluster, ScriptedRunner]) -> None:
    cluster, runner = sim
    cluster.api.create(pod_path(NAMESPACE), _probe_pod("p", "n2"))

    probe = _wait("the container to start", lambda: runner.started.get("p"))
    assert runner.nodes["p"] == "n2"
    running = _wait("phase Running", lambda: _in_phase(cluster, "p", "Running"))
    assert running["spec"]["nodeName"] == "n2"

    probe.code = 0
    done = _wait("phase Succeeded", lambda: _in_phase(cluster, "p", "Succeeded"))
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"], terminated["message"]) == (0, "Completed", "done")
    assert cluster.server.emulator.pod_log(NAMESPACE, "p") == "probe output\n"
    time.sleep(0.2)  # several more steps: a finished pod is never started again
    assert list(runner.started) == ["p"]


def test_a_pod_waits_for_its_nodes_accelerator_and_a_deleted_pods_container_is_killed(
        sim: tuple[SimulatedCluster, ScriptedRunner]) -> None:
    cluster, runner = sim
    cluster.api.create(pod_path(NAMESPACE), _probe_pod("first", "n0"))
    first = _wait("the first container", lambda: runner.started.get("first"))
    cluster.api.create(pod_path(NAMESPACE), _probe_pod("second", "n0"))
    time.sleep(0.3)
    assert "second" not in runner.started  # n0's one GPU is taken
    assert not _pod(cluster, "second")["spec"].get("nodeName")

    cluster.api.delete(pod_path(NAMESPACE, "first"))
    _wait("the deleted pod's container to be killed", lambda: first.killed)
    _wait("the second pod to start once the GPU is free", lambda: runner.started.get("second"))


def test_fleet_mode_writes_bypass_http_and_http_mode_counts_them(
        sim: tuple[SimulatedCluster, ScriptedRunner], request: pytest.FixtureRequest) -> None:
    cluster, runner = sim
    emulator = cluster.server.emulator
    emulator.reset_stats()
    cluster.api.create(pod_path(NAMESPACE), _probe_pod("p", "n1"))
    _wait("the container to start", lambda: runner.started.get("p")).code = 0
    _wait("phase Succeeded", lambda: _in_phase(cluster, "p", "Succeeded"))

    counted = {(verb, plural, sub) for (verb, plural, sub), n in emulator.stats().items() if n}
    kubelet_writes = {("patch", "pods", None), ("patch", "pods", "status")}
    if request.node.callspec.params["sim"] == "fleet":
        assert not counted & kubelet_writes
        assert ("list", "pods", None) not in counted  # it watches; it does not poll
    else:
        assert kubelet_writes <= counted


def test_the_scheduler_prefilter_takes_the_nodes_a_pod_names_and_only_those() -> None:
    assert affinity_node_names(_probe_pod("p", "n7")) == ["n7"]
    assert affinity_node_names({"spec": {}}) is None
    by_label = {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]}]}}}}}
    assert affinity_node_names(by_label) is None  # any node with the label may do
    two_terms = {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}]}}}}}
    assert affinity_node_names(two_terms) == ["a", "b", "c"]
    not_in = {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "NotIn",
                                                "values": ["a"]}]}]}}}}}
    assert affinity_node_names(not_in) is None


def test_fleet_watches_that_cannot_list_fail_the_start_and_leave_no_thread_behind() -> None:
    server = EmulatorServer()
    server.start()
    kube = KubeClient.for_url(server.url)
    try:
        server.emulator.faults.add(FaultRule(action="list", resource="pods", status=500, count=None))
        watches = _Watches(kube)
        with pytest.raises(RuntimeError, match="could not list pods and nodes within 1 s"):
            watches.start(timeout=1.0)
        assert not any(t.name == "sim-kubelet-watches" and t.is_alive() for t in threading.enumerate())
    finally:
        kube.close()
        server.stop()

"""Two operator replicas as the chart runs them (kopf peering, start-time priorities): one acts, one waits.

Both replicas are the real operator against the same emulated cluster, each with its own
token so the API server can tell their calls apart. The younger replica must make no write
while the older one lives, and must take over when the older one stops (a rolling update or
a lost pod), so that no Qualification is left unattended and none is acted on twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from accelqual.adapters.metrics import Metrics
from accelqual.operator_main import seniority_priority
from accelqual.sim.cluster import OperatorThread, SimulatedCluster
from accelqual.sim.emulator import ClusterEmulator
from accelqual.sim.modelled import ModelledProbeRunner
from accelqual.sim.server import EmulatorServer
from accelqual.sim.simulate import fleet, qualification
from kmock import Request

PEERING = "accelqual"
WRITES = ("create", "patch", "update", "delete")


@attrs.define(kw_only=True)
class ByToken(ClusterEmulator):
    """Records (verb, resource) of every request by bearer token."""

    writes: dict[str, set[tuple[str, str]]] = attrs.field(init=False, factory=dict)

    async def _serve(self, request: Request, verb: str) -> Any:
        token = str(request.headers.get("Authorization", "")).removeprefix("Bearer ")
        if verb in WRITES and request.resource is not None:
            self.writes.setdefault(token, set()).add((verb, str(request.resource.plural)))
        return await super()._serve(request, verb)


def _kubeconfig(cluster: SimulatedCluster, path: Path, token: str) -> Path:
    cluster.server.write_kubeconfig(path)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    config["users"][0]["user"]["token"] = token
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _replica(cluster: SimulatedCluster, kubeconfig: Path, started: float) -> OperatorThread:
    options = replace(cluster.options(), server=None, kubeconfig=str(kubeconfig), peering=PEERING,
                      priority=seniority_priority(started))
    return OperatorThread(options, metrics=Metrics()).start()


def _wait_for_peers(emulator: ByToken, count: int) -> None:
    deadline = time.monotonic() + 30
    while len((emulator.get("clusterkopfpeerings", None, PEERING) or {}).get("status") or {}) != count:
        assert time.monotonic() < deadline, f"the peering object never listed {count} live replicas"
        time.sleep(0.1)


@pytest.fixture
def two_replicas(tmp_path: Path) -> Iterator[tuple[ByToken, SimulatedCluster, OperatorThread, OperatorThread]]:
    emulator = ByToken()
    cluster = SimulatedCluster(runner=ModelledProbeRunner(duration=0.3), kubelet_interval=0.05)
    cluster.server = EmulatorServer(emulator)
    replicas: list[OperatorThread] = []
    with cluster:
        emulator.create("clusterkopfpeerings", {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
                                                "metadata": {"name": PEERING}})
        nodes, _ = fleet(4, 1, 7)
        cluster.add_nodes(nodes)
        now = time.time()
        replicas.append(_replica(cluster, _kubeconfig(cluster, tmp_path / "older", "older"), now))
        _wait_for_peers(emulator, 1)
        replicas.append(_replica(cluster, _kubeconfig(cluster, tmp_path / "younger", "younger"), now + 1))
        _wait_for_peers(emulator, 2)
        try:
            yield emulator, cluster, replicas[0], replicas[1]
        finally:
            for replica in replicas:
                replica.stop()


def _qualify(cluster: SimulatedCluster, name: str) -> None:
    cluster.apply(qualification(cluster.report_spec(), name=name))
    done = cluster.wait_for_phase(name, timeout=120)
    assert done["status"]["phase"] == "Completed", done["status"]


def test_only_the_older_replica_acts_and_the_younger_takes_over_when_it_stops(
        two_replicas: tuple[ByToken, SimulatedCluster, OperatorThread, OperatorThread]) -> None:
    emulator, cluster, older, _ = two_replicas

    _qualify(cluster, "first")
    younger_writes = {w for w in emulator.writes.get("younger", set()) if w[1] != "clusterkopfpeerings"}
    assert younger_writes == set()
    assert {("create", "pods"), ("patch", "nodes"), ("patch", "qualifications")} <= emulator.writes["older"]

    older.stop()
    _wait_for_peers(emulator, 1)  # a clean stop removes the older replica's record at once
    emulator.writes.clear()
    _qualify(cluster, "second")

    assert {("create", "pods"), ("patch", "nodes")} <= emulator.writes["younger"]
    assert "older" not in emulator.writes

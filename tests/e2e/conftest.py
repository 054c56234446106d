"""End-to-end fixtures: the real kopf operator against the emulated API (or a real cluster).

By default every test gets a fresh `SimulatedCluster` (emulator, simulated kubelet, local S3)
whose probe containers are modelled (fast, scriptable per node). Tests marked `realcluster`
run on the simulator too, and against the real cluster in `ACCELQUAL_E2E_KUBECONFIG` when it
is set (`tests/support/realcluster.py` says how; README "Testing against a real cluster").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from accelqual.sim.cluster import SimulatedCluster
from accelqual.sim.modelled import ModelledProbeRunner

from tests.support.realcluster import RealCluster, configured

#: What an end-to-end test marked `realcluster` drives: the simulator, or a real cluster.
E2ECluster = SimulatedCluster | RealCluster


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    for name in ("kopf", "aiohttp", "urllib3", "botocore", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[E2ECluster]:
    kubeconfig = configured()
    if kubeconfig and request.node.get_closest_marker("realcluster"):
        with RealCluster(kubeconfig) as real:
            yield real
        return
    with SimulatedCluster(runner=ModelledProbeRunner(duration=0.3), kubelet_interval=0.05) as sim:
        yield sim

"""End-to-end fixtures: the real kopf operator against the emulated API (or a real cluster).

By default every test gets a fresh `SimulatedCluster` (emulator, simulated kubelet, local S3)
whose probe containers are modelled (fast, scriptable per node). Tests marked `realcluster`
also run against the cluster in `ACCELQUAL_E2E_KUBECONFIG` when it is set (see docs/testing.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from accelqual.sim.cluster import SimulatedCluster
from accelqual.sim.modelled import ModelledProbeRunner


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    for name in ("kopf", "aiohttp", "urllib3", "botocore", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture
def cluster() -> Iterator[SimulatedCluster]:
    with SimulatedCluster(runner=ModelledProbeRunner(duration=0.3), kubelet_interval=0.05) as sim:
        yield sim

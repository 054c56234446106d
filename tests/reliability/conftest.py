"""Fixtures of the fault matrix: quiet third-party loggers, and recording a scenario's counters on its test."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict

import pytest

from tests.reliability.harness import Counters
from tests.reliability.matrix import Scenario

ScenarioRecorder = Callable[[Scenario, Counters], None]


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    for name in ("kopf", "aiohttp", "urllib3", "botocore", "werkzeug"):
        logging.getLogger(name).setLevel(logging.WARNING)


@pytest.fixture
def record_scenario(request: pytest.FixtureRequest) -> ScenarioRecorder:
    """Attach a scenario's counters to its test report (read by `tests.reliability.recorder`)."""
    def record(scenario: Scenario, counters: Counters) -> None:
        request.node.user_properties.append(("reliability-scenario", {
            "id": scenario.id, "injected": scenario.injected, "expected": scenario.expected, **asdict(counters)}))
    return record

"""Every shipped rehearsal scenario (examples/scenarios/) runs against the real operator and shows its expected outcome.

The two acceptance scenarios of the fleet policies also get their outcome spelled out here:
a day of a 200-node pool with gated joiners and a 6-hourly schedule, and a bad driver that
must halt a run at the failure budget. Concurrency is judged from what the API server saw
(probe pods per Qualification), never from the operator's own numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from accelqual.constants import DEFAULT_FAILURE_TAINT_KEY, DEFAULT_GATE_TAINT_KEY
from accelqual.sim.scenario import load_scenario
from accelqual.sim.scenario_cli import rehearse

SCENARIOS = Path(__file__).resolve().parents[2] / "examples" / "scenarios"
ACCEPTANCE = ("fleet-day", "bad-driver")
OTHERS = sorted(p for p in SCENARIOS.glob("*.yaml") if p.stem not in ACCEPTANCE)


def play(name: str) -> dict[str, Any]:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")
    assert scenario.expect is not None, "a shipped scenario states the outcome it rehearses"
    outcome = rehearse(scenario)
    assert outcome["expectations"], "the expectations were checked"
    failed = [f"{e['expectation']} ({e['detail']})" for e in outcome["expectations"] if not e["ok"]]
    assert not failed, f"{name}: {failed}"
    return outcome


def carrying(outcome: dict[str, Any], key: str) -> set[str]:
    return {n for n, node in outcome["final"]["nodes"].items() if any(t.startswith(f"{key}") for t in node["taints"])}


@pytest.mark.parametrize("path", OTHERS, ids=[p.stem for p in OTHERS])
def test_shipped_scenario_shows_its_expected_outcome(path: Path) -> None:
    play(path.stem)


def test_a_day_of_a_200_node_pool_releases_exactly_the_healthy_joiners_within_max_concurrent() -> None:
    outcome = play("fleet-day")

    joiners = {f"joiners-{i:03d}" for i in range(45)}
    faulty = {f"joiners-faulty-{i:03d}" for i in range(5)}
    released = {e["node"] for e in outcome["timeline"]
                if e["change"] == "taintRemoved" and e["taint"].startswith(DEFAULT_GATE_TAINT_KEY)}
    assert released == joiners
    assert carrying(outcome, DEFAULT_GATE_TAINT_KEY) == faulty
    assert carrying(outcome, DEFAULT_FAILURE_TAINT_KEY) == faulty
    assert len(outcome["final"]["nodes"]) == 200
    assert len(outcome["runs"]["recheck"]) == 4
    for name, seen in outcome["concurrency"].items():
        assert seen["violations"] == [], f"{name} had more probes at once than maxConcurrent"
    # recheck's maxConcurrent is 20% of a pool that grows from 150 to 200 nodes.
    assert outcome["concurrency"]["recheck"]["maxActive"] <= 40


def test_a_bad_driver_on_60_percent_of_the_pool_halts_at_the_budget_naming_the_driver() -> None:
    outcome = play("bad-driver")

    status = outcome["final"]["qualifications"]["delivery"]
    assert status["phase"] == "Halted"
    halted = next(c for c in status["conditions"] if c["type"] == "Halted")
    assert "560.0-rc1" in halted["message"] and "func.dtypes" in halted["message"]
    budget = 10  # 20% of 50
    assert 0 < len(carrying(outcome, DEFAULT_FAILURE_TAINT_KEY)) <= budget
    assert carrying(outcome, DEFAULT_FAILURE_TAINT_KEY) <= {f"rc-driver-{i:03d}" for i in range(30)}
    assert [e["reason"] for e in outcome["events"]].count("FailureBudgetExceeded") == 1

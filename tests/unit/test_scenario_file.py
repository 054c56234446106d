"""Scenario files: validation with one-line errors, durations, expansion, and the expectation checks (no cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from accelqual.sim.expectations import check
from accelqual.sim.scenario import Count, Scenario, ScenarioError, load_scenario, parse_duration
from accelqual.sim.scenario_cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "scenarios"

MINIMAL: dict[str, Any] = {
    "name": "minimal",
    "timing": {"duration": "1h"},
    "nodes": [{"name": "pool", "count": 2, "labels": {"pool": "a"}}],
    "qualifications": [{"name": "q", "spec": {"nodeSelector": {"matchLabels": {"pool": "a"}}}}],
}


def write(tmp_path: Path, data: Any, text: str | None = None) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data), encoding="utf-8")
    return path


def with_(**changes: Any) -> dict[str, Any]:
    return {**MINIMAL, **changes}


@pytest.mark.parametrize(("text", "seconds"), [
    (90, 90.0), (1.5, 1.5), ("90s", 90.0), ("15m", 900.0), ("6h", 21600.0), ("1d", 86400.0), ("1h30m", 5400.0)])
def test_durations_are_seconds_or_unit_strings(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "1h 30m", -1, True, "m5"])
def test_what_is_not_a_duration_is_refused(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_every_shipped_scenario_is_valid_and_states_its_expected_outcome() -> None:
    paths = sorted(EXAMPLES.glob("*.yaml"))
    assert len(paths) >= 8
    for path in paths:
        scenario = load_scenario(path)
        assert scenario.expect is not None, path.name
        assert path.read_text(encoding="utf-8").startswith("#"), f"{path.name} explains itself in a comment"


@pytest.mark.parametrize(("data", "message"), [
    (with_(timing={"duration": "soon"}), "timing.duration: 'soon' is not a duration"),
    (with_(nodes=[{"name": "pool", "count": 2, "faults": ["slow-gpu=0.5"]}]), "nodes[0].faults: unknown fault"),
    (with_(nodes=[{"name": "pool", "count": 2, "profile": "b300"}]), "nodes[0].profile: unknown profile 'b300'"),
    (with_(nodes=[{"name": "Pool", "count": 2}]), "nodes[0].name: String should match pattern"),
    (with_(nodes=[{"name": "pool", "count": 0}]), "nodes[0].count: Input should be greater than or equal to 1"),
    (with_(nodes=[{"name": "pool", "count": 1, "colour": "red"}]), "nodes[0].colour: Extra inputs are not permitted"),
    (with_(qualifications=[{"name": "q", "spec": {"nodeSelector": {}}}]), "spec.nodeSelector is empty"),
    (with_(qualifications=[{"name": "q", "spec": {"nodeSelector": {"matchLabels": {"pool": "a"}},
                                                  "trigger": "Schedule"}}]), "trigger Schedule needs a schedule"),
    (with_(qualifications=[{"name": "q", "spec": {"nodeSelector": {"matchLabels": {"pool": "a"}},
                                                  "report": {"bucket": "mine"}}}]), "provided by the simulation"),
    (with_(events=[{"at": "1h", "action": "resume", "qualification": "nope"}]), "no qualification named 'nope'"),
    (with_(events=[{"at": "1h", "action": "deleteNodes", "nodes": ["ghost"]}]), "no node or group named 'ghost'"),
    (with_(events=[{"at": "1h", "action": "explode"}]), "events[0]: Input tag 'explode' found using 'action'"),
    (with_(expect={"phases": {"other": "Completed"}}), "expect.phases: no qualification named 'other'"),
    (with_(expect={"tainted": [{"key": "accelqual.io/failed", "nodes": ["ghost"]}]}), "no node or group named"),
])
def test_a_mistake_in_a_scenario_is_one_line_naming_the_field(tmp_path: Path, data: dict[str, Any],
                                                              message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(write(tmp_path, data))
    text = str(caught.value)
    assert message in text
    assert "\n" not in text and text.startswith(str(tmp_path))


def test_a_file_that_is_not_a_scenario_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(write(tmp_path, None, text="nodes: [\n"))
    with pytest.raises(ScenarioError, match="a mapping"):
        load_scenario(write(tmp_path, None, text="- just\n- a list\n"))
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")


def test_the_cli_exits_2_with_the_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, with_(timing={"duration": "soon"}))
    assert main(str(path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("accelqual simulate: ") and "timing.duration" in err and "\n" not in err


def test_groups_expand_to_their_node_names() -> None:
    scenario = Scenario.model_validate(with_(nodes=[{"name": "a", "count": 2}, {"name": "b", "count": 1}]))
    assert scenario.expand(["a", "b-000"]) == ["a-000", "a-001", "b-000"]


def test_counts_are_exact_or_ranges() -> None:
    assert Count.model_validate(3).accepts(3) and not Count.model_validate(3).accepts(4)
    between = Count.model_validate({"min": 1, "max": 2})
    assert [between.accepts(n) for n in (0, 1, 2, 3)] == [False, True, True, False]
    assert between.describe() == ">= 1 and <= 2"


def outcome(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "final": {"nodes": {"pool-000": {"verdict": None, "taints": [], "unschedulable": False},
                            "pool-001": {"verdict": "fail", "taints": ["accelqual.io/failed=true:NoSchedule"],
                                         "unschedulable": True}},
                  "qualifications": {"q": {"phase": "Completed", "conditions": [
                      {"type": "Degraded", "status": "True", "reason": "NodesFailed",
                       "message": "1 of 2 nodes failed"}]}}},
        "runs": {"q": [{"run_id": "r1", "started_at": "2026-03-02T00:00:00Z", "finished_at": "2026-03-02T01:00:00Z",
                        "summary": {"skipped": 1}},
                       {"run_id": "r2", "started_at": "2026-03-02T00:30:00Z", "finished_at": "2026-03-02T02:00:00Z",
                        "summary": {"skipped": 0}}]},
        "events": [{"reason": "QualificationFailed"}],
        "concurrency": {"q": {"maxActive": 3, "maxRunning": 2, "limit": 2,
                              "violations": [{"t": "2026-03-02T00:10:00Z", "active": 3, "running": 2, "limit": 2}]}},
        "touchedNodes": ["pool-001"],
        "probesStarted": 2,
    }
    base.update(changes)
    return base


def test_expectations_report_what_holds_and_what_does_not() -> None:
    scenario = Scenario.model_validate(with_(expect={
        "phases": {"q": "Completed"},
        "runs": {"q": 2},
        "verdicts": {"pass": 0, "fail": 1, "none": 1},
        "tainted": [{"key": "accelqual.io/failed", "nodes": ["pool-001"], "count": 1}],
        "untouched": ["pool-000"],
        "conditions": [{"qualification": "q", "type": "Degraded", "status": "True", "reason": "NodesFailed",
                        "messageContains": ["1 of 2"]}],
        "events": [{"reason": "QualificationFailed", "count": 1}, {"reason": "DryRun"}],
        "skipped": {"q": 1},
        "probesStarted": 2,
        "cordoned": ["pool-001"],
        "maxActive": {"q": 3},
        "maxRunning": {"q": {"max": 2}},
    }))
    results = {r.expectation: r for r in check(scenario, outcome())}
    failed = {name for name, r in results.items() if not r.ok}
    assert failed == {"runs of q never overlap", "maxConcurrent never exceeded", "Events with reason DryRun: >= 1"}
    assert "r2 started before r1 finished" in results["runs of q never overlap"].detail
    assert "3 probes at 2026-03-02T00:10:00Z with a limit of 2" in results["maxConcurrent never exceeded"].detail
    assert results["most q probes under test at once: 3"].ok
    assert len(results) == 18


def test_a_scenario_without_expectations_checks_nothing() -> None:
    assert check(Scenario.model_validate(MINIMAL), outcome()) == []

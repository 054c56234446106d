"""Modelled probe reports have the real probe's shape, so what the simulations measure is what a fleet costs.

The control-plane benchmark judges thousands of them: a report of one card with one value per
check (what the model once produced for 8-card nodes) costs a fraction of the real one.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from accelqual.planning.results import evaluate_pod
from accelqual.planning.snapshot import PodPhase
from accelqual.sim.kubelet import SimNode
from accelqual.sim.modelled import MEASURED, ModelledProbeRunner, modelled_report
from accelqual_probes.catalog import BY_ID, Suite, select
from accelqual_probes.profiles import BUILTIN
from accelqual_probes.schema import REPORT_MARKER, OverallVerdict, ProbeReport

from tests.support.reports import pod

PROFILE = BUILTIN["h100-sxm"]
STANDARD = list(select(Suite.STANDARD))
CHECKS_SOURCE = "\n".join(p.read_text() for p in
                          (Path(__file__).parents[2] / "probes" / "accelqual_probes" / "checks").glob("*.py"))


def modelled(devices: int, faults: list[str] | None = None, seed: int = 3) -> ProbeReport:
    node = SimNode(name="n1", labels={}, allocatable={}, faults=faults or [])
    return modelled_report(node, "h100-sxm", PROFILE, Suite.STANDARD, STANDARD, random.Random(seed), devices=devices)


def test_an_eight_card_report_measures_each_card_and_the_node_once() -> None:
    report = modelled(8)
    assert report.inventory.count == 8 and [d.index for d in report.inventory.devices] == list(range(8))
    checks = {c.id: c for c in report.checks}
    for check_id, shape in MEASURED.items():
        if check_id not in checks:
            continue
        seen = Counter((r.metric, r.device) for r in checks[check_id].readings())
        assert all(count == 1 for count in seen.values()), check_id
        for metric, _, per_device in shape:
            devices = {d for (name, d) in seen if name == metric}
            assert devices == (set(range(8)) if per_device else {None}), (check_id, metric)
    assert sum(len(list(c.readings())) for c in report.checks) > 400
    assert ProbeReport.parse_untrusted(report.to_json()) == report


def test_each_metric_of_the_shape_is_one_the_probe_measures() -> None:
    """A guard against drift: the probe's checks name every metric the model emits."""
    for check_id, shape in MEASURED.items():
        assert check_id in BY_ID
        for metric, _, _ in shape:
            literal = f'"{metric}"' in CHECKS_SOURCE
            formatted = "." in metric and f'f"{metric.split(".")[0]}.{{' in CHECKS_SOURCE
            assert literal or formatted or metric == "samples_per_s_all", (check_id, metric)


@pytest.mark.parametrize("devices", [1, 8])
@pytest.mark.parametrize(("faults", "failed"), [
    ([], ()),
    (["slow-memory=0.5"], ("perf.membw",)),
    (["missing-device"], ("gen.inventory",)),
    (["bad-dtype=fp16"], ("func.dtypes",)),
    (["residual-memory"], ("sec.residual",)),
    (["memory-shortfall=0.5"], ("gen.memory.capacity",)),
    (["corrupt=0.01"], ("func.dtypes", "rel.stress")),
])
def test_the_operator_judges_a_modelled_report_as_the_model_does(devices: int, faults: list[str],
                                                                 failed: tuple[str, ...]) -> None:
    report = modelled(devices, faults)
    code = 0 if report.verdict is OverallVerdict.PASS else 1
    result = evaluate_pod(pod("n1", "r1", exit=code, phase=PodPhase.SUCCEEDED if code == 0 else PodPhase.FAILED),
                          f"progress\n{REPORT_MARKER}{report.to_json()}\n", None, expected_checks=tuple(STANDARD),
                          profile=PROFILE)
    assert result.verdict is report.verdict
    assert result.failed_checks == failed
    assert (result.verdict is OverallVerdict.PASS) == (not failed)


def test_a_missing_card_is_measured_on_the_cards_left_and_fails_the_count() -> None:
    report = modelled(8, ["missing-device"])
    assert report.inventory.count == 7
    inventory = next(c for c in report.checks if c.id == "gen.inventory")
    assert "7" in inventory.reason and "8" in inventory.reason
    membw = next(c for c in report.checks if c.id == "perf.membw")
    assert {r.device for r in membw.readings()} == set(range(7))


def test_the_runner_models_the_cards_the_operator_tells_the_probe_to_expect() -> None:
    runner = ModelledProbeRunner(duration=0.0, seed=1, profiles=BUILTIN)
    manifest = {"spec": {"containers": [{"args": ["probe", "--suite", "standard", "--profile", "h100-sxm",
                                                  "--expect-devices", "4", "--pod"]}]}}
    running = runner.start(manifest, SimNode(name="n1", labels={}, allocatable={}, faults=[]))
    line = next(x for x in running.output().splitlines() if x.startswith(REPORT_MARKER))
    report = ProbeReport.parse_untrusted(line[len(REPORT_MARKER):])
    assert report.inventory.count == 4
    assert report.verdict is OverallVerdict.PASS

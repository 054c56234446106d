"""How a check's measured values are held in the report: grouped per metric, each value with its card."""

from __future__ import annotations

import json

import pytest
from accelqual_probes.evidence import Evidence
from accelqual_probes.schema import (
    MAX_MEASUREMENTS,
    Category,
    CheckResult,
    Measurement,
    Reading,
    ReportError,
    Verdict,
    group_readings,
)
from pydantic import ValidationError


def test_values_are_grouped_per_metric_unit_and_kind_in_the_order_first_seen() -> None:
    evidence = Evidence()
    for device in (0, 1):
        evidence.measure("tflops", 100.0 + device, "TFLOPS", device)
        evidence.measure("fraction_of_nominal", 0.8 + device / 100, "", device)
    evidence.measure("tflops", 201.0, "TFLOPS")  # the node as a whole
    evidence.measure("tflops", 0.2, "PFLOPS", 2)  # another unit is another measurement
    assert evidence.measurements == [
        Measurement(metric="tflops", values=[100.0, 101.0], unit="TFLOPS", devices=[0, 1]),
        Measurement(metric="fraction_of_nominal", values=[0.8, 0.81], devices=[0, 1]),
        Measurement(metric="tflops", values=[201.0], unit="TFLOPS"),
        Measurement(metric="tflops", values=[0.2], unit="PFLOPS", devices=[2]),
    ]
    check = CheckResult(id="perf.gemm.fp32", category=Category.PERFORMANCE, verdict=Verdict.PASS,
                        measurements=evidence.measurements)
    assert sorted(check.readings()) == sorted(evidence.readings)
    assert check.values_of("tflops") == [100.0, 101.0, 201.0, 0.2]
    assert check.values_of("absent") == []


def test_a_check_keeps_at_most_its_limit_of_values_and_fails_on_a_non_finite_one() -> None:
    evidence = Evidence()
    for i in range(MAX_MEASUREMENTS + 10):
        evidence.measure("latency_us", float(i), "us", i % 8)
    evidence.measure("latency_us", float("nan"), "us", 3)
    assert sum(len(m.values) for m in evidence.measurements) == MAX_MEASUREMENTS
    assert [f.verdict for f in evidence.findings] == [Verdict.FAIL]
    assert "device 3" in evidence.findings[0].reason


def test_the_wire_form_names_each_card_once_per_value_and_round_trips() -> None:
    check = CheckResult(id="perf.membw", category=Category.PERFORMANCE, verdict=Verdict.PASS,
                        measurements=group_readings([Reading("gbps", 900.0, "GB/s", 0),
                                                     Reading("gbps", 910.0, "GB/s", 1), Reading("cards", 2.0)]))
    doc = check.to_json_dict()
    assert doc["measurements"] == [{"metric": "gbps", "values": [900.0, 910.0], "unit": "GB/s", "devices": [0, 1]},
                                   {"metric": "cards", "values": [2.0], "unit": ""}]
    assert CheckResult.model_validate_json(json.dumps(doc)) == check


@pytest.mark.parametrize("bad", [
    {"metric": "gbps", "values": [1.0, 2.0], "devices": [0]},  # a card short
    {"metric": "gbps", "values": [1.0], "devices": [0, 1]},  # a card too many
    {"metric": "gbps", "values": []},  # nothing measured
    {"metric": "gbps", "values": [1.0], "devices": []},  # a card list naming no card
    {"metric": "gbps", "values": [1.0], "device": 0},  # the first version's field
    {"metric": "gbps", "values": [float("nan")]},
])
def test_a_measurement_that_does_not_fit_together_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises((ValidationError, ReportError)):
        CheckResult.model_validate({"id": "perf.membw", "category": "performance", "verdict": "pass",
                                    "measurements": [bad]})


def test_whatever_a_check_records_makes_a_valid_report() -> None:
    """A plugin check may measure hundreds of metrics: the report still validates at the operator."""
    evidence = Evidence()
    for i in range(MAX_MEASUREMENTS + 10):
        evidence.measure(f"metric_{i}", 1.0)
    check = CheckResult(id="ext.many", category=Category.FUNCTION, verdict=Verdict.PASS,
                        measurements=evidence.measurements)
    assert len(check.measurements) == MAX_MEASUREMENTS
    assert CheckResult.model_validate_json(json.dumps(check.to_json_dict())) == check

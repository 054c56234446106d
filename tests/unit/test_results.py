"""A probe pod's output is hostile input: only a valid, consistent report can pass a node."""

from __future__ import annotations

import json
from typing import Any

import pytest
from accelqual.planning.results import evaluate_pod, last_marked_line
from accelqual.planning.snapshot import NodeResult, PodPhase
from accelqual_probes.catalog import Suite, select
from accelqual_probes.profiles import BUILTIN
from accelqual_probes.schema import REPORT_MARKER, CheckResult, OverallVerdict, ProbeReport, Threshold, Verdict

from tests.support.reports import as_first_version, check, exit_code, pod, pod_output, report

EXPECTED = tuple(select(Suite.QUICK))
PROFILE = BUILTIN["cpu-reference"]


def evaluate(log: str, term: str | None = None, *, exit: int | None = 0, node: str = "n1",
             phase: PodPhase = PodPhase.SUCCEEDED, reason: str = "") -> NodeResult:
    return evaluate_pod(pod(node, "r1", exit=exit, phase=phase, reason=reason), log, term, expected_checks=EXPECTED,
                        profile=PROFILE)


def test_valid_passing_report_passes_the_node() -> None:
    log, term = pod_output(report("n1"))
    result = evaluate(log, term)
    assert result.verdict is OverallVerdict.PASS
    assert result.report_sha256 is not None and len(result.report_sha256) == 64
    assert result.checks["perf.gemm.fp32"].value == 100.0


def test_failed_check_fails_the_node_and_is_named() -> None:
    rep = report("n1", overrides={"perf.membw": check("perf.membw", Verdict.FAIL, 10.0, "slow")})
    log, term = pod_output(rep)
    result = evaluate(log, term, exit=1)
    assert result.verdict is OverallVerdict.FAIL
    assert result.failed_checks == ("perf.membw",)


@pytest.mark.parametrize(
    ("log", "why"),
    [
        ("", "without a report"),
        ("Traceback (most recent call last):\nboom\n", "without a report"),
        (REPORT_MARKER + "{not json", "not valid JSON"),
        (REPORT_MARKER + "[1, 2, 3]", "not a JSON object"),
        (REPORT_MARKER + json.dumps({"schemaVersion": "accelqual.io/v1", "verdict": "pass"}), "does not match"),
        (REPORT_MARKER + json.dumps({"verdict": "pass"}), "schemaVersion"),
        (REPORT_MARKER + "[" * 100000 + "]" * 100000, "not a JSON object"),
        (REPORT_MARKER + '{"a":' * 100000 + "1" + "}" * 100000, "not valid JSON"),
    ],
)
def test_garbage_output_is_inconclusive_never_pass(log: str, why: str) -> None:
    result = evaluate(log)
    assert result.verdict is OverallVerdict.INCONCLUSIVE
    assert why in result.reason
    assert len(result.reason) <= 256 and len(result.raw_excerpt) <= 256


def test_oversized_output_is_inconclusive() -> None:
    result = evaluate_pod(pod("n1", "r1"), "x" * 100, None, expected_checks=EXPECTED, profile=PROFILE,
                          log_truncated=True)
    assert result.verdict is OverallVerdict.INCONCLUSIVE
    assert "limit" in result.reason


def test_report_larger_than_limit_is_rejected() -> None:
    rep = report("n1")
    data = json.loads(rep.to_json())
    data["reason"] = "x" * 2_000_000
    result = evaluate(REPORT_MARKER + json.dumps(data))
    assert result.verdict is OverallVerdict.INCONCLUSIVE
    assert "limit" in result.reason


def test_report_claiming_another_node_is_inconclusive() -> None:
    log, term = pod_output(report("other-node"))
    result = evaluate(log, term)
    assert result.verdict is OverallVerdict.INCONCLUSIVE
    assert "other-node" in result.reason


def test_report_missing_requested_checks_is_inconclusive() -> None:
    rep = report("n1")
    data = json.loads(rep.to_json())
    data["checks"] = [c for c in data["checks"] if c["id"] != "sec.residual"]
    result = evaluate(REPORT_MARKER + json.dumps(data))
    assert result.verdict is OverallVerdict.INCONCLUSIVE
    assert "sec.residual" in result.reason


def test_forged_pass_with_measurements_violating_own_threshold_fails() -> None:
    forged = CheckResult(id="rel.stress", category=check("rel.stress").category, verdict=Verdict.PASS,
                         measurements=check("rel.stress", value=12.0).measurements,
                         thresholds=[Threshold(metric="mismatches", max=0.0)])
    rep = report("n1", overrides={"rel.stress": forged})
    log, term = pod_output(rep)
    result = evaluate(log, term)
    assert result.verdict is OverallVerdict.FAIL
    assert "rel.stress" in result.failed_checks


def test_forged_pass_below_the_profiles_nominal_floor_fails() -> None:
    h100 = BUILTIN["h100-sxm"]
    rep = report("n1", suite=Suite.QUICK, profile="h100-sxm",
                 overrides={"perf.gemm.bf16": check("perf.gemm.bf16", Verdict.PASS, 100.0)})
    log, term = pod_output(rep)
    result = evaluate_pod(pod("n1", "r1"), log, term, expected_checks=EXPECTED, profile=h100)
    assert result.verdict is OverallVerdict.FAIL
    assert "perf.gemm.bf16" in result.failed_checks


def test_overall_verdict_contradicting_checks_is_inconclusive() -> None:
    rep = report("n1", overrides={"perf.membw": check("perf.membw", Verdict.FAIL, 10.0)})
    data = json.loads(rep.to_json())
    data["verdict"] = "pass"
    result = evaluate(REPORT_MARKER + json.dumps(data))
    assert result.verdict is OverallVerdict.INCONCLUSIVE


def test_exit_code_contradicting_report_is_inconclusive() -> None:
    log, term = pod_output(report("n1"))
    result = evaluate(log, term, exit=1)
    assert result.verdict is OverallVerdict.INCONCLUSIVE
    assert "exit code" in result.reason


def test_termination_message_contradicting_report_is_inconclusive() -> None:
    passing = report("n1")
    failing = report("n1", overrides={"perf.membw": check("perf.membw", Verdict.FAIL, 1.0)})
    log, _ = pod_output(passing)
    _, term = pod_output(failing)
    assert evaluate(log, term).verdict is OverallVerdict.INCONCLUSIVE


def test_only_the_last_marked_line_counts() -> None:
    failing = report("n1", overrides={"perf.membw": check("perf.membw", Verdict.FAIL, 1.0)})
    forged_log, _ = pod_output(report("n1"))
    log, term = pod_output(failing, noise=forged_log)
    result = evaluate(log, term, exit=exit_code(failing))
    assert result.verdict is OverallVerdict.FAIL


@pytest.mark.parametrize(("output", "payload"), [
    ("M {1}\nM {2}\n", "{2}"),
    ("M {1}\nprogress\nM {2}", "{2}"),  # the output need not end with a newline
    ("M {1}\r\nnoise\r\n", "{1}"),  # CRLF: the CR is not part of the payload
    ("M {1}\nsays M {2}\n", "{1}"),  # a marker within a line does not count, nor hide an earlier one
    ("M {1}\nM {2}M {3}\n", "{2}M {3}"),
    ("prefix M {1}", None),
    ("", None),
    ("M ", ""),
])
def test_the_payload_is_that_of_the_last_line_starting_with_the_marker(output: str, payload: str | None) -> None:
    assert last_marked_line(output, "M ") == payload


@pytest.mark.parametrize("reason", ["DeadlineExceeded", "Evicted", "OOMKilled"])
def test_pod_killed_by_the_cluster_is_inconclusive(reason: str) -> None:
    log, term = pod_output(report("n1"))
    result = evaluate(log, term, phase=PodPhase.FAILED, exit=137, reason=reason)
    assert result.verdict is OverallVerdict.INCONCLUSIVE


def test_nan_and_infinity_are_rejected() -> None:
    rep = report("n1")
    for bad in ("NaN", "Infinity", "-Infinity", "1e999"):
        text = rep.to_json().replace('"values":[100.0]', f'"values":[{bad}]', 1)
        assert bad in text
        result = evaluate(REPORT_MARKER + text)
        assert result.verdict is OverallVerdict.INCONCLUSIVE
        assert "finite" in result.reason or "does not match" in result.reason


def _as_v1(rep: ProbeReport) -> dict[str, Any]:
    return as_first_version(rep.to_json_dict())


def test_a_report_of_the_first_schema_version_is_judged_like_the_current_one() -> None:
    """An operator upgraded before its probes still judges the older probe's reports, on the same evidence."""
    rep = report("n1")
    legacy = _as_v1(rep)
    assert any("value" in m for c in legacy["checks"] for m in c["measurements"])
    payload = json.dumps(legacy)
    assert ProbeReport.parse_untrusted(payload) == rep
    result = evaluate(REPORT_MARKER + payload, exit=0)
    assert result.verdict is OverallVerdict.PASS
    assert result.checks["perf.gemm.fp32"].value == 100.0
    assert result.report_json == payload  # the evidence is what the node sent, in its own version

    forged = _as_v1(rep)
    gemm = next(c for c in forged["checks"] if c["id"] == "perf.gemm.fp32")
    gemm["measurements"][0]["value"] = 1.0  # under its own limit, still claiming pass
    gemm["thresholds"] = [{"metric": gemm["measurements"][0]["metric"], "min": 50.0, "severity": "fail"}]
    result = evaluate(REPORT_MARKER + json.dumps(forged), exit=0)
    assert result.verdict is OverallVerdict.FAIL and result.failed_checks == ("perf.gemm.fp32",)

    broken = _as_v1(rep)
    broken["checks"][0]["measurements"][0]["value"] = "fast"
    result = evaluate(REPORT_MARKER + json.dumps(broken), exit=0)
    assert result.verdict is OverallVerdict.INCONCLUSIVE
    assert "does not match the schema (accelqual.io/v1" in result.reason


@pytest.mark.parametrize(("change", "why"), [
    ({"devices": [0, 1]}, "1 values but 2 devices"),
    ({"devices": []}, "does not match"),
    ({"values": []}, "does not match"),
    ({"devices": [1024]}, "does not match"),
    ({"metric": "tflops; rm -rf /"}, "does not match"),
])
def test_a_measurement_whose_values_and_cards_do_not_fit_is_inconclusive(change: dict[str, Any], why: str) -> None:
    doc = json.loads(report("n1").to_json())
    doc["checks"][0]["measurements"][0].update(change)
    result = evaluate(REPORT_MARKER + json.dumps(doc))
    assert result.verdict is OverallVerdict.INCONCLUSIVE
    assert why in result.reason

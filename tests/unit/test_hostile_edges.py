"""Regressions found by the fuzz suites (tests/fuzz) and the fault matrix (tests/reliability), one test each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from accelqual.constants import ConditionType, Reason
from accelqual.models import Condition, ConditionStatus, QualificationStatus
from accelqual.planning.conditions import set_condition
from accelqual.planning.naming import event_name, label_value
from accelqual.planning.results import evaluate_pod
from accelqual.planning.snapshot import PodPhase, ProbePodInfo
from accelqual.planning.validation import SpecProblem, validate_spec
from accelqual.planning.views import pod_age
from accelqual_probes.catalog import Suite, select
from accelqual_probes.profiles import BUILTIN
from accelqual_probes.schema import OverallVerdict, Verdict

from tests.support.reports import T0, check, pod, pod_output, report

EXPECTED = tuple(select(Suite.QUICK))


def _judge(rep_overrides: dict[str, object] | None = None, *, profile: str = "cpu-reference", exit: int = 0,
           phase: PodPhase = PodPhase.SUCCEEDED) -> tuple[OverallVerdict, str]:
    rep = report("n1", profile=profile)
    if rep_overrides:
        rep = rep.model_copy(update=rep_overrides)
    log, term = pod_output(rep)
    result = evaluate_pod(pod("n1", "r1", exit=exit, phase=phase), log, term, expected_checks=EXPECTED,
                          profile=BUILTIN[profile])
    return result.verdict, result.reason


def test_a_negative_measurement_is_not_evidence() -> None:
    rep = report("n1", overrides={"rel.stress": check("rel.stress", value=-17.0)})
    log, term = pod_output(rep)
    result = evaluate_pod(pod("n1", "r1"), log, term, expected_checks=EXPECTED, profile=BUILTIN["cpu-reference"])
    assert result.verdict is OverallVerdict.INCONCLUSIVE
    assert "negative mismatches" in result.reason


def test_a_card_measuring_above_its_nominal_peak_is_not_evidence() -> None:
    h100 = BUILTIN["h100-sxm"]
    rep = report("n1", profile="h100-sxm", overrides={
        "perf.gemm.bf16": check("perf.gemm.bf16", value=10 * 989.5),
        "gen.memory.capacity": check("gen.memory.capacity", value=79.0),
        "perf.gemm.fp32": check("perf.gemm.fp32", value=60.0), "perf.membw": check("perf.membw", value=3000.0)})
    log, term = pod_output(rep)
    result = evaluate_pod(pod("n1", "r1"), log, term, expected_checks=EXPECTED, profile=h100)
    assert result.verdict is OverallVerdict.INCONCLUSIVE
    assert "more than 1.5 x the nominal bf16 peak" in result.reason


def test_absolute_limits_hold_on_a_reference_relative_profile() -> None:
    """cpu-reference's fractions are of an in-run reference; 'no mismatches' holds all the same."""
    rep = report("n1", overrides={"rel.stress": check("rel.stress", Verdict.PASS, value=17.0)})
    log, term = pod_output(rep)
    result = evaluate_pod(pod("n1", "r1"), log, term, expected_checks=EXPECTED, profile=BUILTIN["cpu-reference"])
    assert result.verdict is OverallVerdict.FAIL
    assert result.failed_checks == ("rel.stress",)


@pytest.mark.parametrize(("exit", "phase"), [(137, PodPhase.FAILED), (1, PodPhase.FAILED), (0, PodPhase.FAILED)])
def test_a_passing_report_from_a_killed_or_failed_container_does_not_pass(exit: int, phase: PodPhase) -> None:
    verdict, reason = _judge(exit=exit, phase=phase)
    assert verdict is OverallVerdict.INCONCLUSIVE
    assert "exit code" in reason


def test_names_the_report_gives_are_repeated_printable_and_short() -> None:
    verdict, _ = _judge({"profile": "cpu\u202ereference\x00" + "x" * 200})
    rep = report("n1").model_copy(update={"profile": "cpu\u202e\x00"})
    log, term = pod_output(rep)
    result = evaluate_pod(pod("n1", "r1"), log, term, expected_checks=EXPECTED, profile=BUILTIN["cpu-reference"])
    assert verdict is OverallVerdict.PASS
    assert result.profile == "cpu??"


def test_event_names_of_long_names_are_valid_dns_subdomains() -> None:
    name = "a" * 39 + ".b"  # the 40th character becomes '-'
    assert event_name(name, "RunStarted", "r/started").split(".aq-")[0] == "a" * 39
    assert label_value("\ud800") and label_value("\ud800") != label_value("\ud801")


def test_conditions_someone_else_added_are_dropped_so_the_status_stays_valid() -> None:
    status = QualificationStatus(conditions=[Condition(type=f"Theirs{i}", status=ConditionStatus.TRUE, reason="X")
                                             for i in range(8)])
    now = datetime(2026, 11, 29, tzinfo=UTC)
    for kind in ConditionType:
        set_condition(status, kind, True, Reason.SPEC_VALID, "", now, 1)
    assert [c.type for c in status.conditions] == [t.value for t in ConditionType]
    QualificationStatus.model_validate(status.model_dump(mode="json", by_alias=True))


@pytest.mark.parametrize("raw", [None, [], "spec", 3])
def test_a_spec_that_is_not_an_object_is_refused(raw: object) -> None:
    problem = validate_spec(raw, {})  # type: ignore[arg-type]
    assert isinstance(problem, SpecProblem)
    assert problem.reason is Reason.INVALID_SPEC


def test_a_pods_age_is_never_more_than_the_operator_watched_it() -> None:
    """A clock stepped two hours forward must not make a probe that just started look overdue."""
    running = ProbePodInfo(name="p", node="n", run_id="r", phase=PodPhase.RUNNING, started_at=T0,
                           observed_seconds=30.0)
    assert pod_age(running, T0, T0 + timedelta(hours=2)) == timedelta(seconds=30)
    unobserved = ProbePodInfo(name="p", node="n", run_id="r", phase=PodPhase.RUNNING, started_at=T0)
    assert pod_age(unobserved, T0, T0 + timedelta(hours=2)) == timedelta(hours=2)

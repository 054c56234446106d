"""Fuzzing probe output: whatever a node prints, the operator never passes it on a bad report, never crashes,
and writes only bounded, clean text (status, node marks, Events, summary) from it."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from accelqual.planning.snapshot import NodeResult, PodPhase
from accelqual_probes.catalog import BY_ID
from accelqual_probes.profiles import BUILTIN
from accelqual_probes.schema import REPORT_MARKER, VERDICT_MARKER, OverallVerdict, ProbeReport
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import FuzzRecorder
from tests.fuzz.handler_path import check_writes, clean, judge, plan_for, probe_pod
from tests.fuzz.strategies import dns_subdomains, hostile_outputs, json_values, tricky_text
from tests.support.reports import report

NODE = "node-0"
HONEST = report(NODE).to_json_dict()
Doc = dict[str, Any]


def output(doc: Doc, *, allow_nan: bool = False, ascii_only: bool = True) -> str:
    return f"progress\n{REPORT_MARKER}{json.dumps(doc, allow_nan=allow_nan, ensure_ascii=ascii_only)}\n"


def termination(verdict: str = "pass") -> str:
    return VERDICT_MARKER + json.dumps({"verdict": verdict})


def _checks_with_values(doc: Doc) -> list[int]:
    return [i for i, c in enumerate(doc["checks"]) if c.get("measurements")]


# --- tampering with an honest report ------------------------------------------------------------------
# Each strategy returns (log, termination, exit code, whether the node must not pass, what was done).

Tampered = tuple[str, str | None, int | None, bool, str]


@st.composite
def other_node(draw: st.DrawFn) -> Tampered:
    claim = draw(st.one_of(dns_subdomains(), tricky_text(60), st.sampled_from(
        [NODE.upper(), NODE + " ", " " + NODE, NODE + "\u200b", NODE + "\x00", "n\u043ede-0", NODE + "\n", ""])))
    doc = {**HONEST, "node": claim}
    return output(doc), termination(), 0, claim != NODE, "report claims another node"


@st.composite
def impossible_value(draw: st.DrawFn) -> Tampered:
    doc = json.loads(json.dumps(HONEST))
    check = doc["checks"][draw(st.sampled_from(_checks_with_values(doc)))]
    value = draw(st.one_of(st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
                           st.sampled_from([float("nan"), float("inf"), float("-inf")])))
    check["measurements"][0]["values"][0] = value
    return output(doc, allow_nan=True), termination(), 0, True, f"{check['id']} measured {value}"


@st.composite
def violated_limit(draw: st.DrawFn) -> Tampered:
    """A passing check whose own threshold (or the profile's limit) its measurement violates."""
    doc = json.loads(json.dumps(HONEST))
    index = draw(st.sampled_from([i for i, c in enumerate(doc["checks"]) if BY_ID[c["id"]].metric
                                  and c.get("measurements")]))
    check = doc["checks"][index]
    metric = check["measurements"][0]["metric"]
    limit = draw(st.floats(1.0, 1e6))
    value = draw(st.floats(0.0, limit * 0.99))
    check["measurements"][0]["values"][0] = value
    check["thresholds"] = [{"metric": metric, "min": limit, "severity": "fail"}]
    return output(doc), termination(), 0, True, f"{check['id']} {value} under its own limit {limit}"


@st.composite
def structure(draw: st.DrawFn) -> Tampered:
    doc = json.loads(json.dumps(HONEST))
    what = draw(st.sampled_from(["drop", "duplicate", "verdict", "schema", "unknown", "required", "oversize",
                                 "type"]))
    if what == "drop":
        doc["checks"].pop(draw(st.integers(0, len(doc["checks"]) - 1)))
    elif what == "duplicate":
        doc["checks"].append(doc["checks"][draw(st.integers(0, len(doc["checks"]) - 1))])
    elif what == "verdict":
        doc["checks"][draw(st.integers(0, len(doc["checks"]) - 1))]["verdict"] = draw(st.sampled_from(["fail",
                                                                                                       "error"]))
    elif what == "schema":
        doc["schemaVersion"] = draw(st.text(max_size=20).filter(lambda v: v != "accelqual.io/v2"))
    elif what == "unknown":
        doc[draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in doc))] = draw(json_values(4))
    elif what == "required":
        doc.pop(draw(st.sampled_from(["profile", "suite", "verdict", "startedAt", "inventory", "checks"])))
    elif what == "oversize":
        doc["reason"] = "x" * draw(st.integers(1025, 5000))
    else:  # a value of the wrong kind (not one pydantic would coerce, as "8" or false to a number)
        key = draw(st.sampled_from(["checks", "inventory", "durationSeconds", "verdict"]))
        wrong = st.dictionaries(st.text(max_size=5), json_values(3), max_size=3) if key == "checks" else \
            st.lists(json_values(3), max_size=3)
        doc[key] = draw(wrong)
    return output(doc), termination(), 0, True, what


@st.composite
def contradiction(draw: st.DrawFn) -> Tampered:
    """The pod's exit code or termination message says otherwise than the passing report."""
    if draw(st.booleans()):
        return output(HONEST), termination(), draw(st.sampled_from([1, 2, 137])), True, "exit code"
    term = draw(st.one_of(st.just(termination("fail")), st.just(termination("inconclusive")),
                          tricky_text(200).map(lambda t: VERDICT_MARKER + t)))
    return output(HONEST), term, 0, True, "termination message"


@st.composite
def free_text(draw: st.DrawFn) -> Tampered:
    """Unicode tricks in every free-text field the schema allows (within its lengths): may pass, must stay clean."""
    doc = json.loads(json.dumps(HONEST))
    doc["profile"] = draw(tricky_text(253))
    doc["reason"] = draw(tricky_text(1024))
    inventory = doc["inventory"]
    for key in ("hostname", "vendor", "model", "driverVersion", "probeVersion", "kernel"):
        inventory[key] = draw(tricky_text(253))
    for check in doc["checks"]:
        check["reason"] = draw(tricky_text(300))
    doc["injectedFaults"] = draw(st.lists(tricky_text(64), max_size=3))
    # Escaped (\\u202e) or raw in the JSON text: raw lone surrogates are not even valid UTF-8.
    return output(doc, ascii_only=draw(st.booleans())), termination(), 0, False, "free text"


@st.composite
def failing_with_tricks(draw: st.DrawFn) -> Tampered:
    """An honest failure whose reasons carry tricks: the node fails, and its Event and marks stay clean."""
    doc = json.loads(json.dumps(HONEST))
    check = next(c for c in doc["checks"] if c["id"] == "perf.membw")
    check["verdict"] = "fail"
    check["reason"] = draw(tricky_text(500))
    doc["verdict"] = "fail"
    doc["reason"] = "failed: perf.membw"
    doc["driverVersion"] = None
    doc["inventory"]["driverVersion"] = draw(tricky_text(253))
    return output(doc), termination("fail"), 1, True, "failure with tricky reasons"


TAMPERED = st.one_of(other_node(), impossible_value(), violated_limit(), structure(), contradiction(), free_text(),
                     failing_with_tricks())


def _checked(result: NodeResult) -> None:
    assert len(result.reason) <= 256 and clean(result.reason), result.reason
    assert len(result.raw_excerpt) <= 256 and clean(result.raw_excerpt), result.raw_excerpt


def test_an_honest_report_passes_so_the_fuzzing_below_is_meaningful() -> None:
    pod = probe_pod(NODE)
    result, body = judge(pod, output(HONEST), termination())
    assert result.verdict is OverallVerdict.PASS
    assert ProbeReport.parse_untrusted(body).node == NODE
    check_writes(plan_for([(pod, result)]))


def test_random_probe_output_is_never_a_pass_never_a_crash_and_stays_bounded(record_fuzz: FuzzRecorder) -> None:
    seen = Counter[str]()

    @given(log=hostile_outputs(), term=st.one_of(st.none(), tricky_text(300), st.just(termination())),
           exit_code=st.sampled_from([0, 1, 2, 137, None]),
           phase=st.sampled_from([PodPhase.SUCCEEDED, PodPhase.FAILED]))
    def fuzz(log: str, term: str | None, exit_code: int | None, phase: PodPhase) -> None:
        seen["examples"] += 1
        pod = probe_pod(NODE, exit_code=exit_code, phase=phase)
        result, _ = judge(pod, log, term)
        assert result.verdict is not OverallVerdict.PASS
        _checked(result)
        check_writes(plan_for([(pod, result)]))

    fuzz()
    record_fuzz("probe output: random bytes, text, JSON, deep JSON, NaN/Infinity, oversized lines", seen["examples"])


def test_tampered_reports_never_pass_and_what_they_say_stays_clean(record_fuzz: FuzzRecorder) -> None:
    seen = Counter[str]()

    @given(tampered=TAMPERED)
    def fuzz(tampered: Tampered) -> None:
        log, term, exit_code, must_not_pass, what = tampered
        seen["examples"] += 1
        pod = probe_pod(NODE, exit_code=exit_code, phase=PodPhase.SUCCEEDED if exit_code == 0 else PodPhase.FAILED)
        result, _ = judge(pod, log, term)
        if must_not_pass:
            assert result.verdict is not OverallVerdict.PASS, what
        _checked(result)
        check_writes(plan_for([(pod, result)]))

    fuzz()
    record_fuzz("schema-valid reports tampered: other node, impossible values, violated limits, structure, "
                "contradictions, unicode tricks", seen["examples"])


def test_above_nominal_measurements_on_a_hardware_profile_never_pass(record_fuzz: FuzzRecorder) -> None:
    """A card cannot beat its own nominal peak: a report claiming so is not evidence."""
    h100 = BUILTIN["h100-sxm"]
    seen = Counter[str]()

    @given(check_id=st.sampled_from(["perf.gemm.bf16", "perf.gemm.fp32", "perf.membw", "gen.memory.capacity"]),
           factor=st.floats(1.6, 1e9))
    def fuzz(check_id: str, factor: float) -> None:
        seen["examples"] += 1
        doc = json.loads(json.dumps({**HONEST, "profile": "h100-sxm"}))
        check = next(c for c in doc["checks"] if c["id"] == check_id)
        nominal, _ = h100.basis(BY_ID[check_id])
        assert nominal is not None
        check["measurements"][0]["values"][0] = nominal * factor
        pod = probe_pod(NODE)
        result, _ = judge(pod, output(doc), termination(), profile=h100)
        assert result.verdict is not OverallVerdict.PASS, f"{check_id} at {factor:g}x nominal passed"
        check_writes(plan_for([(pod, result)]))

    fuzz()
    record_fuzz("reports measuring above the card's nominal peak", seen["examples"])


def test_a_fleet_of_hostile_nodes_keeps_the_status_small(record_fuzz: FuzzRecorder) -> None:
    seen = Counter[str]()

    @given(outputs=st.lists(st.one_of(hostile_outputs(), TAMPERED.map(lambda t: t[0])), min_size=1, max_size=25))
    def fuzz(outputs: list[str]) -> None:
        seen["examples"] += 1
        judged = []
        for i, log in enumerate(outputs):
            pod = probe_pod(f"node-{i}")
            judged.append((pod, judge(pod, log, None)[0]))
        decided = plan_for(judged)
        check_writes(decided)
        assert len(decided.status.failing_nodes) <= 20

    fuzz()
    record_fuzz("pools of up to 25 hostile nodes through plan()", seen["examples"])

"""From a finished probe pod's output to the operator's verdict on the node.

The output comes from a node that may be broken or compromised, so it is treated as
hostile: size-limited, strictly validated, cross-checked against the pod (node, exit
code, termination message), the checks that were asked for and the thresholds of the
profile the operator holds. Anything missing, truncated, invalid or inconsistent is
`inconclusive` with a reason, never a pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from accelqual_probes.catalog import BY_ID
from accelqual_probes.profiles import CardProfileSpec
from accelqual_probes.schema import (
    MAX_REPORT_BYTES,
    REPORT_MARKER,
    VERDICT_MARKER,
    CheckResult,
    CompactVerdict,
    OverallVerdict,
    ProbeReport,
    ReportError,
    Severity,
    Threshold,
    Verdict,
    overall_verdict,
)
from accelqual_probes.thresholds import consistent, evaluate, resolve

from accelqual.planning.snapshot import CheckOutcome, NodeResult, PodPhase, ProbePodInfo

#: Longest check reason kept per check in memory (Events, summary); the full one is in the report.
MAX_CHECK_REASON = 200

#: A measurement above this multiple of the card's nominal value (peak, bandwidth, memory) is not one.
PLAUSIBLE_NOMINAL_FACTOR = 1.5
#: Primary metrics that are shares of a whole (at most 1).
FRACTION_METRICS = frozenset({"agreement"})

#: Pod exit codes of `accelqual probe`.
EXIT_CODES = {0: OverallVerdict.PASS, 1: OverallVerdict.FAIL, 2: OverallVerdict.INCONCLUSIVE}

_POD_END_REASONS = {
    "DeadlineExceeded": "probe exceeded its deadline (activeDeadlineSeconds) and was killed",
    "Evicted": "probe pod was evicted",
    "OOMKilled": "probe was killed for exceeding its memory limit",
    "NodeLost": "node was lost while the probe ran",
}


def _inconclusive(pod: ProbePodInfo, reason: str, excerpt: str = "") -> NodeResult:
    return NodeResult(node=pod.node, run_id=pod.run_id, verdict=OverallVerdict.INCONCLUSIVE,
                      reason=_printable(reason)[:256], raw_excerpt=_printable(excerpt)[:256])


def _printable(text: str) -> str:
    """`text` with every character a terminal or a reader could be fooled by (controls, bidi overrides,
    zero-width and other format characters, lone surrogates, separators) shown as '?'."""
    if text.isprintable():  # nearly always: one pass in C rather than one Python step per character
        return text
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _label(text: str | None, limit: int = 63) -> str:
    """A name the report gives (profile, driver, probe version) as the operator repeats it: printable, short."""
    return _printable(text or "")[:limit]


def last_marked_line(output: str, marker: str) -> str | None:
    """The payload of the last line starting with `marker` (earlier ones may be forged by checks).

    Lines end at "\n" (a "\r" before it is dropped), as the kubelet splits a container's log. Searched
    from the end: the report line of an 8-card node is tens of kilobytes, and splitting the whole
    output into lines copied all of it once more."""
    end = len(output)
    while (start := output.rfind(marker, 0, end)) >= 0:
        if start == 0 or output[start - 1] == "\n":
            stop = output.find("\n", start)
            line = output[start + len(marker):stop if stop >= 0 else len(output)]
            return line[:-1] if line.endswith("\r") else line
        end = start
    return None


def evaluate_pod(
    pod: ProbePodInfo,
    log_tail: str | None,
    termination_message: str | None,
    *,
    expected_checks: tuple[str, ...],
    profile: CardProfileSpec | None,
    log_truncated: bool = False,
) -> NodeResult:
    """The verdict on `pod.node` from its finished probe pod's output."""
    if pod.reason in _POD_END_REASONS:
        return _inconclusive(pod, _POD_END_REASONS[pod.reason])
    if log_truncated:
        return _inconclusive(pod, f"probe output is larger than the {MAX_REPORT_BYTES}-byte limit")
    payload = last_marked_line(log_tail or "", REPORT_MARKER)
    if payload is None:
        why = f"probe ended ({pod.reason or pod.phase.value}, exit {pod.exit_code}) without a report"
        return _inconclusive(pod, why, (log_tail or "")[-256:])
    try:
        report = ProbeReport.parse_untrusted(payload)
    except ReportError as exc:
        return _inconclusive(pod, f"probe report rejected: {exc}", payload[:256])

    # The evidence is the report exactly as the node sent it (validated above); its digest is what
    # the node annotation and the summary record, so anyone can check the stored object against them.
    canonical = payload
    digest = hashlib.sha256(payload.encode("utf-8", errors="surrogateescape")).hexdigest()

    def rejected(reason: str) -> NodeResult:
        result = _inconclusive(pod, reason)
        # Keep the rejected (but schema-valid) report as evidence of what the node claimed.
        return NodeResult(node=result.node, run_id=result.run_id, verdict=result.verdict, reason=result.reason,
                          report_json=canonical, report_sha256=digest, profile=_label(report.profile))

    if report.node != pod.node:
        return rejected(f"report claims node {report.node!r}, but the probe ran on {pod.node!r}")
    present = {c.id for c in report.checks}
    if len(present) != len(report.checks):
        return rejected("report lists a check more than once")
    missing = [c for c in expected_checks if c not in present]
    if missing:
        return rejected(f"report lacks requested checks: {', '.join(missing[:8])}")
    facts = _facts(profile)
    checks: list[CheckResult] = []
    outcomes: dict[str, CheckOutcome] = {}
    for check in report.checks:
        judged = _judge_check(check, _check_facts(facts, check.id, profile))
        if isinstance(judged, str):
            return rejected(f"report is not evidence: {judged}")
        checks.append(judged[0])
        outcomes[check.id] = judged[1]
    verdict, reason = overall_verdict(checks)
    inconsistent = [c.id for c, orig in zip(checks, report.checks, strict=True) if c.verdict is not orig.verdict]
    if verdict is not report.verdict and not inconsistent:
        return rejected(f"report verdict {report.verdict.value!r} contradicts its checks ({verdict.value})")

    claimed = EXIT_CODES.get(pod.exit_code) if pod.exit_code is not None else None
    if claimed is not None and claimed is not report.verdict:
        return rejected(f"probe exit code {pod.exit_code} contradicts its report verdict {report.verdict.value!r}")
    if report.verdict is OverallVerdict.PASS and (pod.exit_code != 0 or pod.phase is not PodPhase.SUCCEEDED):
        return rejected(f"a passing report from a probe that ended {pod.phase.value} with exit code {pod.exit_code}")
    compact = last_marked_line(termination_message or "", VERDICT_MARKER)
    if compact is not None:
        try:
            short = CompactVerdict.model_validate_json(compact)
        except ValueError:
            return rejected("termination message is not a valid compact verdict")
        if short.verdict is not report.verdict:
            return rejected("termination message verdict contradicts the report")

    if inconsistent:
        reason = f"{reason} (operator re-evaluated {', '.join(inconsistent[:4])} against the profile)"
    return NodeResult(
        node=pod.node,
        run_id=pod.run_id,
        verdict=verdict,
        reason=_printable(reason)[:256],
        failed_checks=tuple(c.id for c in checks if c.verdict in (Verdict.FAIL, Verdict.ERROR)),
        checks=outcomes,
        profile=_label(report.profile),
        driver_version=_label(report.inventory.driver_version),
        probe_version=_label(report.inventory.probe_version),
        report_json=canonical,
        report_sha256=digest,
        duration_seconds=report.duration_seconds,
    )


@dataclass(frozen=True, slots=True)
class _Facts:
    """What judging one check against one profile needs, resolved once per (profile, check id)."""

    #: The catalog's primary metric ("" for a third-party check, whose metrics may mean anything).
    metric: str = ""
    unit: str = ""
    higher_is_better: bool = True
    #: The card's nominal value of that metric and its name (None: no plausibility bound from the profile).
    nominal: float | None = None
    nominal_name: str = ""
    #: The operator's own limit on the metric from the profile (None: the profile sets none).
    limit: Threshold | None = None
    #: No plausible measurement of the metric lies above this (None: no bound from the profile).
    ceiling: float | None = None
    #: The metric is a share of a whole (at most 1).
    fraction: bool = False


_NO_FACTS = _Facts()

#: id(profile) -> (the profile, check id -> its facts). The operator judges thousands of reports against
#: the same few profiles; resolving a limit builds a model each time (it was a third of a report's judging).
#: Keyed by identity and holding the profile itself, so an id is never reused while cached.
_FACTS: dict[int, tuple[CardProfileSpec | None, dict[str, _Facts]]] = {}
_FACTS_MAX = 64


def _facts(profile: CardProfileSpec | None) -> dict[str, _Facts]:
    """check id -> facts for `profile`, filled on first use of each id (see `_check_facts`)."""
    entry = _FACTS.get(id(profile))
    if entry is None or entry[0] is not profile:
        if len(_FACTS) >= _FACTS_MAX:
            _FACTS.clear()
        entry = _FACTS[id(profile)] = (profile, {})
    return entry[1]


def _check_facts(facts: dict[str, _Facts], check_id: str, profile: CardProfileSpec | None) -> _Facts:
    found = facts.get(check_id)
    if found is None:
        found = facts[check_id] = _resolve_facts(check_id, profile)
    return found


def _resolve_facts(check_id: str, profile: CardProfileSpec | None) -> _Facts:
    spec = BY_ID.get(check_id)
    if spec is None or not spec.metric:
        return _NO_FACTS
    nominal: float | None = None
    nominal_name = ""
    limit: Threshold | None = None
    if profile is not None:
        basis, basis_name = profile.basis(spec)
        if profile.relative_to_reference:
            # Its fractions are of a reference measured in the run, which only the report knows; its
            # absolute limits (no mismatches, no leaked bytes, ...) hold all the same.
            basis, basis_name = None, ""
        nominal, nominal_name = basis, basis_name
        rule = profile.rule(check_id)
        if basis is not None or rule.min is not None or rule.max is not None:
            resolved = resolve(spec.metric, spec.unit, rule, basis, basis_name)
            if resolved.min is not None or resolved.max is not None:
                limit = resolved
    ceiling = PLAUSIBLE_NOMINAL_FACTOR * nominal if nominal and spec.higher_is_better else None
    return _Facts(metric=spec.metric, unit=spec.unit, higher_is_better=spec.higher_is_better,
                  nominal=nominal, nominal_name=nominal_name, limit=limit, ceiling=ceiling,
                  fraction=spec.metric in FRACTION_METRICS)


def _judge_check(check: CheckResult, facts: _Facts) -> tuple[CheckResult, CheckOutcome] | str:
    """The check as the operator judges it and what it keeps of it, or why its numbers are not evidence.

    The report holds each metric's values together (about 75 lists of about 500 values in the standard
    report of an 8-card node); a metric may have several lists (the cards' and the node's, or units).
    """
    by_metric: dict[str, list[float]] = {}
    for m in check.measurements:
        values = by_metric.get(m.metric)
        if values is None:
            by_metric[m.metric] = m.values
        else:
            by_metric[m.metric] = values + m.values  # never extended in place: the list is the report's
    metric = facts.metric
    value: float | None = None
    primary = by_metric.get(metric) if metric else None
    if primary:
        low, high = min(primary), max(primary)
        if low < 0 or (facts.fraction and high > 1.0) or (facts.ceiling is not None and high > facts.ceiling):
            return _implausible(check, facts)
        value = low if facts.higher_is_better else high
    verdict = check.verdict
    if (verdict is Verdict.PASS or verdict is Verdict.WARN) and (check.thresholds or facts.limit is not None):
        check = _recheck(check, facts.limit, by_metric)
        verdict = check.verdict
    minimum: float | None = None
    maximum: float | None = None
    if metric:
        for t in reversed(check.thresholds):
            if t.severity is Severity.FAIL and t.metric == metric:
                minimum, maximum = t.min, t.max
                break
    return check, CheckOutcome(
        verdict=_VERDICT_TEXT[verdict],
        value=value,
        minimum=minimum,
        maximum=maximum,
        reason=_printable(check.reason)[:MAX_CHECK_REASON] if verdict is not Verdict.PASS else "",
        duration_seconds=check.duration_seconds,
    )


def _recheck(check: CheckResult, limit: Threshold | None, by_metric: Mapping[str, list[float]]) -> CheckResult:
    """Hold a passing check to its own thresholds and, for nominal-based limits, to the operator's profile.

    A forged or buggy report that says `pass` beside measurements that violate the limits
    becomes `fail`, so a node can only pass on evidence.
    """
    for threshold in check.thresholds:
        if threshold.severity is not Severity.FAIL:
            continue
        found = by_metric.get(threshold.metric)
        if not found:
            return check.model_copy(update={"verdict": Verdict.ERROR,
                                            "reason": f"no measurement of thresholded metric {threshold.metric}"})
        if not consistent(found, threshold):
            return _refuted(check, threshold, "violates its own threshold")
    if limit is not None:
        found = by_metric.get(limit.metric)
        if found is not None and not consistent(found, limit):
            return _refuted(check, limit, f"outside the profile's limit ({limit.basis})")
    return check


def _implausible(check: CheckResult, facts: _Facts) -> str:
    """Why the check's numbers cannot be measurements of a working probe on a real card: the first
    primary measurement out of bounds (`_judge_check` found one).

    Every catalog check's primary metric is a count, a size, a rate, a latency or a fraction, so it is
    never negative; no card measures more than `PLAUSIBLE_NOMINAL_FACTOR` times its own nominal peak.
    """
    metric = facts.metric
    for value in check.values_of(metric):
        if value < 0:
            return f"{check.id} measured a negative {metric} ({value:.4g})"
        if facts.fraction and value > 1.0:
            return f"{check.id} measured {metric} {value:.4g}, more than all"
        if facts.ceiling is not None and value > facts.ceiling:
            return (f"{check.id} measured {value:.4g} {facts.unit}, more than {PLAUSIBLE_NOMINAL_FACTOR:g} x the "
                    f"{facts.nominal_name} ({facts.nominal:.4g})")
    return f"{check.id} measured an implausible {metric}"  # not reached: the caller found one


def _refuted(check: CheckResult, threshold: Threshold, why: str) -> CheckResult:
    """`check` failed by the operator against `threshold`, its reason saying by how much."""
    _, measured = evaluate([(r.value, r.device) for r in check.readings() if r.metric == threshold.metric],
                           threshold)
    return check.model_copy(update={"verdict": Verdict.FAIL, "reason": f"{measured} ({why})"[:MAX_CHECK_REASON],
                                    "thresholds": [*check.thresholds, threshold.model_copy(
                                        update={"severity": Severity.FAIL})][-64:]})


#: `Verdict.value` goes through the enum's descriptor, a microsecond each, 35 times per report.
_VERDICT_TEXT = {v: v.value for v in Verdict}


def primary_value(check: CheckResult) -> float | None:
    """The worst device's value of the check's primary metric (min if higher is better)."""
    spec = BY_ID.get(check.id)
    if spec is None or not spec.metric:
        return None
    return _worst(check, spec.metric, spec.higher_is_better)


def _worst(check: CheckResult, metric: str, higher_is_better: bool) -> float | None:
    """The worst device's value of `metric` in `check` (None if it has none)."""
    values = check.values_of(metric)
    if not values:
        return None
    return min(values) if higher_is_better else max(values)


def summarize_checks(results: Mapping[str, NodeResult]) -> dict[str, list[float]]:
    """check id -> primary values across nodes (for fleet statistics)."""
    values: dict[str, list[float]] = {}
    for result in results.values():
        for check_id, outcome in result.checks.items():
            if outcome.value is not None:
                values.setdefault(check_id, []).append(outcome.value)
    return values

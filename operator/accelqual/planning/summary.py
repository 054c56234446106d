"""The run summary document (`summary.json` in S3): fleet table, per-check statistics, outliers,
the thresholds in force and versions, so an auditor can trace every verdict back to its evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from accelqual_probes.catalog import BY_ID
from accelqual_probes.profiles import BUILTIN, CardProfileSpec
from accelqual_probes.schema import OverallVerdict

from accelqual import __version__
from accelqual.models import QualificationSpec, RunSummary
from accelqual.planning.fleet import Outlier, check_stats
from accelqual.planning.naming import evidence_key
from accelqual.planning.snapshot import CheckOutcome, NodeResult

SUMMARY_SCHEMA = "accelqual.io/v1/run-summary"

NodeRow = tuple[str, OverallVerdict | None, str, NodeResult | None, str]


def build_summary(
    *,
    spec: QualificationSpec,
    qualification: str,
    run: str,
    started: datetime,
    finished: datetime,
    summary: RunSummary,
    nodes: Sequence[NodeRow],
    outliers: Sequence[Outlier],
    custom_profiles: Mapping[str, CardProfileSpec] | None = None,
) -> dict[str, Any]:
    values: dict[str, list[float]] = {}
    probe_versions: set[str] = set()
    used: dict[str, set[str]] = {}  # profile -> checks run under it
    rows: list[dict[str, Any]] = []
    prefix = spec.report.prefix if spec.report else ""
    for name, verdict, reason, result, state in nodes:
        row: dict[str, Any] = {"node": name, "state": state, "verdict": verdict.value if verdict else None,
                               "reason": reason}
        if result is not None:
            row.update({
                "failedChecks": list(result.failed_checks),
                "profile": result.profile,
                "driverVersion": result.driver_version,
                "probeVersion": result.probe_version,
                "durationSeconds": round(result.duration_seconds, 3),
                "checks": {cid: _check_row(o) for cid, o in sorted(result.checks.items())},
            })
            if result.probe_version:
                probe_versions.add(result.probe_version)
            if result.profile:
                used.setdefault(result.profile, set()).update(result.checks)
            if result.report_sha256:
                row["reportKey"] = evidence_key(prefix, qualification, run, name)
                row["reportSha256"] = result.report_sha256
            for cid, outcome in result.checks.items():
                if outcome.value is not None and result.verdict is not OverallVerdict.INCONCLUSIVE:
                    values.setdefault(cid, []).append(outcome.value)
        rows.append(row)
    stats = {
        cid: {"count": s.count, "median": s.median, "mad": s.mad, "min": s.minimum, "max": s.maximum,
              "unit": BY_ID[cid].unit if cid in BY_ID else "", "metric": BY_ID[cid].metric if cid in BY_ID else "",
              "higherIsBetter": BY_ID[cid].higher_is_better if cid in BY_ID else True}
        for cid, s in sorted(check_stats(values).items())
    }
    return {
        "schemaVersion": SUMMARY_SCHEMA,
        "qualification": qualification,
        "runId": run,
        "startedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finishedAt": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "operatorVersion": __version__,
        "probeVersions": sorted(probe_versions),
        "policy": spec.to_json_dict(),
        "profiles": _profiles_used(used, custom_profiles or {}),
        "summary": summary.to_json_dict(),
        "checkStats": stats,
        "outliers": [
            {"node": o.node, "check": o.check, "value": o.value, "median": o.median,
             "deviation": round(o.deviation, 4), "robustZ": (round(o.robust_z, 2) if o.robust_z != float("inf")
                                                             else None)}
            for o in outliers
        ],
        "nodes": rows,
    }


def _check_row(outcome: CheckOutcome) -> dict[str, Any]:
    """One check of one node: verdict, primary value, the fail limit applied there, why it did not pass."""
    row: dict[str, Any] = {"verdict": outcome.verdict, "value": outcome.value}
    if outcome.minimum is not None:
        row["min"] = outcome.minimum
    if outcome.maximum is not None:
        row["max"] = outcome.maximum
    if outcome.reason:
        row["reason"] = outcome.reason
    if outcome.duration_seconds:
        row["durationSeconds"] = round(outcome.duration_seconds, 3)
    return row


def _profiles_used(used: Mapping[str, set[str]], custom: Mapping[str, CardProfileSpec]) -> dict[str, Any]:
    """Each profile the nodes ran under: its nominal specs and, per check run, the rule, basis and limits.

    For profiles relative to a reference the basis is measured in each run, so the resolved limits are
    those in each node's row; the rule here says how they were derived.
    """
    found: dict[str, Any] = {}
    for name in sorted(used):
        profile = custom.get(name) or BUILTIN.get(name)
        if profile is None:
            found[name] = {"source": "unknown to the operator"}
            continue
        thresholds: dict[str, Any] = {}
        for check_id in sorted(used[name]):
            check = BY_ID.get(check_id)
            if check is None or not check.metric:
                continue
            rule = profile.rule(check_id)
            if not rule.model_dump(exclude_none=True):
                continue  # no limit on this check's metric (its verdict is the check's own)
            entry: dict[str, Any] = {"metric": check.metric, "unit": check.unit,
                                     "rule": rule.model_dump(mode="json", by_alias=True, exclude_none=True)}
            basis, basis_name = profile.basis(check)
            if basis is not None and not profile.relative_to_reference:
                limit = profile.threshold(check_id)
                entry.update({"basis": basis_name, "basisValue": basis, "min": limit.min, "max": limit.max})
            elif rule.min is not None or rule.max is not None:
                entry.update({"min": rule.min, "max": rule.max})
            thresholds[check_id] = entry
        found[name] = {"source": "CardProfile" if name in custom else "built-in",
                       "spec": profile.model_dump(mode="json", by_alias=True, exclude_none=True),
                       "thresholds": thresholds}
    return found

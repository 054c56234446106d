"""The run summary document (`summary.json` in S3): fleet table, per-check statistics, outliers,
the thresholds in force and versions, so an auditor can trace every verdict back to its evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from accelqual_probes.catalog import BY_ID
from accelqual_probes.schema import OverallVerdict

from accelqual import __version__
from accelqual.models import QualificationSpec, RunSummary
from accelqual.planning.fleet import Outlier, check_stats
from accelqual.planning.naming import evidence_key
from accelqual.planning.snapshot import NodeResult

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
) -> dict[str, Any]:
    values: dict[str, list[float]] = {}
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
                "durationSeconds": round(result.duration_seconds, 3),
                "checks": {cid: {"verdict": o.verdict, "value": o.value} for cid, o in sorted(result.checks.items())},
            })
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
        "policy": spec.to_json_dict(),
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

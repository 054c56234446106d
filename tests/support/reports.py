"""Builders of probe reports and pod snapshots for tests (valid by default, easy to make hostile)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from accelqual.planning.snapshot import NodeInfo, PodPhase, ProbePodInfo, Taint
from accelqual_probes.catalog import BY_ID, Suite, select
from accelqual_probes.schema import (
    REPORT_MARKER,
    VERDICT_MARKER,
    CheckResult,
    CompactVerdict,
    Inventory,
    Measurement,
    ProbeReport,
    Verdict,
    overall_verdict,
)

T0 = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def check(check_id: str, verdict: Verdict = Verdict.PASS, value: float | None = 100.0,
          reason: str = "ok") -> CheckResult:
    spec = BY_ID[check_id]
    measurements = []
    if spec.metric and value is not None:
        measurements = [Measurement(metric=spec.metric, values=[value], unit=spec.unit, devices=[0])]
    return CheckResult(id=check_id, category=spec.category, verdict=verdict, reason=reason,
                       measurements=measurements, duration_seconds=0.5)


def as_first_version(doc: dict[str, Any]) -> dict[str, Any]:
    """A report's JSON document (`ProbeReport.to_json_dict()` or a stored one) as the first schema version
    wrote it: one object per measured value. Changes `doc` and returns it."""
    doc["schemaVersion"] = "accelqual.io/v1"
    for c in doc["checks"]:
        c["measurements"] = [{"metric": m["metric"], "unit": m.get("unit", ""), "value": value,
                              **({"device": m["devices"][i]} if "devices" in m else {})}
                             for m in c["measurements"] for i, value in enumerate(m["values"])]
    return doc


def honest_value(check_id: str) -> float:
    """A healthy card's value of a check's primary metric: none of what must be zero, else 100 (a share: 1)."""
    spec = BY_ID[check_id]
    if spec.default_rule.max == 0:
        return 0.0
    return 1.0 if spec.metric == "agreement" else 100.0


def report(node: str, *, suite: Suite = Suite.QUICK, overrides: dict[str, CheckResult] | None = None,
           driver: str | None = None, profile: str = "cpu-reference") -> ProbeReport:
    overrides = overrides or {}
    checks = [overrides.get(cid) or check(cid, value=honest_value(cid)) for cid in select(suite)]
    verdict, reason = overall_verdict(checks)
    return ProbeReport(
        node=node, profile=profile, suite=suite.value, verdict=verdict, reason=reason,
        started_at=T0, finished_at=T0 + timedelta(seconds=8), duration_seconds=8.0,
        inventory=Inventory(hostname=node, device_type="cpu", vendor="sim", model="cpu", count=1,
                            driver_version=driver),
        checks=checks,
    )


def pod_output(rep: ProbeReport, noise: str = "progress line\n") -> tuple[str, str]:
    """(log, termination message) as a probe pod would leave them."""
    log = f"{noise}{REPORT_MARKER}{rep.to_json()}\n"
    term = f"{VERDICT_MARKER}{CompactVerdict.of(rep).to_json_dict()}"
    term = VERDICT_MARKER + CompactVerdict.of(rep).model_dump_json(by_alias=True)
    return log, term


def exit_code(rep: ProbeReport) -> int:
    return {"pass": 0, "fail": 1, "inconclusive": 2}[rep.verdict.value]


def pod(node: str, run: str, *, phase: PodPhase = PodPhase.SUCCEEDED, exit: int | None = 0, name: str | None = None,
        started: datetime | None = None, reason: str = "") -> ProbePodInfo:
    return ProbePodInfo(name=name or f"aq-{node}-{run}", node=node, run_id=run, phase=phase, uid=f"uid-{node}-{run}",
                        exit_code=exit if phase in (PodPhase.SUCCEEDED, PodPhase.FAILED) else None,
                        created_at=started or T0, started_at=started or T0, reason=reason)


def node(name: str, *, labels: dict[str, str] | None = None, taints: tuple[Taint, ...] = (),
         annotations: dict[str, str] | None = None, rv: str = "1", **kw: Any) -> NodeInfo:
    base = {"pool": "a", "accelqual.io/profile": "cpu-reference"}
    base.update(labels or {})
    return NodeInfo(name=name, labels=base, taints=taints, annotations=annotations or {}, resource_version=rv,
                    allocatable={"accelqual.io/sim-accelerator": "1"}, **kw)

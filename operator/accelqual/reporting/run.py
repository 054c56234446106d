"""A qualification run as the human reports show it, read from the run's `summary.json` (and node reports).

Pure: no I/O. `reporting.sources` loads the documents; `reporting.markdown` and
`reporting.html` render a `RunDocument`. The operator renders the Markdown report of
each run from the same code when it stores the run's summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from accelqual_probes.catalog import BY_ID
from accelqual_probes.schema import ProbeReport

from accelqual.planning.results import primary_value
from accelqual.planning.summary import SUMMARY_SCHEMA

REJECTED_SCHEMA = "accelqual.io/v1/rejected-output"
#: Verdicts in the order a reader wants to see them: problems first.
VERDICT_ORDER = {"fail": 0, "inconclusive": 1, "pass": 2}


@dataclass(frozen=True)
class CheckCell:
    """One check on one node."""

    verdict: str
    value: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class NodeRow:
    node: str
    state: str
    verdict: str | None
    reason: str
    failed_checks: tuple[str, ...] = ()
    profile: str = ""
    driver_version: str = ""
    probe_version: str = ""
    duration_seconds: float | None = None
    checks: Mapping[str, CheckCell] = field(default_factory=dict)
    report_key: str | None = None
    report_sha256: str | None = None


@dataclass(frozen=True)
class RunDocument:
    """Everything a report shows: the summary, plus the full node reports where they could be read."""

    summary: Mapping[str, Any]
    nodes: tuple[NodeRow, ...]
    #: Full reports by node name (from S3 or a local directory), verified against the summary's digests.
    reports: Mapping[str, ProbeReport] = field(default_factory=dict)
    #: Where the documents came from, for the report's header.
    source: str = ""

    @property
    def qualification(self) -> str:
        return str(self.summary.get("qualification") or "")

    @property
    def run_id(self) -> str:
        return str(self.summary.get("runId") or "")

    @property
    def counts(self) -> Mapping[str, int]:
        raw = self.summary.get("summary") or {}
        return {k: int(v) for k, v in raw.items() if isinstance(v, int)}

    @property
    def verdict(self) -> str:
        """`fail` if any node failed, `inconclusive` if any was inconclusive, else `pass`."""
        c = self.counts
        if c.get("failed"):
            return "fail"
        if c.get("inconclusive"):
            return "inconclusive"
        return "pass"

    def check_ids(self) -> list[str]:
        """Checks that ran on any node, in catalog order (unknown ids last)."""
        seen = {cid for row in self.nodes for cid in row.checks}
        order = {cid: i for i, cid in enumerate(BY_ID)}
        return sorted(seen, key=lambda c: (order.get(c, len(order)), c))

    def failing(self) -> list[NodeRow]:
        return [r for r in self.nodes if r.verdict in ("fail", "inconclusive")]

    def outliers(self) -> list[Mapping[str, Any]]:
        return list(self.summary.get("outliers") or [])

    def check_stats(self) -> Mapping[str, Mapping[str, Any]]:
        return dict(self.summary.get("checkStats") or {})


def run_document(summary: Mapping[str, Any], reports: Mapping[str, ProbeReport] | None = None,
                 source: str = "") -> RunDocument:
    """A `RunDocument` from a run summary (`ValueError` if it is not one)."""
    if summary.get("schemaVersion") != SUMMARY_SCHEMA:
        raise ValueError(f"not a run summary (schemaVersion {summary.get('schemaVersion')!r}, "
                         f"expected {SUMMARY_SCHEMA!r})")
    rows = tuple(sorted((_row(raw) for raw in summary.get("nodes") or []),
                        key=lambda r: (VERDICT_ORDER.get(r.verdict or "", 3), r.node)))
    return RunDocument(summary=summary, nodes=rows, reports=dict(reports or {}), source=source)


def report_document(report: ProbeReport, source: str = "") -> RunDocument:
    """A one-node `RunDocument` from a single ProbeReport (`accelqual probe --json` output)."""
    node = report.node or report.inventory.hostname or "node"
    cells = {c.id: _cell_from_check(c) for c in report.checks}
    failed = tuple(c.id for c in report.checks if c.verdict.value in ("fail", "error"))
    row = NodeRow(node=node, state="done", verdict=report.verdict.value, reason=report.reason, failed_checks=failed,
                  profile=report.profile, driver_version=report.inventory.driver_version or "",
                  probe_version=report.inventory.probe_version or "", duration_seconds=report.duration_seconds,
                  checks=cells)
    counts = {"total": 1, "pending": 0, "running": 0, "passed": int(report.verdict.value == "pass"),
              "failed": int(report.verdict.value == "fail"),
              "inconclusive": int(report.verdict.value == "inconclusive"), "skipped": 0}
    summary = {"schemaVersion": SUMMARY_SCHEMA, "qualification": f"local probe on {node}", "runId": "local",
               "startedAt": report.started_at.isoformat(), "finishedAt": report.finished_at.isoformat(),
               "summary": counts, "probeVersions": [v for v in [report.inventory.probe_version] if v],
               "nodes": [], "outliers": [], "checkStats": {}}
    return RunDocument(summary=summary, nodes=(row,), reports={node: report}, source=source)


def _row(raw: Mapping[str, Any]) -> NodeRow:
    checks = {str(cid): CheckCell(verdict=str(c.get("verdict") or ""), value=_number(c.get("value")),
                                  minimum=_number(c.get("min")), maximum=_number(c.get("max")),
                                  reason=str(c.get("reason") or ""))
              for cid, c in (raw.get("checks") or {}).items() if isinstance(c, Mapping)}
    return NodeRow(node=str(raw.get("node") or "?"), state=str(raw.get("state") or ""),
                   verdict=raw.get("verdict"), reason=str(raw.get("reason") or ""),
                   failed_checks=tuple(raw.get("failedChecks") or ()), profile=str(raw.get("profile") or ""),
                   driver_version=str(raw.get("driverVersion") or ""),
                   probe_version=str(raw.get("probeVersion") or ""),
                   duration_seconds=_number(raw.get("durationSeconds")), checks=checks,
                   report_key=raw.get("reportKey"), report_sha256=raw.get("reportSha256"))


def _cell_from_check(check: Any) -> CheckCell:
    spec = BY_ID.get(check.id)
    metric = spec.metric if spec is not None else ""
    limit = next((t for t in check.thresholds if t.metric == metric and t.severity.value == "fail"), None)
    return CheckCell(verdict=check.verdict.value, value=primary_value(check), minimum=limit.min if limit else None,
                     maximum=limit.max if limit else None,
                     reason=check.reason if check.verdict.value != "pass" else "")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def unit_of(check_id: str) -> str:
    return BY_ID[check_id].unit if check_id in BY_ID else ""


def fmt(value: float | None, unit: str = "") -> str:
    """A number as people read it: 4 significant digits, the unit after a space."""
    if value is None:
        return "-"
    text = f"{value:.4g}"
    return f"{text} {unit}" if unit else text


def limit_text(minimum: float | None, maximum: float | None, unit: str = "") -> str:
    parts = []
    if minimum is not None:
        parts.append(f">= {fmt(minimum, unit)}")
    if maximum is not None:
        parts.append(f"<= {fmt(maximum, unit)}")
    return ", ".join(parts) or "-"


def check_limits(doc: RunDocument, check_id: str) -> tuple[float | None, float | None]:
    """The limit most nodes ran under for a check (they differ only for reference-relative profiles)."""
    lows: dict[float, int] = {}
    highs: dict[float, int] = {}
    for row in doc.nodes:
        cell = row.checks.get(check_id)
        if cell is None:
            continue
        if cell.minimum is not None:
            lows[cell.minimum] = lows.get(cell.minimum, 0) + 1
        if cell.maximum is not None:
            highs[cell.maximum] = highs.get(cell.maximum, 0) + 1
    return (max(lows, key=lambda k: lows[k]) if lows else None,
            max(highs, key=lambda k: highs[k]) if highs else None)


def device_rows(report: ProbeReport, checks: Sequence[str]) -> list[tuple[str, str, int | None, float, str,
                                                                            float | None, float | None]]:
    """(check, metric, device, value, unit, min, max) for every measurement of `checks` in a node report."""
    rows = []
    for check in report.checks:
        if check.id not in checks:
            continue
        limits = {t.metric: t for t in check.thresholds if t.severity.value == "fail"}
        for m in check.readings():
            limit = limits.get(m.metric)
            rows.append((check.id, m.metric, m.device, m.value, m.unit, limit.min if limit else None,
                         limit.max if limit else None))
    return rows


# --- the tables both renderers show (rows of strings) ------------------------------------------

FAILURE_HEADER = ("node", "verdict", "check", "measured", "limit", "reason")
CHECK_HEADER = ("check", "unit", "nodes", "median", "MAD", "min", "max", "limit", "failed on")
OUTLIER_HEADER = ("node", "check", "value", "median", "deviation", "robust z")
THRESHOLD_HEADER = ("check", "metric", "rule", "basis", "limit")
NODE_HEADER = ("node", "verdict", "failed checks", "profile", "driver", "probe", "duration", "report sha256")


def failure_rows(doc: RunDocument) -> list[list[str]]:
    """One row per failed check of each node that did not pass: measured value, limit and reason."""
    rows = []
    for row in doc.failing():
        for cid in [c for c in row.failed_checks if c in row.checks] or [""]:
            cell = row.checks.get(cid)
            unit = unit_of(cid)
            rows.append([row.node, row.verdict or "-", cid or "-", fmt(cell.value, unit) if cell else "-",
                         limit_text(cell.minimum, cell.maximum, unit) if cell else "-",
                         cell.reason if cell and cell.reason else row.reason])
    return rows


def node_rows(rows: Sequence[NodeRow]) -> list[list[str]]:
    return [[r.node, r.verdict or r.state, ", ".join(r.failed_checks) or "-", r.profile or "-",
             r.driver_version or "-", r.probe_version or "-", fmt(r.duration_seconds, "s"), r.report_sha256 or "-"]
            for r in rows]


def check_rows(doc: RunDocument) -> list[list[str]]:
    """Per check: the fleet statistics of its primary value, the limit most nodes had, how many failed it."""
    stats = doc.check_stats()
    rows = []
    for cid in doc.check_ids():
        st = stats.get(cid) or {}
        failed = sum(1 for r in doc.nodes if (c := r.checks.get(cid)) is not None and c.verdict in ("fail", "error"))
        lo, hi = check_limits(doc, cid)
        rows.append([cid, str(st.get("unit") or unit_of(cid) or "-"), str(st.get("count", "-")),
                     fmt(st.get("median")), fmt(st.get("mad")), fmt(st.get("min")), fmt(st.get("max")),
                     limit_text(lo, hi), str(failed)])
    return rows


def outlier_rows(doc: RunDocument) -> list[list[str]]:
    return [[str(o.get("node")), str(o.get("check")), fmt(o.get("value")), fmt(o.get("median")),
             f"{float(o.get('deviation') or 0):+.1%}", fmt(o.get("robustZ"))] for o in doc.outliers()]


def threshold_rows(profile: Mapping[str, Any]) -> list[list[str]]:
    """Per check run under a profile: the rule, the nominal basis it applies to, the resulting limit."""
    rows = []
    for cid, t in sorted((profile.get("thresholds") or {}).items()):
        rule = ", ".join(f"{k} {v:g}" if isinstance(v, int | float) else f"{k} {v}"
                         for k, v in (t.get("rule") or {}).items()) or "-"
        basis = f"{t['basis']} {fmt(t.get('basisValue'), t.get('unit', ''))}" if t.get("basis") else "-"
        rows.append([cid, str(t.get("metric") or "-"), rule, basis,
                     limit_text(t.get("min"), t.get("max"), str(t.get("unit") or ""))])
    return rows


def facts(doc: RunDocument) -> list[list[str]]:
    """The run's header facts: times, suite, profiles, versions, where it was read from."""
    s = doc.summary
    rows: list[tuple[str, Any]] = [("started", s.get("startedAt")), ("finished", s.get("finishedAt")),
            ("suite", (s.get("policy") or {}).get("suite")), ("profiles", ", ".join(sorted(s.get("profiles") or {}))),
            ("operator version", s.get("operatorVersion")), ("probe versions", ", ".join(s.get("probeVersions") or [])),
            ("source", doc.source)]
    human = s.get("humanReport") or {}
    if human.get("sha256"):
        rows.append(("human report", f"{human.get('uri') or human.get('key')} sha256 {human['sha256']}"))
    return [[str(k), str(v or "-")] for k, v in rows]

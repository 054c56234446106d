"""The Markdown report of a run: verdict, failures with measured values and limits, fleet tables, thresholds.

Pure (a string from a `RunDocument`). The operator stores it as `report.md` beside each
run's `summary.json`; `accelqual report --markdown` writes the same text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from accelqual.reporting.run import (
    RunDocument,
    check_limits,
    device_rows,
    fmt,
    limit_text,
    run_document,
    unit_of,
)

#: The node table lists every node up to this many; beyond, the failing ones and a count.
MAX_NODE_ROWS = 500


def render_markdown(doc: RunDocument) -> str:
    lines: list[str] = []
    s = doc.summary
    c = doc.counts
    lines += [f"# Qualification `{doc.qualification}`, run `{doc.run_id}`", ""]
    lines += [f"**Verdict: {doc.verdict.upper()}**: {c.get('passed', 0)} passed, {c.get('failed', 0)} failed, "
              f"{c.get('inconclusive', 0)} inconclusive, {c.get('skipped', 0)} skipped of {c.get('total', 0)} "
              "nodes.", ""]
    lines += _table(["", ""], [
        ["started", str(s.get("startedAt") or "-")],
        ["finished", str(s.get("finishedAt") or "-")],
        ["suite", str((s.get("policy") or {}).get("suite") or "-")],
        ["profiles", ", ".join(sorted(s.get("profiles") or {})) or "-"],
        ["operator version", str(s.get("operatorVersion") or "-")],
        ["probe versions", ", ".join(s.get("probeVersions") or []) or "-"],
        ["source", doc.source or "-"],
    ])
    lines += _failures(doc)
    lines += _nodes(doc)
    lines += _checks(doc)
    lines += _outliers(doc)
    lines += _thresholds(s.get("profiles") or {})
    policy = s.get("policy")
    if policy:
        lines += ["## Policy", "", "The Qualification's spec for this run:", "", "```json",
                  json.dumps(policy, indent=1, sort_keys=True), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def render_summary_markdown(summary: Mapping[str, Any]) -> str:
    """The operator's entry point: the Markdown report of a run from its summary document alone."""
    return render_markdown(run_document(summary))


def _failures(doc: RunDocument) -> list[str]:
    failing = doc.failing()
    if not failing:
        return []
    lines = ["## Failures", ""]
    rows = []
    for row in failing:
        checks = [cid for cid in row.failed_checks if cid in row.checks] or [""]
        for cid in checks:
            cell = row.checks.get(cid)
            unit = unit_of(cid)
            rows.append([row.node, row.verdict or "-", cid or "-", fmt(cell.value, unit) if cell else "-",
                         limit_text(cell.minimum, cell.maximum, unit) if cell else "-",
                         (cell.reason if cell and cell.reason else row.reason)])
    lines += _table(["node", "verdict", "check", "measured", "limit", "reason"], rows)
    for row in failing:
        report = doc.reports.get(row.node)
        if report is None:
            continue
        detail = device_rows(report, row.failed_checks)
        if detail:
            lines += [f"### {row.node}: per device", ""]
            lines += _table(["check", "metric", "device", "value", "limit"],
                            [[cid, metric, "node" if dev is None else str(dev), fmt(value, unit),
                              limit_text(lo, hi, unit)] for cid, metric, dev, value, unit, lo, hi in detail])
    return lines


def _nodes(doc: RunDocument) -> list[str]:
    rows = list(doc.nodes)
    omitted = 0
    if len(rows) > MAX_NODE_ROWS:
        keep = [r for r in rows if r.verdict != "pass"][:MAX_NODE_ROWS]
        omitted = len(rows) - len(keep)
        rows = keep
    lines = ["## Nodes", ""]
    lines += _table(["node", "verdict", "failed checks", "profile", "driver", "probe", "duration", "report sha256"],
                    [[r.node, r.verdict or r.state, ", ".join(r.failed_checks) or "-", r.profile or "-",
                      r.driver_version or "-", r.probe_version or "-", fmt(r.duration_seconds, "s"),
                      f"`{r.report_sha256}`" if r.report_sha256 else "-"] for r in rows])
    if omitted:
        lines += [f"({omitted} passing nodes not listed; all are in summary.json.)", ""]
    return lines


def _checks(doc: RunDocument) -> list[str]:
    stats = doc.check_stats()
    ids = doc.check_ids()
    if not ids:
        return []
    rows = []
    for cid in ids:
        st = stats.get(cid) or {}
        unit = str(st.get("unit") or unit_of(cid))
        failed = sum(1 for r in doc.nodes if (c := r.checks.get(cid)) is not None and c.verdict in ("fail", "error"))
        lo, hi = check_limits(doc, cid)
        rows.append([cid, unit or "-", str(st.get("count", "-")), fmt(st.get("median")), fmt(st.get("mad")),
                     fmt(st.get("min")), fmt(st.get("max")), limit_text(lo, hi), str(failed)])
    return ["## Checks across the fleet", "",
            *_table(["check", "unit", "nodes", "median", "MAD", "min", "max", "limit", "failed on"], rows)]


def _outliers(doc: RunDocument) -> list[str]:
    outliers = doc.outliers()
    if not outliers:
        return []
    rows = [[str(o.get("node")), str(o.get("check")), fmt(o.get("value")), fmt(o.get("median")),
             f"{float(o.get('deviation') or 0):+.1%}", fmt(o.get("robustZ"))] for o in outliers]
    return ["## Fleet outliers", "", "Nodes far from the pool's median on a performance check (same run):", "",
            *_table(["node", "check", "value", "median", "deviation", "robust z"], rows)]


def _thresholds(profiles: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, profile in sorted(profiles.items()):
        thresholds = profile.get("thresholds") or {}
        lines += [f"## Thresholds of profile `{name}` ({profile.get('source', '?')})", ""]
        if not thresholds:
            lines += ["No thresholded checks ran under this profile.", ""]
            continue
        rows = []
        for cid, t in sorted(thresholds.items()):
            rule = ", ".join(f"{k} {v:g}" if isinstance(v, int | float) else f"{k} {v}"
                             for k, v in (t.get("rule") or {}).items()) or "-"
            basis = f"{t['basis']} {fmt(t.get('basisValue'), t.get('unit', ''))}" if t.get("basis") else "-"
            rows.append([cid, str(t.get("metric") or "-"), rule, basis,
                         limit_text(t.get("min"), t.get("max"), str(t.get("unit") or ""))])
        lines += _table(["check", "metric", "rule", "basis", "limit"], rows)
    return lines


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(str(v)) for v in row) + " |" for row in rows]
    return [*out, ""]

"""The Markdown report of a run: verdict, failures with measured values and limits, fleet tables, thresholds.

Pure (a string from a `RunDocument`). The operator stores it as `report.md` beside each
run's `summary.json`; `accelqual report --markdown` writes the same text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from accelqual.reporting.run import (
    CHECK_HEADER,
    FAILURE_HEADER,
    NODE_HEADER,
    OUTLIER_HEADER,
    THRESHOLD_HEADER,
    RunDocument,
    check_rows,
    device_rows,
    facts,
    failure_rows,
    fmt,
    limit_text,
    node_rows,
    outlier_rows,
    run_document,
    threshold_rows,
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
    lines += _table(["", ""], facts(doc))
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
    lines += _table(FAILURE_HEADER, failure_rows(doc))
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
    lines += _table(NODE_HEADER, [[*r[:-1], f"`{r[-1]}`" if r[-1] != "-" else "-"] for r in node_rows(rows)])
    if omitted:
        lines += [f"({omitted} passing nodes not listed; all are in summary.json.)", ""]
    return lines


def _checks(doc: RunDocument) -> list[str]:
    rows = check_rows(doc)
    return ["## Checks across the fleet", "", *_table(CHECK_HEADER, rows)] if rows else []


def _outliers(doc: RunDocument) -> list[str]:
    rows = outlier_rows(doc)
    if not rows:
        return []
    return ["## Fleet outliers", "", "Nodes far from the pool's median on a performance check (same run):", "",
            *_table(OUTLIER_HEADER, rows)]


def _thresholds(profiles: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, profile in sorted(profiles.items()):
        thresholds = profile.get("thresholds") or {}
        lines += [f"## Thresholds of profile `{name}` ({profile.get('source', '?')})", ""]
        if not thresholds:
            lines += ["No thresholded checks ran under this profile.", ""]
            continue
        lines += _table(THRESHOLD_HEADER, threshold_rows(profile))
    return lines


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(str(v)) for v in row) + " |" for row in rows]
    return [*out, ""]

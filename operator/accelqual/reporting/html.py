"""The HTML report: one self-contained file (plotly.js inline, no network), charts first, tables after.

Sections, each with a stable id: `aq-verdict` (header), `aq-check-distributions`,
`aq-verdict-matrix`, `aq-failures` (with `aq-device-<node>` charts where the node report
was read), `aq-nodes` (one row per node), `aq-checks`, `aq-outliers`, `aq-thresholds`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from accelqual.reporting import charts
from accelqual.reporting.run import (
    CHECK_HEADER,
    FAILURE_HEADER,
    NODE_HEADER,
    OUTLIER_HEADER,
    THRESHOLD_HEADER,
    RunDocument,
    check_rows,
    facts,
    failure_rows,
    node_rows,
    outlier_rows,
    threshold_rows,
)

#: The matrix shows every node up to this many; beyond, the nodes that did not pass.
MATRIX_MAX_NODES = 400
#: Per-device charts for at most this many failing nodes.
DEVICE_CHARTS_MAX = 50

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #212121; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } code { font-size: 0.85em; }
.verdict { display: inline-block; padding: 4px 12px; border-radius: 4px; color: white; font-weight: bold; }
.pass { background: #2e7d32; } .fail { background: #c62828; } .inconclusive { background: #ef6c00; }
td.v-pass { color: #2e7d32; } td.v-fail { color: #c62828; font-weight: bold; } td.v-inconclusive { color: #ef6c00; }
.note { color: #616161; font-size: 0.9em; }
"""


def render_html(doc: RunDocument) -> str:
    parts = [_header(doc)]
    parts.append(_figure_section("aq-check-distributions", "Per-check distributions", charts.distributions(doc),
                                 "Every node's primary value per check (worst device). Dashed lines are the fail "
                                 "limits; crosses are fleet outliers (far from the pool's median in this run)."))
    matrix_nodes = list(doc.nodes)
    note = "Each cell is one check on one node; hover for the value and its limit."
    if len(matrix_nodes) > MATRIX_MAX_NODES:
        matrix_nodes = [r for r in doc.nodes if r.verdict != "pass"][:MATRIX_MAX_NODES]
        note += f" Only the {len(matrix_nodes)} nodes that did not pass are shown ({len(doc.nodes)} in the run)."
    parts.append(_figure_section("aq-verdict-matrix", "Pass/fail matrix", charts.verdict_matrix(doc, matrix_nodes),
                                 note))
    parts.append(_failures(doc))
    parts.append(_nodes(doc))
    parts.append(_checks(doc))
    parts.append(_outliers(doc))
    parts.append(_thresholds(doc))
    body = "\n".join(p for p in parts if p)
    title = f"accelqual: {doc.qualification} run {doc.run_id}"
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{escape(title)}</title>\n"
            f"<style>{STYLE}</style>\n<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")


def _header(doc: RunDocument) -> str:
    c = doc.counts
    verdict = doc.verdict
    return (f"<section id=\"aq-verdict\"><h1>Qualification {escape(doc.qualification)}, run "
            f"{escape(doc.run_id)}</h1>\n<p><span class=\"verdict {verdict}\">{verdict.upper()}</span> "
            f"{c.get('passed', 0)} passed, {c.get('failed', 0)} failed, {c.get('inconclusive', 0)} inconclusive, "
            f"{c.get('skipped', 0)} skipped of {c.get('total', 0)} nodes</p>\n"
            + _table("aq-facts", ["", ""], facts(doc)) + "</section>")


def _figure_section(div_id: str, title: str, figure: go.Figure | None, note: str) -> str:
    if figure is None:
        return f"<section><h2>{escape(title)}</h2><p class=\"note\">No measured values in this run.</p></section>"
    html = figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                          config={"displaylogo": False, "responsive": True})
    return f"<section><h2>{escape(title)}</h2><p class=\"note\">{escape(note)}</p>\n{html}</section>"


def _failures(doc: RunDocument) -> str:
    failing = doc.failing()
    if not failing:
        return "<section id=\"aq-failures\"><h2>Failures</h2><p>No node failed or was inconclusive.</p></section>"
    parts = ["<section id=\"aq-failures\"><h2>Failures</h2>",
             _table("aq-failures-table", FAILURE_HEADER, failure_rows(doc), verdict_column=1)]
    shown = 0
    for row in failing:
        report = doc.reports.get(row.node)
        if report is None or shown >= DEVICE_CHARTS_MAX:
            continue
        figure = charts.device_detail(row.node, report, row.failed_checks)
        if figure is not None:
            parts.append(figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"aq-device-{row.node}",
                                        config={"displaylogo": False}))
            shown += 1
    if not doc.reports:
        parts.append("<p class=\"note\">Per-device detail needs the node reports: render from S3 "
                     "(<code>accelqual report s3://BUCKET/.../summary.json</code>) or from a run directory.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _nodes(doc: RunDocument) -> str:
    return ("<section><h2>Nodes</h2>" + _table("aq-nodes", NODE_HEADER, node_rows(doc.nodes), verdict_column=1,
                                               row_ids=[r.node for r in doc.nodes]) + "</section>")


def _checks(doc: RunDocument) -> str:
    return "<section><h2>Checks across the fleet</h2>" + _table("aq-checks", CHECK_HEADER, check_rows(doc)) \
        + "</section>"


def _outliers(doc: RunDocument) -> str:
    rows = outlier_rows(doc)
    if not rows:
        return ""
    return "<section><h2>Fleet outliers</h2>" + _table("aq-outliers", OUTLIER_HEADER, rows) + "</section>"


def _thresholds(doc: RunDocument) -> str:
    profiles = doc.summary.get("profiles") or {}
    if not profiles:
        return ""
    parts = ["<section id=\"aq-thresholds\"><h2>Profiles and thresholds</h2>"]
    for name, profile in sorted(profiles.items()):
        parts.append(f"<h3>{escape(name)} ({escape(str(profile.get('source', '?')))})</h3>")
        parts.append(_table(f"aq-thresholds-{name}", THRESHOLD_HEADER, threshold_rows(profile)))
        if profile.get("spec"):
            parts.append(f"<details><summary>nominal specs</summary><pre>"
                         f"{escape(json.dumps(profile['spec'], indent=1, sort_keys=True))}</pre></details>")
    parts.append("</section>")
    return "\n".join(parts)


def _table(table_id: str, header: Sequence[str], rows: Iterable[Sequence[str]], *, verdict_column: int | None = None,
           row_ids: Sequence[str] | None = None) -> str:
    out = [f"<table id=\"{escape(table_id)}\"><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header)
           + "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        attr = f" data-node=\"{escape(row_ids[i])}\"" if row_ids is not None else ""
        cells = []
        for j, value in enumerate(row):
            cls = f" class=\"v-{escape(value)}\"" if j == verdict_column else ""
            cells.append(f"<td{cls}>{escape(str(value))}</td>")
        out.append(f"<tr{attr}>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)

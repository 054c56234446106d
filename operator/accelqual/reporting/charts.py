"""The plotly figures of the HTML report: per-check distributions, the pass/fail matrix, per-device detail.

Each function returns a `plotly.graph_objects.Figure` built from a `RunDocument`; the
page (`reporting.html`) places them with fixed div ids, so a test can find them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import plotly.graph_objects as go
from accelqual_probes.schema import ProbeReport
from plotly.subplots import make_subplots

from accelqual.reporting.run import NodeRow, RunDocument, check_limits, device_rows, fmt, limit_text, unit_of

COLORS = {"pass": "#2e7d32", "warn": "#f9a825", "skip": "#9e9e9e", "error": "#6a1b9a", "fail": "#c62828",
          "inconclusive": "#ef6c00"}
#: Heatmap codes of check verdicts (the colour scale below follows the same order).
CODES = {"pass": 0, "warn": 1, "skip": 2, "error": 3, "fail": 4}
COLUMNS = 3


def _jitter(node: str) -> float:
    """A stable horizontal offset per node, so points of one check do not sit on top of each other."""
    return (int(hashlib.sha256(node.encode()).hexdigest()[:6], 16) / 0xFFFFFF - 0.5) * 0.6


def distributions(doc: RunDocument) -> go.Figure | None:
    """One panel per measured check: every node's value, the limit lines, outliers and failures marked."""
    checks = [cid for cid in doc.check_ids() if any(r.checks.get(cid) and r.checks[cid].value is not None
                                                    for r in doc.nodes)]
    if not checks:
        return None
    rows = math.ceil(len(checks) / COLUMNS)
    titles = [f"{cid} ({unit_of(cid)})" if unit_of(cid) else cid for cid in checks]
    fig = make_subplots(rows=rows, cols=COLUMNS, subplot_titles=titles, vertical_spacing=min(0.12, 0.6 / rows))
    outliers = {(str(o.get("node")), str(o.get("check"))) for o in doc.outliers()}
    legend_shown: set[str] = set()
    for i, cid in enumerate(checks):
        row, col = i // COLUMNS + 1, i % COLUMNS + 1
        points = [(r, r.checks[cid]) for r in doc.nodes if cid in r.checks and r.checks[cid].value is not None]
        values = [c.value for _, c in points]
        fig.add_trace(go.Box(y=values, x=[0.0] * len(values), name=cid, boxpoints=False, showlegend=False,
                             marker_color="#90a4ae", line_width=1, hoverinfo="skip"), row=row, col=col)
        for kind in ("pass", "warn", "fail", "error", "outlier"):
            chosen = [(r, c) for r, c in points if _kind(r, c, cid, outliers) == kind]
            if not chosen:
                continue
            fig.add_trace(go.Scatter(
                x=[_jitter(r.node) for r, _ in chosen], y=[c.value for _, c in chosen], mode="markers",
                name={"outlier": "fleet outlier"}.get(kind, kind), legendgroup=kind,
                showlegend=kind not in legend_shown,
                marker={"color": COLORS.get(kind, "#000000"), "size": 11 if kind == "outlier" else 8,
                        "symbol": "x" if kind == "outlier" else "circle", "line": {"width": 0.5}},
                text=[r.node for r, _ in chosen],
                customdata=[limit_text(c.minimum, c.maximum, unit_of(cid)) for _, c in chosen],
                hovertemplate="%{text}<br>%{y:.4g} " + unit_of(cid) + "<br>limit %{customdata}<extra></extra>",
            ), row=row, col=col)
            legend_shown.add(kind)
        low, high = check_limits(doc, cid)
        for bound, label in ((low, "min"), (high, "max")):
            if bound is not None:
                fig.add_hline(y=bound, line_dash="dash", line_color=COLORS["fail"], line_width=1.5,
                              annotation_text=f"{label} {fmt(bound)}", annotation_position="top right",
                              annotation_font_size=10, row=row, col=col)
        fig.update_xaxes(showticklabels=False, range=[-0.6, 0.6], row=row, col=col)
    fig.update_layout(height=max(360, 300 * rows), margin={"t": 60, "l": 50, "r": 20, "b": 30},
                      title="Per-check distribution across nodes (dashed: fail limits)", legend_orientation="h")
    return fig


def _kind(row: NodeRow, cell: object, check_id: str, outliers: set[tuple[str, str]]) -> str:
    if (row.node, check_id) in outliers:
        return "outlier"
    verdict = getattr(cell, "verdict", "")
    return verdict if verdict in ("pass", "warn", "fail", "error") else "pass"


def verdict_matrix(doc: RunDocument, nodes: Sequence[NodeRow]) -> go.Figure | None:
    """Nodes x checks, one colour per check verdict; hover shows the value and the limit."""
    checks = doc.check_ids()
    if not checks or not nodes:
        return None
    z: list[list[float | None]] = []
    text: list[list[str]] = []
    for row in nodes:
        codes: list[float | None] = []
        hover: list[str] = []
        for cid in checks:
            cell = row.checks.get(cid)
            if cell is None:
                codes.append(None)
                hover.append("not run")
                continue
            codes.append(CODES.get(cell.verdict, 3))
            unit = unit_of(cid)
            limit = limit_text(cell.minimum, cell.maximum, unit)
            hover.append(f"{cell.verdict}: {fmt(cell.value, unit)} (limit {limit})"
                         + (f"<br>{cell.reason[:120]}" if cell.reason else ""))
        z.append(codes)
        text.append(hover)
    scale = []
    order = ["pass", "warn", "skip", "error", "fail"]
    for i, verdict in enumerate(order):
        scale += [[i / len(order), COLORS[verdict]], [(i + 1) / len(order), COLORS[verdict]]]
    fig = go.Figure(go.Heatmap(
        z=z, x=checks, y=[f"{r.node} ({r.verdict or r.state})" for r in nodes], text=text, zmin=-0.5, zmax=4.5,
        colorscale=scale, xgap=2, ygap=2,
        hovertemplate="%{y}<br>%{x}: %{text}<extra></extra>",
        colorbar={"tickvals": list(range(len(order))), "ticktext": order, "title": "verdict"},
    ))
    fig.update_layout(title="Pass/fail matrix (nodes x checks)", height=max(320, 80 + 24 * len(nodes)),
                      margin={"t": 50, "l": 200, "r": 20, "b": 120}, yaxis_autorange="reversed")
    return fig


def device_detail(node: str, report: ProbeReport, checks: Sequence[str]) -> go.Figure | None:
    """A failed node's failing checks, per device: each measurement beside its limit."""
    rows = device_rows(report, checks)
    if not rows:
        return None
    panels = sorted({(cid, metric) for cid, metric, *_ in rows})
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[f"{c}: {m}" for c, m in panels])
    for i, (cid, metric) in enumerate(panels, start=1):
        mine = [r for r in rows if r[0] == cid and r[1] == metric]
        labels = ["node" if dev is None else f"device {dev}" for _, _, dev, *_ in mine]
        values = [value for _, _, _, value, *_ in mine]
        colors = [COLORS["fail"] if (lo is not None and v < lo) or (hi is not None and v > hi) else COLORS["pass"]
                  for (_, _, _, v, _, lo, hi) in mine]
        fig.add_trace(go.Bar(x=labels, y=values, marker_color=colors, showlegend=False,
                             hovertemplate="%{x}: %{y:.4g} " + (mine[0][4] or "") + "<extra></extra>"),
                      row=1, col=i)
        lo, hi = mine[0][5], mine[0][6]
        for bound, label in ((lo, "min"), (hi, "max")):
            if bound is not None:
                fig.add_hline(y=bound, line_dash="dash", line_color=COLORS["fail"],
                              annotation_text=f"{label} {fmt(bound)}", row=1, col=i)
    fig.update_layout(title=f"{node}: failing checks per device (dashed: limits)", height=340,
                      margin={"t": 70, "l": 50, "r": 20, "b": 40})
    return fig

"""`accelqual report`: a demo run (simulated cluster, modelled probes) rendered to HTML and Markdown from every
kind of source, with the node reports' digests verified on read."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from accelqual.cli import main
from accelqual.reporting import charts
from accelqual.reporting.sources import load
from accelqual.sim.cluster import BUCKET, SimulatedCluster
from accelqual.sim.modelled import ModelledProbeRunner
from accelqual.sim.s3 import ACCESS_KEY, REGION, SECRET_KEY
from accelqual.sim.simulate import FAULTS, outcome

from tests.e2e.helpers import qualification, sim_nodes
from tests.support.reports import as_first_version

NODES = 6
FAULTY = {1: "slow-memory=0.25", 4: "residual-memory"}


@dataclass(frozen=True)
class DemoRun:
    """A finished run: its `accelqual simulate --json`-shaped output, and the S3 it left its evidence in."""

    simulate_json: Path
    summary_uri: str
    endpoint: str
    run_dir: Path
    cluster: SimulatedCluster


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    out = tmp_path_factory.mktemp("demo")
    with SimulatedCluster(runner=ModelledProbeRunner(duration=0.2), kubelet_interval=0.05) as cluster:
        cluster.add_nodes(sim_nodes(NODES, faults={i: [f] for i, f in FAULTY.items()}))
        cluster.start_operator()
        cluster.apply(qualification(report=cluster.report_spec()))
        obj = cluster.wait_for_phase("e2e", timeout=60)
        assert cluster.s3 is not None
        uri = obj["status"]["reportURI"]
        faults = {f"node-{i}": next(f for f in FAULTS if f.inject == inject) for i, inject in FAULTY.items()}
        result = outcome(cluster, faults, obj)  # what `accelqual simulate --json` writes
        result["summaryDocument"] = json.loads(cluster.s3.read(BUCKET, uri.removeprefix(f"s3://{BUCKET}/")))
        simulate_json = out / "simulate.json"
        simulate_json.write_text(json.dumps(result))
        run_dir = out / "run"  # the run's S3 prefix, as `aws s3 sync` would copy it
        prefix = uri.removeprefix(f"s3://{BUCKET}/").removesuffix("summary.json")
        for key in cluster.s3.keys(BUCKET, prefix):
            target = run_dir / key.removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(cluster.s3.read(BUCKET, key))
        yield DemoRun(simulate_json, uri, cluster.s3.endpoint, run_dir, cluster)


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)


class Page(HTMLParser):
    """What a reader of the HTML sees: element ids, table rows per table, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.rows: dict[str, list[list[str]]] = {}
        self.row_nodes: dict[str, list[str]] = {}
        self.script_sources: list[str] = []
        self.scripts: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "table":
            self._table = str(a.get("id"))
            self.rows.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            if a.get("data-node"):
                self.row_nodes.setdefault(self._table, []).append(str(a["data-node"]))
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "script":
            self._in_script = True
            self.scripts.append("")
            if a.get("src"):
                self.script_sources.append(str(a["src"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._table is not None and self._row:
            self.rows[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_script:
            self.scripts[-1] += data


def parse_page(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def plotted(page: Page, div_id: str) -> dict[str, Any]:
    """The data and layout plotly draws into `div_id`, from the page's own script."""
    script = next(s for s in page.scripts if f'"{div_id}"' in s and "Plotly.newPlot" in s)
    match = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"displaylogo',
                      script, re.S)
    assert match is not None, f"no plot drawn into {div_id}"
    return {"data": json.loads(match.group(1)), "layout": json.loads(match.group(2))}


def test_demo_run_renders_to_one_self_contained_html_with_charts_and_tables(demo: DemoRun, tmp_path: Path) -> None:
    html = tmp_path / "report.html"

    code = main(["report", str(demo.simulate_json), "--html", str(html)])

    assert code == 0
    page = parse_page(html)
    assert page.script_sources == [], "no script is loaded from anywhere: the file stands alone"
    assert any("plotly.js" in s and len(s) > 1_000_000 for s in page.scripts), "plotly.js is inline"
    assert {"aq-verdict", "aq-check-distributions", "aq-verdict-matrix", "aq-failures", "aq-nodes", "aq-checks",
            "aq-thresholds"} <= page.ids
    # One row per node in the fleet table, failures first, verdicts as the operator decided them.
    assert sorted(page.row_nodes["aq-nodes"]) == [f"node-{i}" for i in range(NODES)]
    verdicts = {row[0]: row[1] for row in page.rows["aq-nodes"]}
    assert verdicts == {f"node-{i}": ("fail" if i in FAULTY else "pass") for i in range(NODES)}
    assert page.row_nodes["aq-nodes"][:2] == ["node-1", "node-4"]
    failures = {(row[0], row[2]) for row in page.rows["aq-failures-table"]}
    assert failures == {("node-1", "perf.membw"), ("node-4", "sec.residual")}
    # The matrix has every node and check; the distribution marks the failing value and the limit line.
    matrix = plotted(page, "aq-verdict-matrix")
    assert len(matrix["data"][0]["y"]) == NODES
    assert "perf.membw" in matrix["data"][0]["x"]
    distribution = plotted(page, "aq-check-distributions")
    failed_points = [t for t in distribution["data"] if t.get("name") == "fail"]
    assert any("node-1" in t["text"] for t in failed_points)
    assert any(shape.get("line", {}).get("dash") == "dash" for shape in distribution["layout"]["shapes"])
    # The summary alone has no node reports: the page says where per-device detail comes from.
    assert "Per-device detail needs the node reports" in html.read_text()


def test_report_from_s3_reads_verifies_and_charts_the_failed_nodes_per_device(
        demo: DemoRun, s3_env: None, tmp_path: Path) -> None:
    html, markdown = tmp_path / "r.html", tmp_path / "r.md"

    code = main(["report", demo.summary_uri, "--endpoint", demo.endpoint, "--html", str(html),
                 "--markdown", str(markdown)])

    assert code == 0
    page = parse_page(html)
    assert {"aq-device-node-1", "aq-device-node-4"} <= page.ids
    detail = plotted(page, "aq-device-node-1")
    assert detail["data"][0]["x"] == ["device 0"]
    text = markdown.read_text()
    assert "### node-1: per device" in text
    assert "| node-1 | fail | perf.membw |" in text


def test_a_run_directory_copied_from_s3_renders_like_s3(demo: DemoRun, tmp_path: Path) -> None:
    doc = load(str(demo.run_dir), all_reports=True)

    assert sorted(doc.reports) == [f"node-{i}" for i in range(NODES)]
    assert doc.verdict == "fail"
    figure = charts.distributions(doc)
    assert figure is not None
    assert {t.name for t in figure.data} >= {"pass", "fail"}


def test_a_node_report_changed_after_the_run_is_refused_loudly(demo: DemoRun, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    tampered = tmp_path / "run"
    for path in demo.run_dir.rglob("*"):
        if path.is_file():
            target = tampered / path.relative_to(demo.run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    report = tampered / "nodes" / "node-1.json"
    doc = json.loads(report.read_text())
    doc["verdict"] = "pass"  # someone turns a failed node into a passed one
    report.write_text(json.dumps(doc))

    code = main(["report", str(tampered), "--html", str(tmp_path / "out.html")])

    assert code == 3
    err = capsys.readouterr().err
    assert "EVIDENCE INTEGRITY FAILURE" in err and "node-1" in err
    assert not (tmp_path / "out.html").exists()


def test_a_tampered_report_in_s3_is_refused(demo: DemoRun, s3_env: None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.cluster.s3 is not None
    client = demo.cluster.s3.client()
    prefix = demo.summary_uri.removeprefix(f"s3://{BUCKET}/").removesuffix("summary.json")
    key = f"{prefix}nodes/node-4.json"
    original = demo.cluster.s3.read(BUCKET, key)
    client.put_object(Bucket=BUCKET, Key=key, Body=original.replace(b'"fail"', b'"pass"'))
    try:
        code = main(["report", demo.summary_uri, "--endpoint", demo.endpoint])
    finally:
        client.put_object(Bucket=BUCKET, Key=key, Body=original)

    assert code == 3
    assert hashlib.sha256(original).hexdigest() in capsys.readouterr().err


def test_a_single_probe_report_renders_with_its_devices(demo: DemoRun, tmp_path: Path) -> None:
    single = tmp_path / "probe.json"
    single.write_bytes((demo.run_dir / "nodes" / "node-4.json").read_bytes())
    html = tmp_path / "probe.html"

    assert main(["report", str(single), "--html", str(html)]) == 0

    page = parse_page(html)
    assert page.row_nodes["aq-nodes"] == ["node-4"]
    assert "aq-device-node-4" in page.ids


def test_a_probe_report_of_the_first_schema_version_still_renders(demo: DemoRun, tmp_path: Path) -> None:
    """Evidence stored before schema v2 (one object per measured value) stays readable, and reads the same."""
    current = (demo.run_dir / "nodes" / "node-4.json").read_bytes()
    doc = as_first_version(json.loads(current))
    assert any("device" in m for check in doc["checks"] for m in check["measurements"])
    pages = {}
    for version, body in (("v1", json.dumps(doc).encode()), ("v2", current)):
        source, page = tmp_path / version / "probe.json", tmp_path / f"{version}.html"
        source.parent.mkdir()
        source.write_bytes(body)
        assert main(["report", str(source), "--html", str(page)]) == 0
        pages[version] = page.read_text().replace(str(source), "SOURCE")
    assert "aq-device-node-4" in parse_page(tmp_path / "v1.html").ids
    assert pages["v1"] == pages["v2"]  # the same cards, values and limits


def test_markdown_goes_to_stdout_by_default(demo: DemoRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(demo.run_dir / "summary.json")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Qualification `e2e`")
    assert "## Thresholds of profile `cpu-reference` (built-in)" in out


def test_what_is_not_a_run_is_a_clear_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": "world"}')

    assert main(["report", str(bogus)]) == 2
    assert "neither a run summary" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.json")]) == 2

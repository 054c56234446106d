"""`accelqual report` verifies every digest on read, up to the one the cluster holds.

tests/reporting/test_report_rendering.py covers a node report changed in a run directory and in
S3. Here: the human report, the evidence of a rejected output (now named by the summary too), and
the summary itself, checked with `--sha256` against the Qualification's `status.reportSHA256`
(and one node report against its node's `accelqual.io/report-sha256`): without that anchor,
whoever can rewrite the bucket could rewrite a report and the summary's digest of it together.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from accelqual.cli import main
from accelqual.sim.cluster import BUCKET, SimulatedCluster
from accelqual.sim.modelled import ModelledProbeRunner
from accelqual.sim.s3 import ACCESS_KEY, REGION, SECRET_KEY

from tests.e2e.helpers import qualification, sim_nodes

INTEGRITY = 3


@dataclass(frozen=True)
class Run:
    run_dir: Path
    summary_uri: str
    summary_sha256: str
    node_sha256: dict[str, str]
    cluster: SimulatedCluster


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with SimulatedCluster(runner=ModelledProbeRunner(duration=0.2), kubelet_interval=0.05) as cluster:
        cluster.add_nodes(sim_nodes(3, faults={1: ["slow-memory=0.25"]}, behaviours={2: "garbage"}))
        cluster.start_operator()
        cluster.apply(qualification(report=cluster.report_spec()))
        status = cluster.wait_for_phase("e2e", timeout=60)["status"]
        assert cluster.s3 is not None
        prefix = status["reportURI"].removeprefix(f"s3://{BUCKET}/").removesuffix("summary.json")
        run_dir = tmp_path_factory.mktemp("run") / "run"
        for key in cluster.s3.keys(BUCKET, prefix):
            target = run_dir / key.removeprefix(prefix)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(cluster.s3.read(BUCKET, key))
        marks = {name: node["metadata"]["annotations"]["accelqual.io/report-sha256"]
                 for name, node in cluster.nodes().items()}
        yield Run(run_dir, status["reportURI"], status["reportSHA256"], marks, cluster)


@pytest.fixture
def copy(run: Run, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run.run_dir, target)
    return target


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)


def _report(*args: str) -> int:
    return main(["report", *args, "--markdown", "-"])


def test_an_untouched_run_verifies_against_the_status_digest(run: Run, copy: Path) -> None:
    assert _report(str(copy), "--all-reports", "--sha256", run.summary_sha256) == 0


def test_a_changed_human_report_is_refused(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    human = copy / "report.md"
    human.write_text(human.read_text().replace("| fail |", "| pass |"))

    assert _report(str(copy)) == INTEGRITY
    assert "report.md does not match" in capsys.readouterr().err


def test_changed_evidence_of_a_rejected_output_is_refused(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = copy / "nodes" / "node-2.json"
    doc = json.loads(record.read_text())
    assert doc["schemaVersion"] == "accelqual.io/v1/rejected-output"  # what the garbage-printing node sent
    doc["outputExcerpt"] = "nothing to see here"
    record.write_text(json.dumps(doc))

    assert _report(str(copy), "--all-reports") == INTEGRITY
    assert "node-2" in capsys.readouterr().err


def test_a_summary_rewritten_with_its_report_is_caught_by_the_status_digest(
        run: Run, copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = copy / "nodes" / "node-1.json"
    forged = report.read_bytes().replace(b'"fail"', b'"pass"')
    report.write_bytes(forged)
    summary_path = copy / "summary.json"
    summary = json.loads(summary_path.read_text())
    for row in summary["nodes"]:
        if row["node"] == "node-1":
            row["reportSha256"] = hashlib.sha256(forged).hexdigest()
    summary_path.write_text(json.dumps(summary))
    assert _report(str(copy)) == 0  # consistent with itself: only the cluster's digest can tell

    assert _report(str(copy), "--sha256", run.summary_sha256) == INTEGRITY
    assert run.summary_sha256 in capsys.readouterr().err


def test_one_node_report_verifies_against_its_node_annotation(run: Run, copy: Path) -> None:
    report = copy / "nodes" / "node-1.json"
    assert _report(str(report), "--sha256", run.node_sha256["node-1"]) == 0
    report.write_bytes(report.read_bytes().replace(b'"fail"', b'"pass"'))
    assert _report(str(report), "--sha256", run.node_sha256["node-1"]) == INTEGRITY


def test_the_summary_in_s3_is_checked_against_the_status_digest(run: Run, s3_env: None) -> None:
    assert run.cluster.s3 is not None
    endpoint = run.cluster.s3.endpoint
    assert _report(run.summary_uri, "--endpoint", endpoint, "--sha256", run.summary_sha256) == 0
    assert _report(run.summary_uri, "--endpoint", endpoint, "--sha256", "0" * 64) == INTEGRITY

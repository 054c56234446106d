"""The operator's /metrics, scraped over HTTP from the real operator and parsed as Prometheus parses it."""

from __future__ import annotations

import json
import urllib.request

import pytest
from accelqual.sim.cluster import BUCKET, SimulatedCluster
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.e2e.helpers import POOL, qualification, sim_nodes

Labels = dict[str, str]


def scrape(cluster: SimulatedCluster) -> list[Sample]:
    assert cluster.metrics.port, "the operator serves /metrics"
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.metrics.port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {len(found)} series"
    return found[0]


def series(samples: list[Sample], name: str, **labels: str) -> list[Labels]:
    return [s.labels for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def test_metrics_show_the_runs_verdicts_values_and_actions_and_reset_per_run(cluster: SimulatedCluster) -> None:
    cluster.add_nodes(sim_nodes(2, prefix="a", labels={"rack": "a"}))
    cluster.add_nodes(sim_nodes(1, prefix="b", labels={"rack": "b"}, faults={0: ["slow-memory=0.25"]}))
    cluster.start_operator(metrics_port=0)
    cluster.apply(qualification(report=cluster.report_spec()))
    status = cluster.wait_for_phase("e2e", timeout=60)["status"]
    assert cluster.s3 is not None
    summary = json.loads(cluster.s3.read(BUCKET, status["reportURI"].removeprefix(f"s3://{BUCKET}/")))
    measured = {row["node"]: row["checks"] for row in summary["nodes"]}

    samples = scrape(cluster)

    assert value(samples, "accelqual_build_info") == 1
    assert value(samples, "accelqual_qualification_phase", qualification="e2e", phase="Completed") == 1
    assert value(samples, "accelqual_qualification_phase", qualification="e2e", phase="Running") == 0
    assert value(samples, "accelqual_run_nodes", qualification="e2e", state="failed") == 1
    assert value(samples, "accelqual_run_nodes", qualification="e2e", state="passed") == 2
    assert value(samples, "accelqual_runs_started_total", qualification="e2e") == 1
    assert value(samples, "accelqual_runs_finished_total", qualification="e2e", phase="Completed") == 1
    for node, verdict in (("a-0", "pass"), ("a-1", "pass"), ("b-0", "fail")):
        assert value(samples, "accelqual_node_verdict", qualification="e2e", node=node, verdict=verdict) == 1
        other = "fail" if verdict == "pass" else "pass"
        assert value(samples, "accelqual_node_verdict", qualification="e2e", node=node, verdict=other) == 0
    # Measured values per node and check are the ones in the run's evidence, with their unit.
    for node, checks in measured.items():
        assert value(samples, "accelqual_check_value", qualification="e2e", node=node, check="perf.membw",
                     unit="GB/s") == pytest.approx(checks["perf.membw"]["value"])
    assert value(samples, "accelqual_check_failed_nodes", qualification="e2e", check="perf.membw") == 1
    assert value(samples, "accelqual_check_failed_nodes", qualification="e2e", check="gen.inventory") == 0
    assert value(samples, "accelqual_check_duration_seconds_count", qualification="e2e", check="perf.membw") == 3
    assert value(samples, "accelqual_taint_actions_total", qualification="e2e", action="add",
                 key="accelqual.io/failed") == 1
    assert value(samples, "accelqual_evidence_backlog", qualification="e2e") == 0
    assert value(samples, "accelqual_evidence_uploads_total", result="ok") >= 5  # 3 reports, report.md, summary
    assert value(samples, "accelqual_run_progress_timestamp_seconds", qualification="e2e") >= value(
        samples, "accelqual_run_started_timestamp_seconds", qualification="e2e")

    # A new run over a smaller pool: the per-node series of the last run are gone (bounded cardinality).
    cluster.apply(qualification(nodeSelector={"matchLabels": {**POOL, "rack": "a"}}, report=cluster.report_spec()))
    cluster.wait_for_phase("e2e", run_id=status["runId"], timeout=60)

    samples = scrape(cluster)

    assert value(samples, "accelqual_runs_started_total", qualification="e2e") == 2
    assert {s["node"] for s in series(samples, "accelqual_node_verdict", qualification="e2e")} == {"a-0", "a-1"}
    assert {s["node"] for s in series(samples, "accelqual_check_value", qualification="e2e")} == {"a-0", "a-1"}
    assert value(samples, "accelqual_check_failed_nodes", qualification="e2e", check="perf.membw") == 0
    assert value(samples, "accelqual_run_nodes", qualification="e2e", state="total") == 2


def test_a_run_halted_by_the_failure_budget_is_counted(cluster: SimulatedCluster) -> None:
    cluster.add_nodes(sim_nodes(4, faults={i: ["missing-device"] for i in range(3)}))
    cluster.start_operator(metrics_port=0)
    cluster.apply(qualification(failureBudget=1))
    cluster.wait_for_phase("e2e", phases=("Halted",), timeout=60)

    samples = scrape(cluster)

    assert value(samples, "accelqual_qualification_phase", qualification="e2e", phase="Halted") == 1
    assert value(samples, "accelqual_failure_budget_halts_total", qualification="e2e") == 1
    assert value(samples, "accelqual_runs_finished_total", qualification="e2e", phase="Halted") == 1
    assert value(samples, "accelqual_taint_actions_total", qualification="e2e", action="add",
                 key="accelqual.io/failed") == 1  # the one failure within the budget, then no more

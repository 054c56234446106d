"""`accelqual simulate`: the embedded default with real probes on this CPU (the acceptance run of the demo)."""

from __future__ import annotations

import json
from pathlib import Path

from accelqual.cli import main


def test_simulated_fleet_catches_every_fault_and_fails_no_healthy_node(tmp_path: Path) -> None:
    out = tmp_path / "out.json"

    code = main(["simulate", "--nodes", "8", "--faulty", "3", "--seed", "11", "--json", str(out)])

    result = json.loads(out.read_text())
    assert code == 0, result["summary"]
    assert result["summary"] == {"nodes": 8, "faulty": 3, "caught": 3, "missed": 0, "falseFailures": 0}
    faulty = {n["name"] for n in result["nodes"] if n["injectedFaults"]}
    tainted = {n["name"] for n in result["nodes"] if n["tainted"]}
    assert tainted == faulty
    status = result["qualification"]["status"]
    assert status["phase"] == "Completed"
    assert status["summary"]["failed"] == 3
    assert status["summary"]["passed"] == 5
    assert {f["node"] for f in status["failingNodes"]} == faulty
    # The run's summary was read back from S3 before the simulation ended.
    assert result["reportURI"].startswith("s3://accelqual-evidence/")
    document = result["summaryDocument"]
    assert document["runId"] == status["runId"]
    assert len(document["nodes"]) == 8


def test_more_faulty_nodes_than_nodes_is_a_usage_error() -> None:
    assert main(["simulate", "--nodes", "2", "--faulty", "3"]) == 2

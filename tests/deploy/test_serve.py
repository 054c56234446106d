"""The README's flow, literally: `accelqual simulate --serve`, then the real kubectl against it.

The served cluster is started as a user would start it (a subprocess of the `accelqual`
command); kubectl is the v1.33 binary from .tools/bin. The test applies
examples/qualification.yaml unchanged, waits until `kubectl get aq` shows the run finished,
and reads the verdicts and taints back with kubectl.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from accelqual.constants import DEFAULT_FAILURE_TAINT_KEY, LABEL_VERDICT
from accelqual.sim.serve import serve_fleet

from tests.deploy.manifests import EXAMPLES

NODES, FAULTY, SEED = 10, 1, 7  # one faulty node in ten stays within the example's 10% failure budget
QUALIFICATION = "h100-delivery-2026-11"  # metadata.name in examples/qualification.yaml


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    kubeconfig: Path
    log: Path
    kubectl_binary: Path

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(self.kubectl_binary), "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=60, check=False)
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}\n{self.log.read_text()[-3000:]}"
        return done


@pytest.fixture(scope="module")
def served(kubectl: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("serve")
    kubeconfig, log = folder / "kubeconfig", folder / "serve.log"
    command = [str(Path(sys.executable).parent / "accelqual"), "simulate", "--serve", "--nodes", str(NODES),
               "--faulty", str(FAULTY), "--seed", str(SEED), "--kubeconfig", str(kubeconfig)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 90
        while not kubeconfig.exists():
            assert process.poll() is None, f"simulate --serve exited with {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no kubeconfig after 90 s:\n{log.read_text()}"
            time.sleep(0.2)
        yield Served(process, kubeconfig, log, kubectl)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _phase_column(table: str) -> str:
    header, *rows = table.strip().splitlines()
    columns = header.split()
    assert columns[:2] == ["NAME", "PHASE"], header
    row = next(r.split() for r in rows if r.split()[0] == QUALIFICATION)
    return row[1]


@pytest.fixture(scope="module")
def finished(served: Served) -> Served:
    """examples/qualification.yaml applied with kubectl and its run finished, as `kubectl get aq` shows it."""
    applied = served.kubectl("apply", "-f", str(EXAMPLES / "qualification.yaml"))
    assert f"qualification.accelqual.io/{QUALIFICATION} created" in applied.stdout
    deadline = time.monotonic() + 180
    phase = ""
    while phase not in ("Completed", "Halted"):
        assert time.monotonic() < deadline, f"still {phase!r} after 180 s:\n{served.log.read_text()[-3000:]}"
        time.sleep(1)
        phase = _phase_column(served.kubectl("get", "aq").stdout)
    return served


def test_kubectl_get_aq_shows_the_run_completed_with_the_faulty_node_failed(finished: Served) -> None:
    table = finished.kubectl("get", "aq").stdout
    header, row = table.strip().splitlines()

    assert header.split() == ["NAME", "PHASE", "PASSED", "FAILED", "TOTAL", "AGE"]
    assert row.split()[:5] == [QUALIFICATION, "Completed", str(NODES - FAULTY), str(FAULTY), str(NODES)]


def test_kubectl_reads_taints_only_on_the_faulty_node(finished: Served) -> None:
    _, faults = serve_fleet(NODES, FAULTY, SEED)
    nodes = json.loads(finished.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    tainted = {n["metadata"]["name"] for n in nodes
               if any(t["key"] == DEFAULT_FAILURE_TAINT_KEY for t in n["spec"].get("taints") or [])}
    verdicts = {n["metadata"]["name"]: n["metadata"]["labels"].get(LABEL_VERDICT) for n in nodes}

    assert len(nodes) == NODES
    assert tainted == set(faults)
    assert {name for name, verdict in verdicts.items() if verdict == "fail"} == set(faults)
    assert {name for name, verdict in verdicts.items() if verdict == "pass"} == set(verdicts) - set(faults)


def test_kubectl_describe_node_says_which_check_failed_and_where_the_evidence_is(finished: Served) -> None:
    _, faults = serve_fleet(NODES, FAULTY, SEED)
    node, fault = next(iter(faults.items()))
    described = finished.kubectl("describe", "node", node).stdout

    assert f"Taints:             {DEFAULT_FAILURE_TAINT_KEY}=true:NoSchedule" in described
    failed = next(line for line in described.splitlines() if "accelqual.io/failed-checks:" in line)
    assert any(check in failed for check in fault.owners), failed
    assert "accelqual.io/report-uri: s3://my-qualification-evidence/accelqual/" in described


def test_kubectl_describe_node_lists_the_operators_events(finished: Served) -> None:
    _, faults = serve_fleet(NODES, FAULTY, SEED)
    described = finished.kubectl("describe", "node", next(iter(faults))).stdout

    assert "accelqual-operator" in described.split("Events:", 1)[1]


def test_applying_the_example_again_changes_nothing(finished: Served) -> None:
    again = finished.kubectl("apply", "-f", str(EXAMPLES / "qualification.yaml"))

    assert f"qualification.accelqual.io/{QUALIFICATION} unchanged" in again.stdout


def test_serve_stops_cleanly_on_sigterm(finished: Served) -> None:
    finished.process.send_signal(signal.SIGTERM)

    assert finished.process.wait(timeout=60) == 0
    assert "stopping the simulated cluster" in finished.log.read_text()

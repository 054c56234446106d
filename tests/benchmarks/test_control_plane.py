"""The control-plane benchmark runs end to end on a small fleet; no timing is asserted (a shared host is noisy).

What is asserted is what its numbers rest on: the run completes with the seeded faults
failed, the requests are counted at the emulator per node, the calibration and the machine
are recorded, and the summary is the last line printed.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any

import pytest

from benchmarks import control_plane, make_performance_doc

NODES = 60
FAULTY = 2  # within the benchmark's 5% failure budget: more would halt the run


@pytest.fixture(scope="module")
def run_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[str]]:
    path = tmp_path_factory.mktemp("control-plane") / "cp.json"
    out = io.StringIO()  # capsys is function-scoped; the run is shared by the module's tests
    with contextlib.redirect_stdout(out):
        code = control_plane.main(["--nodes", str(NODES), "--faulty", str(FAULTY), "--warmup", "1",
                                   "--calibrations", "1", "--calibrate-every", "2", "--timeout", "120",
                                   "--json", str(path)])
    assert code in (0, 1)  # whether the targets were met is a measurement, not a test outcome
    return json.loads(path.read_text()), out.getvalue().splitlines()


def test_the_run_completes_and_fails_exactly_the_seeded_faulty_nodes(
        run_output: tuple[dict[str, Any], list[str]]) -> None:
    data, _ = run_output
    assert data["phase"] == "Completed"
    assert data["summary"]["total"] == NODES
    assert data["summary"]["failed"] == FAULTY
    assert data["summary"]["passed"] == NODES - FAULTY


def test_requests_are_counted_at_the_emulator_per_node(run_output: tuple[dict[str, Any], list[str]]) -> None:
    data, _ = run_output
    requests = data["requests_by_key"]
    # One probe pod per node, created, read and deleted once; each node marked once.
    for key in ("create pods", "delete pods", "get pods/log", "patch nodes"):
        assert requests[key] == NODES, key
    # The kubelet runs in its fleet mode: its bindings and pod status go into the store, not over HTTP.
    assert data["kubelet_mode"] == "fleet"
    assert "patch pods/status" not in requests and "patch pods" not in requests
    operator_mutating = sum(requests.get(k, 0) for k in control_plane.OPERATOR_MUTATING)
    assert data["mutating_per_node"] == pytest.approx(operator_mutating / NODES, abs=1e-3)
    assert data["operator_cpu_seconds"] > 0 and data["rss_mb"] > 0
    assert data["status_kib"] > 0


def test_the_calibration_and_the_machine_are_recorded(run_output: tuple[dict[str, Any], list[str]]) -> None:
    data, _ = run_output
    assert data["calibration_us_idle"] > 0
    if data["calibrations_during_run"]:
        assert data["co_run_slowdown"] == pytest.approx(
            data["calibration_us_during_run"] / data["calibration_us_idle"], abs=0.01)
        assert data["cpu_per_node_in_calibrations"] == pytest.approx(
            data["cpu_ms_per_node"] * 1000 / data["calibration_us_during_run"], rel=0.01)
    else:
        assert data["co_run_slowdown"] is None and data["cpu_per_node_in_calibrations"] is None
    machine = data["machine"]
    assert machine["cores"] and machine["cpu"] and machine["python"]
    assert len(machine["load_average_start"]) == 3 and len(machine["load_average_end"]) == 3


def test_the_operator_ran_with_its_default_pacing_and_stopped_cleanly_on_sigterm(
        run_output: tuple[dict[str, Any], list[str]]) -> None:
    data, _ = run_output
    assert data["io_batch_ms"] == 50
    assert data["reconcile_wait_factor"] == 20
    assert (data["probe_seconds"], data["probe_jitter"]) == (0.0, 0.0)  # reports ready at once: the control plane alone
    assert data["operator_exit_code"] == 0, data["operator_stderr_tail"]
    # The reconcile daemon returned when told to stop, rather than being cancelled by kopf.
    assert "is cancelled" not in data["operator_stderr_tail"]


def test_the_summary_is_the_last_line_printed(run_output: tuple[dict[str, Any], list[str]]) -> None:
    data, lines = run_output
    assert lines[-1].startswith(f"SUMMARY nodes={NODES} completed=True targets_met=")
    assert f"cpu_ms_per_node={data['cpu_ms_per_node']}" in lines[-1]


def test_the_document_shows_the_run_with_its_machine(run_output: tuple[dict[str, Any], list[str]]) -> None:
    data, _ = run_output
    doc = make_performance_doc.render([], [data])
    assert (f"{NODES} simulated nodes; operator `--io-batch-ms 50 --reconcile-wait-factor 20`; "
            "benchmark `--kubelet fleet --probe-seconds 0 --probe-jitter 0`; phase Completed") in doc
    assert f"cpu {data['machine']['cpu']}" in doc
    assert "records no machine" not in doc
    assert ("Calibration: a fixed piece of operator-like work" in doc) == (data["co_run_slowdown"] is not None)


@pytest.mark.parametrize("executable", ["/bin/false", "/nonexistent/python"])
def test_a_failed_calibration_is_missing_not_fatal(monkeypatch: pytest.MonkeyPatch, executable: str) -> None:
    monkeypatch.setattr(sys, "executable", executable)
    assert control_plane.calibrate(10) is None


@pytest.mark.parametrize("value", ["-5", "1001", "nan"])
def test_an_io_batch_interval_the_operator_would_refuse_is_a_usage_error(value: str) -> None:
    """Refused before a cluster is built, rather than an operator that exits at once and a run that waits."""
    with pytest.raises(SystemExit) as exited:
        control_plane.main(["--nodes", "1", "--io-batch-ms", value])
    assert exited.value.code == 2


@pytest.mark.parametrize("value", ["-0.1", "1.5", "half"])
def test_a_probe_jitter_outside_0_to_1_is_a_usage_error(value: str) -> None:
    with pytest.raises(SystemExit) as exited:
        control_plane.main(["--nodes", "1", "--probe-jitter", value])
    assert exited.value.code == 2

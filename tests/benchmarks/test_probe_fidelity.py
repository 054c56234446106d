"""The probe-fidelity benchmark runs end to end on tiny sizes; no timing is asserted (a shared host is noisy)."""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path

import pytest
import torch

from benchmarks import make_performance_doc, probe_fidelity


@pytest.fixture(scope="module")
def fidelity_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fidelity") / "fidelity.json"
    code = probe_fidelity.main(["--device", "cpu", "--suite", "quick", "--checks", "perf.gemm.fp32,perf.membw",
                                "--rounds", "1", "--suites", "none", "--tiny", "--json", str(path)])
    assert code in (0, 1)  # whether the targets were met is a measurement, not a test outcome
    return path


def test_probe_and_reference_are_measured_side_by_side_for_each_check(fidelity_json: Path) -> None:
    data = json.loads(fidelity_json.read_text())
    checks = {c["check"]: c for c in data["checks"]}
    assert set(checks) == {"perf.gemm.fp32", "perf.membw"}
    for check in checks.values():
        assert check["probe"]["best"] > 0 and check["reference"]["best"] > 0
        assert check["ratio_of_bests"] == pytest.approx(check["probe"]["best"] / check["reference"]["best"])
        assert check["ratio"] == pytest.approx(statistics.median(check["round_ratios"]))
        assert check["target"] in (0.95, 0.90)
        assert check["reference"]["best_candidate"] in check["reference"]["sweep"]
    assert "n=" in checks["perf.gemm.fp32"]["probe_reason"]
    assert data["machine"]["threads"] == 1 and data["machine"]["device"] == "cpu"
    assert data["summary"].startswith("SUMMARY device=cpu threads=1 rounds=1 targets_met=")


def test_the_summary_is_the_last_line_printed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    probe_fidelity.main(["--device", "cpu", "--suite", "quick", "--checks", "perf.gemm.fp32", "--rounds", "1",
                         "--suites", "none", "--tiny"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("SUMMARY device=cpu") and "gemm.fp32=" in out[-1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_asking_for_a_gpu_where_there_is_none_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert probe_fidelity.main(["--device", "cuda", "--suites", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("probe_fidelity: device cuda")


def test_the_performance_doc_is_rendered_from_the_benchmark_json(fidelity_json: Path, tmp_path: Path) -> None:
    control = tmp_path / "control.json"
    control.write_text(json.dumps({"nodes": 5000, "run_seconds": 300.0, "cpu_ms_per_node": 1.5,
                                   "mutating_per_node": 3.2, "requests_by_key": {"create pods": 5000},
                                   "status_kib": 4.0, "rss_mb": 250.0, "emulator_and_kubelet_cpu_seconds": 400.0}))
    doc = make_performance_doc.render(json.loads(fidelity_json.read_text()), json.loads(control.read_text()))
    assert "perf.gemm.fp32" in doc and "perf.membw" in doc
    assert "benchmarks/probe_fidelity.py" in doc and "benchmarks/control_plane.py" in doc
    assert "5000" in doc and "torch" in doc


@pytest.mark.parametrize(("llc_mib", "expected"), [
    (32, [128, 256, 512]),  # STREAM's rule: arrays of at least four times the last-level cache
    (None, [64, 128, 256, 512]),  # sysfs silent: every size
    (256, [256]),  # a cache larger than the rule allows for: only the probe's own size
])
def test_cpu_copy_references_obey_streams_rule(monkeypatch: pytest.MonkeyPatch, llc_mib: int | None,
                                               expected: list[int]) -> None:
    monkeypatch.setattr(probe_fidelity, "last_level_cache_bytes", lambda: None if llc_mib is None else llc_mib << 20)
    candidates = probe_fidelity._copy_candidates(torch.device("cpu"), 256 << 20, tiny=False)
    sizes = sorted({int(c.name.split(" ")[2]) for c in candidates})
    assert sizes == expected
    assert {c.work for c in candidates} == {2.0 * (mib << 20) for mib in expected}, "read + write counted"


def test_a_reference_sample_lasts_as_long_as_the_probes_round() -> None:
    copy = probe_fidelity.Subject("perf.membw", "gbps", "GB/s", 1e9, "membw", [], 12, sample_s=0.020,
                                  probe_round_work=2.0 * (256 << 20))
    assert probe_fidelity._repeats(copy, 0.0098) == 2, "a copy of half the probe's arrays, twice"
    assert probe_fidelity._repeats(copy, 0.041) == 1
    gemm = dataclasses.replace(copy, check_id="perf.gemm.fp32", family="gemm", probe_round_work=None)
    assert probe_fidelity._repeats(gemm, 0.0098) == 3, "GEMM samples round up, as the probe's calibration does"


@pytest.mark.parametrize(("reason", "expected"), [
    ("tflops 0.1 TFLOPS within limits; n=384 (the fastest of 96, 384)", "384"),
    ("tflops 0.1 TFLOPS within limits; n=96 (the fastest of 96, 384), kernel host-blas (the faster of torch, "
     "host-blas)", "96 host-blas"),
    ("gbps 28 GB/s within limits; copy kernel torch (the faster of memcpy, torch)", ""),
])
def test_each_rounds_size_and_kernel_are_read_from_the_probes_reason(reason: str, expected: str) -> None:
    assert probe_fidelity._size_in(reason) == expected

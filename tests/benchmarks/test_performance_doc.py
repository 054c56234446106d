"""The interval docs/performance.md shows for each median ratio: order statistics with their exact coverage."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from benchmarks.make_performance_doc import (
    DEFAULT_OUT,
    MANIFEST,
    RESULTS,
    main,
    median_interval,
    render_comparison,
    render_fidelity,
    render_results,
)


def test_seven_rounds_give_the_second_and_sixth_order_statistics_at_87_5_percent() -> None:
    ratios = [1.02, 0.87, 0.98, 0.92, 0.93, 1.05, 0.89]
    assert median_interval(ratios) == pytest.approx((0.89, 1.02, 0.875))


def test_the_narrowest_pair_that_still_covers_enough_is_chosen() -> None:
    # Five rounds: the extremes cover 93.75%; the 2nd and 4th only 62.5%.
    assert median_interval([5.0, 1.0, 3.0, 2.0, 4.0]) == pytest.approx((1.0, 5.0, 0.9375))
    assert median_interval([5.0, 1.0, 3.0, 2.0, 4.0], min_coverage=0.6) == pytest.approx((2.0, 4.0, 0.625))


def test_too_few_rounds_give_no_interval() -> None:
    assert median_interval([]) is None
    assert median_interval([1.0]) is None
    assert median_interval([0.9, 1.1]) is None  # the extremes of two draws cover the median only half the time


def test_the_coverage_is_what_repeated_sampling_gives() -> None:
    rng = random.Random(7)
    hits = 0
    trials = 4000
    for _ in range(trials):
        low, high, _ = median_interval([rng.gauss(1.0, 0.1) for _ in range(7)]) or (0.0, 0.0, 0.0)
        hits += low <= 1.0 <= high
    assert hits / trials == pytest.approx(0.875, abs=0.03)


def test_the_document_shows_the_interval_beside_the_median() -> None:
    check = {"check": "perf.gemm.fp32", "unit": "TFLOPS", "probe": {"best": 1.0, "spread": 0.1},
             "reference": {"best": 1.0, "spread": 0.1, "best_candidate": "numpy"}, "ratio": 0.93,
             "round_ratios": [1.02, 0.87, 0.98, 0.92, 0.93, 1.05, 0.89], "ratio_of_bests": 0.97, "target": 0.95,
             "met": False}
    doc = render_fidelity({"machine": {"device": "cpu"}, "rounds": 7, "checks": [check]})
    assert "| 0.930 | 0.890 to 1.020 (87.5%) | 0.970 |" in doc


def test_a_side_by_side_comparison_gives_the_median_ratio_of_the_two_settings() -> None:
    runs = [{"nodes": 2000, "io_batch_ms": 0.0, "cpu_ms_per_node": 4.0, "run_seconds": 95.0},
            {"nodes": 2000, "io_batch_ms": 50.0, "cpu_ms_per_node": 3.0, "run_seconds": 93.0},
            {"nodes": 2000, "io_batch_ms": 0.0, "cpu_ms_per_node": 4.4, "run_seconds": 97.0},
            {"nodes": 2000, "io_batch_ms": 50.0, "cpu_ms_per_node": 2.6, "run_seconds": 92.0}]

    doc = render_comparison(runs)

    assert doc.count("| 2000 |") == 4
    assert "| 2000 | 50 | 2.6 | - | 92 |" in doc  # in the order they ran; a missing value is "-"
    # CPU medians 2.8 / 4.2, run time medians 92.5 / 96
    assert "with `--io-batch-ms 50` over `--io-batch-ms 0`: CPU per node 0.67; time from run start to all " \
           "verdicts 0.96." in doc
    assert "--reconcile-wait-factor" not in doc  # not recorded by these runs: no column


def test_a_comparison_names_the_one_setting_that_varies() -> None:
    runs = [{"nodes": 2000, "io_batch_ms": 50.0, "reconcile_wait_factor": f, "cpu_ms_per_node": cpu,
             "run_seconds": t} for f, cpu, t in ((20.0, 2.6, 90.0), (5.0, 3.3, 60.0), (20.0, 3.0, 96.0),
                                                 (5.0, 3.5, 63.0))]

    doc = render_comparison(runs)

    assert "| nodes | `--io-batch-ms` | `--reconcile-wait-factor` | CPU ms/node |" in doc
    assert "| 2000 | 50 | 5 | 3.3 | - | 60 |" in doc
    # the smaller value first: 20 over 5 (CPU 2.8 / 3.4, time 93 / 61.5)
    assert "`--reconcile-wait-factor 20` over `--reconcile-wait-factor 5`: CPU per node 0.82; time from run " \
           "start to all verdicts 1.51." in doc


def test_runs_that_vary_two_settings_at_once_give_no_ratio() -> None:
    runs = [{"nodes": 10, "io_batch_ms": 0.0, "reconcile_wait_factor": 20.0, "cpu_ms_per_node": 3.0},
            {"nodes": 10, "io_batch_ms": 50.0, "reconcile_wait_factor": 5.0, "cpu_ms_per_node": 2.0}]

    assert "over" not in render_comparison(runs)


def test_a_comparison_of_one_setting_gives_no_ratio() -> None:
    assert "over" not in render_comparison([{"nodes": 10, "io_batch_ms": 50.0, "cpu_ms_per_node": 3.0}])


def test_a_kubelet_mode_comparison_names_the_benchmark_setting_and_older_runs_count_as_http() -> None:
    runs: list[dict[str, Any]] = [
        {"nodes": 2000, "kubelet_mode": "fleet", "cpu_ms_per_node": 2.5, "run_seconds": 88.0},
        {"nodes": 2000, "cpu_ms_per_node": 2.7, "run_seconds": 90.0},  # recorded before the setting existed
        {"nodes": 2000, "kubelet_mode": "fleet", "cpu_ms_per_node": 2.6, "run_seconds": 86.0},
        {"nodes": 2000, "kubelet_mode": "http", "cpu_ms_per_node": 2.8, "run_seconds": 92.0}]
    doc = render_comparison(runs)
    assert "| nodes | `--kubelet` | CPU ms/node |" in doc
    assert "| 2000 | http | 2.7 |" in doc
    assert "Medians with `--kubelet http` over `--kubelet fleet`: CPU per node 1.08; time from run start to all " \
           "verdicts 1.05." in doc


def test_a_probe_duration_comparison_counts_older_runs_as_instant_probes() -> None:
    runs: list[dict[str, Any]] = [
        {"nodes": 2000, "kubelet_mode": "fleet", "cpu_ms_per_node": 2.5, "run_seconds": 88.0},  # before the setting
        {"nodes": 2000, "kubelet_mode": "fleet", "probe_seconds": 30.0, "probe_jitter": 0.0,
         "cpu_ms_per_node": 5.0, "run_seconds": 200.0}]
    doc = render_comparison(runs)
    assert "| nodes | `--kubelet` | `--probe-seconds` | `--probe-jitter` | CPU ms/node |" in doc
    assert "| 2000 | fleet | 0 | 0 | 2.5 |" in doc
    assert "Medians with `--probe-seconds 30` over `--probe-seconds 0`: CPU per node 2.00; time from run start " \
           "to all verdicts 2.27." in doc


def test_the_committed_document_is_what_the_committed_runs_give() -> None:
    """docs/performance.md is regenerated from benchmarks/results/, never edited by hand."""
    manifest = json.loads((RESULTS / MANIFEST).read_text(encoding="utf-8"))
    named = [*manifest["fidelity"], *manifest["control_plane"], *(f for group in manifest["compare"] for f in group)]
    assert all((RESULTS / name).is_file() for name in named)
    assert render_results(RESULTS) == DEFAULT_OUT.read_text(encoding="utf-8"), \
        "regenerate: python benchmarks/make_performance_doc.py --results benchmarks/results"


def test_results_without_a_manifest_or_a_fidelity_run_are_refused(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "performance.md"
    assert main(["--results", str(tmp_path), "--out", str(out)]) == 2
    assert MANIFEST in capsys.readouterr().err
    (tmp_path / MANIFEST).write_text(json.dumps({"fidelity": [], "control_plane": []}), encoding="utf-8")
    assert main(["--results", str(tmp_path), "--out", str(out)]) == 2
    assert "names no fidelity run" in capsys.readouterr().err
    assert not out.exists()

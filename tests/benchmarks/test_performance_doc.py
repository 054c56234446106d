"""The interval docs/performance.md shows for each median ratio: order statistics with their exact coverage."""

from __future__ import annotations

import random

import pytest

from benchmarks.make_performance_doc import median_interval, render_comparison, render_fidelity


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
    assert "`--io-batch-ms 50` over `--io-batch-ms 0`: 0.67." in doc  # medians 2.8 / 4.2


def test_a_comparison_of_one_setting_gives_no_ratio() -> None:
    assert "over" not in render_comparison([{"nodes": 10, "io_batch_ms": 50.0, "cpu_ms_per_node": 3.0}])

"""Timing on a noisy host: warm-up, calibrated repeats, best of N rounds, probe and reference interleaved.

A 2-core CI runner shared by several probes gives wildly varying single timings; the
best of several rounds is the least disturbed one, and alternating probe and
reference rounds (ABBA order) exposes both to the same contention, so their ratio
stays meaningful when absolute numbers do not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Work = Callable[[int], None]


def _timed(work: Work, repeats: int, sync: Callable[[], None]) -> float:
    sync()
    started = time.perf_counter()
    work(repeats)
    sync()
    return time.perf_counter() - started


def calibrate(work: Work, sync: Callable[[], None], round_s: float, max_repeats: int = 10_000) -> int:
    """Repeats of `work` that fill about `round_s` seconds (after one warm-up call)."""
    _timed(work, 1, sync)
    single = max(_timed(work, 1, sync), 1e-7)
    return max(1, min(max_repeats, math.ceil(round_s / single)))


def best_of(work: Work, repeats: int, rounds: int, sync: Callable[[], None],
            checkpoint: Callable[[], None] = lambda: None) -> float:
    """Seconds per repeat of the fastest of `rounds` rounds."""
    best = math.inf
    for _ in range(rounds):
        checkpoint()
        best = min(best, _timed(work, repeats, sync) / repeats)
    return best


def interleaved(probe: Work, probe_repeats: int, reference: Work, reference_repeats: int, rounds: int,
                sync: Callable[[], None], checkpoint: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """Best seconds per repeat of probe and reference, measured in alternating (ABBA) rounds."""
    best_probe, best_reference = math.inf, math.inf
    for index in range(rounds):
        checkpoint()
        order = (True, False) if index % 2 == 0 else (False, True)
        for is_probe in order:
            if is_probe:
                best_probe = min(best_probe, _timed(probe, probe_repeats, sync) / probe_repeats)
            else:
                best_reference = min(best_reference, _timed(reference, reference_repeats, lambda: None)
                                     / reference_repeats)
    return best_probe, best_reference


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation, like numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

"""Killing the operator at a chosen point of its reconcile, for restart scenarios.

`CrashAt("node-marked", nth=2)` is an `OperatorOptions.crash_points` hook: it counts the
named points the operator passes (see `handlers.reconcile`) and raises `SimulatedCrash`
at the nth occurrence of its point. The reconciler then dies there: the reconcile stops
and it never writes again. The harness waits for `fired` and restarts the operator
(`SimulatedCluster.restart_operator`) with fresh memory, as a pod restart would.
"""

from __future__ import annotations

import threading
from collections import Counter

from accelqual.handlers.reconcile import CRASH_POINTS


class SimulatedCrash(Exception):  # noqa: N818 - an event of the simulation, named as such
    """The operator process dies here."""


class CrashAt:
    """Raise `SimulatedCrash` at the `nth` time the operator passes `point` (once)."""

    def __init__(self, point: str, nth: int = 1) -> None:
        if point not in CRASH_POINTS:
            raise ValueError(f"unknown crash point {point!r}; known: {', '.join(CRASH_POINTS)}")
        if nth < 1:
            raise ValueError("nth counts from 1")
        self.point = point
        self.nth = nth
        self.passed: Counter[str] = Counter()
        #: Set when the crash happened (the operator is dead from then on).
        self.fired = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, point: str) -> None:
        with self._lock:
            self.passed[point] += 1
            due = point == self.point and self.passed[point] == self.nth and not self.fired.is_set()
            if due:
                self.fired.set()
        if due:
            raise SimulatedCrash(f"operator killed at {point} #{self.nth}")

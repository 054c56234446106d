"""Fleet-level decisions: peer comparison (median/MAD outliers), the failure budget, common factors.

A 75%-of-peak floor never catches the card that is 8% slower than its identical peers;
comparing each node with the pool's robust statistics of the same run does. The
failure budget is the circuit breaker that keeps a bad driver rollout or a probe bug
from tainting a whole fleet.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from accelqual_probes.catalog import BY_ID
from accelqual_probes.schema import OverallVerdict

from accelqual.models import FleetRelative
from accelqual.planning.snapshot import NodeResult

#: The catalog's checks whose values are compared across the pool.
FLEET_COMPARED = tuple(check_id for check_id, spec in BY_ID.items() if spec.fleet_compare)
#: Scale factor that makes the MAD a consistent estimator of the standard deviation for normal data.
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class CheckStats:
    check: str
    count: int
    median: float
    mad: float
    minimum: float
    maximum: float


@dataclass(frozen=True)
class Outlier:
    node: str
    check: str
    value: float
    median: float
    deviation: float  # fraction worse than the median (positive = worse)
    robust_z: float

    def describe(self) -> str:
        spec = BY_ID.get(self.check)
        unit = f" {spec.unit}" if spec and spec.unit else ""
        return (f"{self.check}: {self.value:.4g}{unit} is {self.deviation:.1%} worse than the pool median "
                f"{self.median:.4g}{unit}")


def check_stats(values: Mapping[str, Sequence[float]]) -> dict[str, CheckStats]:
    """Robust statistics per check over the nodes that measured it."""
    stats: dict[str, CheckStats] = {}
    for check, vals in values.items():
        if not vals:
            continue
        median = statistics.median(vals)
        mad = statistics.median(abs(v - median) for v in vals)
        stats[check] = CheckStats(check, len(vals), median, mad, min(vals), max(vals))
    return stats


def find_outliers(results: Mapping[str, NodeResult], policy: FleetRelative) -> list[Outlier]:
    """Nodes whose fleet-compared metrics are worse than their peers by both distance measures.

    Only nodes that produced evidence (pass/fail verdicts) count as peers; a check is
    compared only when at least `policy.min_peers` nodes measured it.
    """
    if not policy.enabled:
        return []
    per_check: dict[str, list[tuple[str, float]]] = {check_id: [] for check_id in FLEET_COMPARED}
    for result in results.values():
        if result.verdict is OverallVerdict.INCONCLUSIVE:
            continue
        checks = result.checks
        # The dozen compared checks looked up in each node's outcomes, rather than each of its ~35 outcomes
        # looked up in the catalog: this runs over the whole pool in every reconcile of a complete run.
        for check_id, pairs in per_check.items():
            outcome = checks.get(check_id)
            if outcome is not None and outcome.value is not None:
                pairs.append((result.node, outcome.value))
    outliers: list[Outlier] = []
    for check_id, pairs in sorted(per_check.items()):
        if len(pairs) < policy.min_peers:
            continue
        higher_is_better = BY_ID[check_id].higher_is_better
        values = [v for _, v in pairs]
        median = statistics.median(values)
        if median <= 0:
            continue
        sigma = MAD_SCALE * statistics.median(abs(v - median) for v in values)
        for node, value in pairs:
            worse_by = (median - value) if higher_is_better else (value - median)
            if worse_by <= 0:
                continue  # at or better than the median (max_deviation is positive)
            deviation = worse_by / median
            z = worse_by / sigma if sigma > 0 else float("inf")
            if deviation > policy.max_deviation and z >= policy.min_robust_z:
                outliers.append(Outlier(node, check_id, value, median, deviation, z))
    return outliers


def common_factor(failed: Sequence[NodeResult], passed: Sequence[NodeResult]) -> str:
    """What most failing nodes share that suggests a cause outside the cards (or '' if nothing stands out).

    Looked for, in order: one failing check on most failing nodes, one driver version on all
    failing nodes that the passing nodes do not run, one profile on all failing nodes.
    """
    if not failed:
        return ""
    n = len(failed)
    check_counts = Counter(c for r in failed for c in set(r.failed_checks))
    if check_counts:
        check, count = check_counts.most_common(1)[0]
        if count >= max(2, int(0.8 * n)):
            factor = f"check {check} failed on {count} of {n} failing nodes"
            drivers = {r.driver_version for r in failed}
            if len(drivers) == 1 and "" not in drivers:
                driver = drivers.pop()
                if not any(p.driver_version == driver for p in passed):
                    factor += f"; all of them run driver {driver}, which no passing node runs"
            return factor
    drivers = {r.driver_version for r in failed}
    if len(drivers) == 1 and "" not in drivers and n >= 2:
        driver = next(iter(drivers))
        if not any(p.driver_version == driver for p in passed):
            return f"all {n} failing nodes run driver {driver}, which no passing node runs"
    profiles = {r.profile for r in failed}
    if len(profiles) == 1 and "" not in profiles and n >= 2:
        return f"all {n} failing nodes use profile {next(iter(profiles))}"
    return ""

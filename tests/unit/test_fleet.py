"""Peer comparison (median/MAD outliers) and the common factor named when a run halts."""

from __future__ import annotations

from accelqual.models import FleetRelative
from accelqual.planning.fleet import common_factor, find_outliers
from accelqual.planning.snapshot import CheckOutcome, NodeResult
from accelqual_probes.schema import OverallVerdict


def result(node: str, checks: dict[str, float | None], *, verdict: OverallVerdict = OverallVerdict.PASS,
           failed: tuple[str, ...] = (), driver: str = "", profile: str = "h100-sxm") -> NodeResult:
    return NodeResult(node=node, run_id="r", verdict=verdict, reason="", failed_checks=failed,
                      checks={c: CheckOutcome("pass", v) for c, v in checks.items()}, driver_version=driver,
                      profile=profile)


def pool(values: dict[str, float], check: str = "perf.membw") -> dict[str, NodeResult]:
    return {n: result(n, {check: v}) for n, v in values.items()}


POLICY = FleetRelative(max_deviation=0.08, min_robust_z=3.0, min_peers=5)


def test_the_card_8_percent_slow_among_identical_peers_is_an_outlier() -> None:
    values = {f"n{i}": 3000.0 + i for i in range(9)}
    values["slow"] = 2700.0  # 10% below
    found = find_outliers(pool(values), POLICY)
    assert [(o.node, o.check) for o in found] == [("slow", "perf.membw")]
    assert 0.09 < found[0].deviation < 0.11
    assert "worse than the pool median" in found[0].describe()


def test_identical_peers_have_zero_spread_and_only_the_distance_decides() -> None:
    values = {f"n{i}": 100.0 for i in range(6)} | {"a": 95.0, "b": 90.0}
    found = find_outliers(pool(values, "perf.gemm.fp32"), POLICY)
    assert [o.node for o in found] == ["b"]
    assert found[0].robust_z == float("inf")


def test_a_pool_with_wide_natural_spread_does_not_flag_its_ordinary_members() -> None:
    values = {f"n{i}": v for i, v in enumerate([80.0, 85.0, 90.0, 95.0, 100.0, 105.0, 110.0, 115.0, 120.0])}
    assert find_outliers(pool(values, "perf.gemm.fp32"), POLICY) == []


def test_fewer_peers_than_the_minimum_are_not_compared() -> None:
    values = {"a": 100.0, "b": 100.0, "c": 100.0, "d": 50.0}
    assert find_outliers(pool(values), POLICY) == []
    assert find_outliers(pool({"only": 10.0}), POLICY) == []
    assert find_outliers({}, POLICY) == []


def test_lower_is_better_metrics_flag_the_slow_tail() -> None:
    values = {f"n{i}": 4.0 + 0.01 * i for i in range(6)} | {"laggard": 5.0, "quick": 3.0}
    found = find_outliers(pool(values, "infer.latency"), POLICY)
    assert [o.node for o in found] == ["laggard"]


def test_inconclusive_nodes_are_no_peers_and_disabled_comparison_finds_nothing() -> None:
    results = pool({f"n{i}": 100.0 for i in range(3)} | {"x": 80.0}, "perf.gemm.fp32")
    results["bad"] = result("bad", {"perf.gemm.fp32": 1.0}, verdict=OverallVerdict.INCONCLUSIVE)
    assert find_outliers(results, POLICY) == [], "5 peers are needed; the inconclusive one is none"
    results["n5"] = result("n5", {"perf.gemm.fp32": 100.0})
    assert [o.node for o in find_outliers(results, POLICY)] == ["x"]
    assert find_outliers(results, FleetRelative(enabled=False)) == []


def test_checks_without_fleet_comparison_or_without_values_are_ignored() -> None:
    results = {f"n{i}": result(f"n{i}", {"gen.inventory": 1.0, "perf.membw": None}) for i in range(6)}
    results["odd"] = result("odd", {"gen.inventory": 0.0, "perf.membw": None})
    assert find_outliers(results, POLICY) == []


def test_common_factor_names_the_failing_check_and_the_driver_no_passing_node_runs() -> None:
    failed = [result(f"f{i}", {}, verdict=OverallVerdict.FAIL, failed=("func.dtypes",), driver="550.0-bad")
              for i in range(6)]
    passed = [result(f"p{i}", {}, driver="535.1") for i in range(4)]
    factor = common_factor(failed, passed)
    assert "check func.dtypes failed on 6 of 6 failing nodes" in factor
    assert "driver 550.0-bad, which no passing node runs" in factor


def test_common_factor_when_every_node_fails_and_none_passes() -> None:
    failed = [result(f"f{i}", {}, verdict=OverallVerdict.FAIL, failed=(f"c{i}",), driver="550.0-bad")
              for i in range(5)]
    assert common_factor(failed, []) == "all 5 failing nodes run driver 550.0-bad, which no passing node runs"


def test_common_factor_by_profile_and_none_when_failures_differ() -> None:
    by_profile = [result(f"f{i}", {}, verdict=OverallVerdict.FAIL, failed=(f"c{i}",), driver=f"d{i}",
                         profile="mi300x") for i in range(3)]
    assert common_factor(by_profile, []) == "all 3 failing nodes use profile mi300x"
    scattered = [result(f"f{i}", {}, verdict=OverallVerdict.FAIL, failed=(f"c{i}",), driver=f"d{i}",
                        profile=f"p{i}") for i in range(3)]
    assert common_factor(scattered, []) == ""
    assert common_factor([], []) == ""
    one = [result("f", {}, verdict=OverallVerdict.FAIL, failed=("perf.membw",), driver="d")]
    assert common_factor(one, []) == "", "one failing node is no pattern"

"""`accelqual operator` flags the chart relies on: peering and the priority that makes one replica act."""

from __future__ import annotations

import asyncio

import pytest
from accelqual import operator_main
from accelqual.pacing import PacedSelector
from accelqual.runtime import OperatorOptions


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[OperatorOptions]:
    """The options `main` would run the operator with (the operator itself is not started)."""
    seen: list[OperatorOptions] = []

    async def fake_run(options: OperatorOptions) -> None:
        seen.append(options)

    monkeypatch.setattr(operator_main, "run_operator", fake_run)
    monkeypatch.setattr("accelqual.operator_main.time.time", lambda: 1_800_000_000.25)
    return seen


def test_an_older_replica_outranks_a_younger_one() -> None:
    assert operator_main.seniority_priority(1000.0) > operator_main.seniority_priority(1000.000001)


def test_peering_replicas_get_a_start_time_priority_by_default(started: list[OperatorOptions]) -> None:
    assert operator_main.main(["--peering", "accelqual", "--metrics-port", "0"]) == 0

    assert started[0].peering == "accelqual"
    assert started[0].priority == operator_main.seniority_priority(1_800_000_000.25)


def test_an_explicit_peering_priority_wins(started: list[OperatorOptions]) -> None:
    assert operator_main.main(["--peering", "accelqual", "--peering-priority", "100", "--metrics-port", "0"]) == 0

    assert started[0].priority == 100


def test_a_standalone_operator_has_no_peering_priority(started: list[OperatorOptions]) -> None:
    assert operator_main.main(["--metrics-port", "0"]) == 0

    assert started[0].peering is None
    assert started[0].priority is None


def test_io_is_batched_every_50_ms_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []

    async def fake_run(options: OperatorOptions) -> None:
        seen.append(asyncio.get_running_loop()._selector)  # type: ignore[attr-defined]

    monkeypatch.setattr(operator_main, "run_operator", fake_run)
    assert operator_main.main(["--metrics-port", "0"]) == 0
    assert operator_main.main(["--metrics-port", "0", "--io-batch-ms", "0"]) == 0

    assert isinstance(seen[0], PacedSelector) and seen[0].interval == 0.05
    assert not isinstance(seen[1], PacedSelector)


@pytest.mark.parametrize(("flag", "value"), [
    *(("--io-batch-ms", v) for v in ("-1", "abc", "nan", "1001")),
    *(("--reconcile-wait-factor", v) for v in ("-1", "abc", "nan", "201")),
])
def test_a_bad_pacing_value_is_a_usage_error(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        operator_main.parse([flag, value])

    assert exited.value.code == 2
    assert flag in capsys.readouterr().err


def test_reconciles_wait_20_times_their_cpu_by_default(started: list[OperatorOptions]) -> None:
    assert operator_main.main(["--metrics-port", "0"]) == 0
    assert operator_main.main(["--metrics-port", "0", "--reconcile-wait-factor", "5"]) == 0

    assert [o.reconcile_wait_factor for o in started] == [20.0, 5.0]


def test_the_reconcile_wait_factor_reaches_the_daemons(monkeypatch: pytest.MonkeyPatch) -> None:
    """`OperatorOptions.reconcile_wait_factor` is what the reconcile daemons are built with."""
    from types import SimpleNamespace

    from accelqual import runtime

    built: list[float] = []

    class BuiltError(Exception):
        pass

    def fake_build_registry(reconciler: object, *, wait_factor: float, **_: object) -> None:
        built.append(wait_factor)
        raise BuiltError  # stop before kopf connects anywhere

    monkeypatch.setattr(runtime, "build_registry", fake_build_registry)
    reconciler = SimpleNamespace(metrics=SimpleNamespace())
    with pytest.raises(BuiltError):
        asyncio.run(runtime.run_operator(OperatorOptions(reconcile_wait_factor=7.5),
                                         reconciler=reconciler))  # type: ignore[arg-type]

    assert built == [7.5]

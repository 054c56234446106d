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


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "1001"])
def test_a_bad_io_batch_interval_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        operator_main.parse(["--io-batch-ms", value])

    assert exited.value.code == 2
    assert "--io-batch-ms" in capsys.readouterr().err

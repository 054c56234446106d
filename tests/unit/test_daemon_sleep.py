"""The reconcile daemon's wait between reconciles (`handlers.registry`): how long it gathers wake-ups, and
what ends the wait."""

from __future__ import annotations

import argparse
import asyncio
import time

import kopf
import pytest
from accelqual.handlers.registry import DEBOUNCE_SECONDS, _sleep, wake_up_batch
from accelqual.pacing import DEFAULT_RECONCILE_WAIT_FACTOR, reconcile_wait_factor
from kopf._cogs.aiokits.aioenums import FlagSetter  # whose waiter kopf hands a daemon as `stopped`


def _flag() -> FlagSetter[kopf.DaemonStoppingReason]:
    return FlagSetter()


async def _timed(coro: object) -> float:
    start = time.monotonic()
    await coro  # type: ignore[misc]
    return time.monotonic() - start


def test_wake_ups_wait_the_factor_times_the_reconciles_cpu() -> None:
    # 1.2 s of CPU at 5,000 nodes (a wave of 1,000 reports judged): the next reconcile 24 s later.
    assert wake_up_batch(1.2, DEFAULT_RECONCILE_WAIT_FACTOR, DEBOUNCE_SECONDS) == pytest.approx(24.0)
    assert wake_up_batch(1.2, 5.0, DEBOUNCE_SECONDS) == pytest.approx(6.0)


def test_a_cheap_reconcile_still_waits_the_debounce() -> None:
    assert wake_up_batch(0.001, DEFAULT_RECONCILE_WAIT_FACTOR, DEBOUNCE_SECONDS) == DEBOUNCE_SECONDS
    assert wake_up_batch(5.0, 0.0, DEBOUNCE_SECONDS) == DEBOUNCE_SECONDS  # factor 0: the debounce only
    assert wake_up_batch(-1.0, 20.0, DEBOUNCE_SECONDS) == DEBOUNCE_SECONDS  # a clock that went backwards


def test_the_wait_shrinks_with_the_time_scale_of_a_rehearsal() -> None:
    assert wake_up_batch(2.0, 20.0, 0.0005, time_scale=1000.0) == pytest.approx(0.04)


@pytest.mark.parametrize(("text", "factor"), [("20", 20.0), ("0", 0.0), ("2.5", 2.5), ("200", 200.0)])
def test_the_wait_factor_flag_takes_0_to_200(text: str, factor: float) -> None:
    assert reconcile_wait_factor(text) == factor


@pytest.mark.parametrize("text", ["-1", "201", "nan", "inf", "abc", ""])
def test_the_wait_factor_flag_refuses_the_rest(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        reconcile_wait_factor(text)


def test_a_wake_up_is_followed_by_the_debounce() -> None:
    async def main() -> float:
        waker, stop = asyncio.Event(), _flag()
        waker.set()
        return await _timed(_sleep(waker, stop.async_waiter, delay=30.0, debounce=0.2))

    assert 0.15 <= asyncio.run(main()) < 5.0  # generous bounds: a slow host stretches waits


def test_the_delay_ends_the_wait_without_a_debounce() -> None:
    async def main() -> float:
        return await _timed(_sleep(asyncio.Event(), _flag().async_waiter, delay=0.05, debounce=30.0))

    assert asyncio.run(main()) < 5.0


def test_stopping_ends_the_debounce_at_once() -> None:
    """At fleet scale the debounce lasts seconds; a stop during it must not wait it out (kopf would
    cancel the daemon after its cancellation timeout, and the operator's shutdown would take as long)."""
    async def main() -> float:
        waker, stop = asyncio.Event(), _flag()
        waker.set()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return await _timed(_sleep(waker, stop.async_waiter, delay=60.0, debounce=60.0))

    assert asyncio.run(main()) < 5.0


def test_stopping_ends_the_wait_at_once() -> None:
    async def main() -> float:
        stop = _flag()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return await _timed(_sleep(asyncio.Event(), stop.async_waiter, delay=60.0, debounce=60.0))

    assert asyncio.run(main()) < 5.0


def test_no_task_is_left_behind() -> None:
    async def main() -> int:
        waker, stop = asyncio.Event(), _flag()
        waker.set()
        await _sleep(waker, stop.async_waiter, delay=1.0, debounce=0.01)
        await asyncio.sleep(0.05)  # cancelled tasks end on the loop's next turns
        return len(asyncio.all_tasks()) - 1  # all but this one

    assert asyncio.run(main()) == 0

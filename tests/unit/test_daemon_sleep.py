"""The reconcile daemon's wait between reconciles (`handlers.registry._sleep`): what ends it, and when."""

from __future__ import annotations

import asyncio
import time

import kopf
from accelqual.handlers.registry import _sleep
from kopf._cogs.aiokits.aioenums import FlagSetter  # whose waiter kopf hands a daemon as `stopped`


def _flag() -> FlagSetter[kopf.DaemonStoppingReason]:
    return FlagSetter()


async def _timed(coro: object) -> float:
    start = time.monotonic()
    await coro  # type: ignore[misc]
    return time.monotonic() - start


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

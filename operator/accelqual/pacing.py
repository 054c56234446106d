"""An event loop that takes the operator's I/O in batches: at most one waiting `select` per interval.

At fleet scale the operator's work arrives as a trickle of small pieces: a watch event,
the answer to one of thousands of requests. Woken for each, the event loop runs a few
tens of microseconds of work and goes back to sleep, and by the next wake-up other work
(the operator's own other tasks, or another process on the core) has evicted its code and
data from the CPU caches. Measured here, decoding a pod event took 22 us with warm caches
and 105-135 us with cold ones, and in the operator it took 66-72 us.

So a `select` that would wait comes at most once per `interval`: the loop first sleeps
out the rest of the interval, then takes everything that arrived meanwhile and handles
it in one warm pass. A `select` with ready work (timeout 0) is never delayed, nor a timer
beyond its due time. In the 2,000-node benchmark a 50 ms interval cut the selects from
34,000 to 3,300 and the operator's CPU per node from 4.3 ms to 2.8 ms, with the time to
all verdicts unchanged (93 s against 97 s). Each hop of I/O can wait up to an interval
longer; a reconcile makes about ten, beside the half-second debounce of wake-ups.

The reconciles themselves are paced too (`DEFAULT_RECONCILE_WAIT_FACTOR`): each looks at the
whole pool, so the wait after one grows with the CPU it took.
"""

from __future__ import annotations

import argparse
import asyncio
import selectors
import time
from collections.abc import Callable

#: The operator's default interval (`accelqual operator --io-batch-ms`).
DEFAULT_INTERVAL_SECONDS = 0.05

#: After a reconcile, wake-ups wait at least this many times the CPU the event loop spent during it
#: (`accelqual operator --reconcile-wait-factor`, applied in `handlers.registry`): reconciling then takes
#: at most about 1/(1+F) of a core, however large the pool. That CPU includes judging the reports the
#: reconcile collected (0.4-0.8 ms each), so at 5,000 nodes, with a wave of 1,000 reports in one
#: reconcile, the next waits tens of seconds: the 5,000-node benchmark makes about 10 reconciles in its
#: 220-240 s. A lower factor decides sooner for more CPU: at 2,000 nodes, 5 against 20 measured runs of
#: 60-65 s against 85-98 s, and 3.3-3.6 ms of CPU per node against 2.6-3.1 (two sets of alternating runs);
#: at 5,000, where the emulated API server saturates its core, 193 s against 241 s and 4.1 against 3.0 ms.
DEFAULT_RECONCILE_WAIT_FACTOR = 20.0
#: The largest factor the flag takes: beyond it a big pool would wait many minutes between decisions.
MAX_RECONCILE_WAIT_FACTOR = 200.0


def _number_from_0_to(value: str, maximum: float, unit: str) -> float:
    """`value` as a number from 0 to `maximum` (nan and inf refused), or argparse's usage error."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {unit or 'a number'}, got {value!r}") from None
    if not 0 <= number <= maximum:
        raise argparse.ArgumentTypeError(f"expected 0 to {maximum:g}{' ' + unit if unit else ''}, got {value}")
    return number


def reconcile_wait_factor(value: str) -> float:
    """`--reconcile-wait-factor` as argparse takes it: 0 (only the debounce) to MAX_RECONCILE_WAIT_FACTOR."""
    return _number_from_0_to(value, MAX_RECONCILE_WAIT_FACTOR, "")


def io_batch_ms(value: str) -> float:
    """`--io-batch-ms` as argparse takes it: 0 to 1000 milliseconds (the operator's flag, and the
    control-plane benchmark's, which passes it through)."""
    return _number_from_0_to(value, 1000, "milliseconds")


class PacedSelector(selectors.DefaultSelector):
    """The platform's selector; a `select` that would wait first sleeps until `interval` after the last one."""

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        if interval < 0:
            raise ValueError(f"the interval must not be negative, got {interval}")
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._last = float("-inf")

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > 0:
            wait = self._last + self.interval - self._clock()
            if wait > 0:
                if timeout is not None:
                    # A timer due sooner is not held back: sleep until it, and look without waiting.
                    wait = min(wait, timeout)
                    timeout -= wait
                self._sleep(wait)
        try:
            return super().select(timeout)
        finally:
            self._last = self._clock()


def loop_factory(interval: float) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory for `asyncio.Runner`: a selector loop paced at `interval` (0: the default loop)."""
    if interval <= 0:
        return asyncio.new_event_loop
    return lambda: asyncio.SelectorEventLoop(PacedSelector(interval))

"""`SimClock`: simulated time that runs a fixed factor faster than real time, for rehearsals.

One clock is shared by every part of a simulated cluster that reads the time: the
operator (`OperatorOptions.clock` and `time_scale`), the emulated API server (creation
timestamps), the simulated kubelet (pod start/finish times, `activeDeadlineSeconds`) and
the modelled probes (their durations). They then agree on every age and deadline, and a
day of 6-hourly schedules replays in about a minute. The clock never jumps: the operator
is a real concurrent program, and jumping time under it would test something else.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class SimClock:
    """`now()` = `start` + (real seconds since `begin()`) x `scale`; stopped at `start` until begun."""

    def __init__(self, start: datetime, scale: float = 1.0) -> None:
        if start.tzinfo is None:
            raise ValueError("the simulated start time needs a timezone (e.g. 2026-03-02T00:00:00Z)")
        if scale <= 0:
            raise ValueError("the time scale must be positive")
        self.start = start.astimezone(UTC)
        self.scale = float(scale)
        self._began: float | None = None
        self._paused_at: float | None = None
        self._lock = threading.Lock()

    def begin(self) -> SimClock:
        """Start the clock (idempotent): simulated time 0 is now."""
        with self._lock:
            if self._began is None:
                self._began = time.monotonic()
        return self

    def elapsed(self) -> float:
        """Simulated seconds since `begin()` (0 before, frozen while paused); monotonic, like `time.monotonic`."""
        began, paused = self._began, self._paused_at
        if began is None:
            return 0.0
        return ((paused if paused is not None else time.monotonic()) - began) * self.scale

    def pause(self) -> None:
        """Stop simulated time (e.g. while the operator starts up: seconds of real start-up would be
        hours of simulated time in which nothing could happen)."""
        with self._lock:
            if self._began is not None and self._paused_at is None:
                self._paused_at = time.monotonic()

    def resume(self) -> None:
        with self._lock:
            if self._began is not None and self._paused_at is not None:
                self._began += time.monotonic() - self._paused_at
                self._paused_at = None

    def now(self) -> datetime:
        """The simulated UTC time."""
        return self.start + timedelta(seconds=self.elapsed())

    def at(self, offset: float) -> datetime:
        """The simulated time `offset` simulated seconds after the start."""
        return self.start + timedelta(seconds=offset)

    def real_seconds(self, simulated: float) -> float:
        """How long `simulated` seconds take in real time."""
        return simulated / self.scale

    def sleep_until(self, offset: float, stop: threading.Event | None = None) -> bool:
        """Sleep until simulated time `offset`; False if `stop` was set first."""
        while True:
            remaining = self.real_seconds(offset - self.elapsed())
            if remaining <= 0:
                return True
            if stop is not None:
                if stop.wait(min(remaining, 0.5)):
                    return False
            else:
                time.sleep(min(remaining, 0.5))


class SteppedClock:
    """The real UTC time plus an offset that a test steps (`step`), as NTP steps a host's clock.

    For the operator only (`OperatorOptions.clock`): the API server and kubelets keep their
    own time, so after a step the operator's `now` disagrees with the timestamps it reads
    (pod start times, creation times), which is exactly what a clock step does to a controller.
    """

    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._lock = threading.Lock()
        #: The steps made so far (seconds; negative: backwards).
        self.steps: list[float] = []

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def step(self, seconds: float) -> None:
        with self._lock:
            self._offset += timedelta(seconds=seconds)
            self.steps.append(seconds)

"""The paced event loop: a waiting select at most once per interval, ready work and timers never held back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from accelqual.pacing import PacedSelector, loop_factory


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def selector(fake: FakeTime) -> Iterator[PacedSelector]:
    paced = PacedSelector(0.05, clock=fake.clock, sleep=fake.sleep)
    yield paced
    paced.close()


def test_the_first_wait_is_not_delayed(selector: PacedSelector, fake: FakeTime) -> None:
    assert selector.select(0.001) == []
    assert fake.sleeps == []


def test_a_wait_soon_after_the_last_select_sleeps_out_the_interval(selector: PacedSelector, fake: FakeTime) -> None:
    selector.select(0)
    fake.now += 0.01

    selector.select(1.0)

    assert fake.sleeps == [0.04]


def test_ready_work_is_never_delayed(selector: PacedSelector, fake: FakeTime) -> None:
    """A select with timeout 0 is the loop looking for I/O between ready callbacks."""
    selector.select(0)
    selector.select(0)
    selector.select(0)

    assert fake.sleeps == []


def test_a_timer_due_sooner_than_the_interval_is_not_held_back(selector: PacedSelector, fake: FakeTime) -> None:
    selector.select(0)
    fake.now += 0.01

    selector.select(0.015)  # the loop's next timer is due in 15 ms

    assert fake.sleeps == [0.015]


def test_after_the_interval_a_wait_is_not_delayed(selector: PacedSelector, fake: FakeTime) -> None:
    selector.select(0)
    fake.now += 0.2

    selector.select(0.001)

    assert fake.sleeps == []


def test_everything_that_arrived_during_the_sleep_is_returned_at_once(fake: FakeTime) -> None:
    a, b = socket.socketpair()
    c, d = socket.socketpair()

    def peers_send_then_sleep(seconds: float) -> None:
        b.send(b"x")
        d.send(b"y")
        fake.sleep(seconds)

    paced = PacedSelector(0.05, clock=fake.clock, sleep=peers_send_then_sleep)
    try:
        paced.register(a, 1)
        paced.register(c, 1)
        paced.select(0)
        ready = paced.select(None)  # would block; the sleep lets both peers send first

        assert {key.fileobj for key, _ in ready} == {a, c}
        assert fake.sleeps == [0.05]
    finally:
        paced.close()
        for s in (a, b, c, d):
            s.close()


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        PacedSelector(-1)


def test_a_paced_loop_runs_coroutines_timers_and_socket_io() -> None:
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        try:
            await asyncio.sleep(0.01)
            await loop.sock_sendall(a, b"ping")
            return await loop.sock_recv(b, 4)
        finally:
            a.close()
            b.close()

    with asyncio.Runner(loop_factory=loop_factory(0.02)) as runner:
        assert isinstance(runner.get_loop()._selector, PacedSelector)  # type: ignore[attr-defined]
        assert runner.run(main()) == b"ping"


def test_interval_zero_is_the_default_loop() -> None:
    with asyncio.Runner(loop_factory=loop_factory(0)) as runner:
        assert not isinstance(runner.get_loop()._selector, PacedSelector)  # type: ignore[attr-defined]

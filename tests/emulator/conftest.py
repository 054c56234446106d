"""Fixtures for the emulator contract tests: running `EmulatorServer`s and an HTTP client for them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from accelqual.sim.emulator import ClusterEmulator
from accelqual.sim.server import EmulatorServer

from tests.emulator.apiclient import Api


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as running:
        yield running


@pytest.fixture
def emulator(server: EmulatorServer) -> ClusterEmulator:
    return server.emulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def api(server: EmulatorServer, session: aiohttp.ClientSession) -> Api:
    return Api(session, server.url)


@pytest.fixture
def make_server() -> Iterator[Callable[..., EmulatorServer]]:
    """Start a server around a `ClusterEmulator(**settings)` (e.g. a short history); stopped after the test."""
    started: list[EmulatorServer] = []

    def make(**settings: Any) -> EmulatorServer:
        running = EmulatorServer(ClusterEmulator(**settings)).start()
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()

"""Fixtures for the emulator contract tests: a running `EmulatorServer` and an HTTP client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

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
async def api(server: EmulatorServer) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server.url)

"""Pod logs: the emulator-only PUT that sets them, GET with tailLines/limitBytes, and the Python setter."""

from __future__ import annotations

import asyncio

import pytest
from accelqual.sim.emulator import ClusterEmulator

from tests.emulator.apiclient import Api, pod, pods

LOG = "/api/v1/namespaces/default/pods/p1/log"
TEXT = "line 1\nline 2\nline 3 ünïcode\nlast line without newline"


async def test_put_sets_the_log_and_get_returns_it_as_plain_text(api: Api) -> None:
    await api.post(pods(), pod("p1"))

    stored = await api.request("PUT", LOG, content_type="text/plain", raw=TEXT.encode())
    read = await api.request("GET", LOG, headers={"Accept": "text/plain"})

    assert stored.status == 200
    assert read.status == 200
    assert read.headers["Content-Type"].startswith("text/plain")
    assert read.text == TEXT


@pytest.mark.parametrize(("params", "expected"), [
    ({"tailLines": "2"}, "line 3 ünïcode\nlast line without newline"),
    ({"tailLines": "0"}, ""),
    ({"tailLines": "100"}, TEXT),
    ({"limitBytes": "9"}, "line 1\nli"),
    ({"tailLines": "2", "limitBytes": "6"}, "line 3"),
])
async def test_tail_lines_first_then_limit_bytes_from_the_start_of_the_tail(
        api: Api, emulator: ClusterEmulator, params: dict[str, str], expected: str) -> None:
    await api.post(pods(), pod("p1"))
    emulator.set_pod_log("default", "p1", TEXT)

    read = await api.request("GET", LOG, params=params)

    assert read.text == expected


async def test_a_pod_without_output_has_an_empty_log(api: Api) -> None:
    await api.post(pods(), pod("p1"))

    read = await api.request("GET", LOG)

    assert read.status == 200
    assert read.text == ""


async def test_log_of_a_missing_pod_is_404(api: Api) -> None:
    read = await api.request("GET", LOG)
    write = await api.request("PUT", LOG, content_type="text/plain", raw="x")

    assert read.status == 404
    assert read.body["reason"] == "NotFound"
    assert write.status == 404


async def test_set_pod_log_from_a_harness_thread(api: Api, emulator: ClusterEmulator) -> None:
    await api.post(pods(), pod("p1"))

    await asyncio.to_thread(emulator.set_pod_log, "default", "p1", "from a thread\n")

    assert (await api.request("GET", LOG)).text == "from a thread\n"
    assert emulator.pod_log("default", "p1") == "from a thread\n"


async def test_a_recreated_pod_starts_with_an_empty_log(api: Api, emulator: ClusterEmulator) -> None:
    await api.post(pods(), pod("p1"))
    emulator.set_pod_log("default", "p1", "old run\n")

    await api.delete("/api/v1/namespaces/default/pods/p1")
    await api.post(pods(), pod("p1"))

    assert (await api.request("GET", LOG)).text == ""


async def test_a_log_larger_than_an_api_request_is_still_stored(api: Api) -> None:
    await api.post(pods(), pod("p1"))
    huge = "x" * (10 * 1024 * 1024) + "\nlast line\n"

    stored = await api.request("PUT", LOG, content_type="text/plain", raw=huge.encode())
    tail = await api.request("GET", LOG, params={"tailLines": "1"})

    assert stored.status == 200
    assert tail.text == "last line\n"

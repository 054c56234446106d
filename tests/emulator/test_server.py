"""`EmulatorServer`: lifecycle, threads, kubeconfig, `run()`, and the store under concurrent writers."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import kubernetes
import pytest
from accelqual.sim.emulator import ApiError
from accelqual.sim.server import EmulatorServer

from tests.emulator.apiclient import NODES, Api, node


def test_start_and_stop_are_fast_and_leave_no_threads() -> None:
    before = set(threading.enumerate())

    started = time.monotonic()
    server = EmulatorServer().start()
    start_s = time.monotonic() - started
    url = server.url
    started = time.monotonic()
    server.stop()
    stop_s = time.monotonic() - started

    assert url.startswith("http://127.0.0.1:")
    assert start_s < 1.0
    assert stop_s < 1.0
    assert set(threading.enumerate()) <= before
    server.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_two_servers_have_separate_ports_and_stores() -> None:
    with EmulatorServer() as first, EmulatorServer() as second:
        first.emulator.create("nodes", node("only-in-first"))

        assert first.url != second.url
        assert second.emulator.get("nodes", None, "only-in-first") is None


async def test_stopping_with_an_open_watch_is_still_fast(session: aiohttp.ClientSession) -> None:
    server = EmulatorServer().start()
    stream = await Api(session, server.url).watch(NODES, allowWatchBookmarks="true")

    started = time.monotonic()
    await asyncio.to_thread(server.stop)

    assert time.monotonic() - started < 1.0
    stream.close()


def test_run_executes_a_coroutine_on_the_emulator_loop(server: EmulatorServer) -> None:
    async def on_loop() -> int:
        assert asyncio.get_running_loop() is server.loop
        return server.emulator.resource_version

    assert server.run(on_loop()) == server.emulator.resource_version


def test_kubeconfig_works_with_the_kubernetes_client(server: EmulatorServer, tmp_path: Path) -> None:
    path = server.write_kubeconfig(tmp_path / "nested" / "kubeconfig")
    server.emulator.create("nodes", node("n1", {"pool": "a"}))

    client = kubernetes.config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    try:
        nodes = kubernetes.client.CoreV1Api(client).list_node(label_selector="pool=a")
    finally:
        client.close()

    assert [n.metadata.name for n in nodes.items if n.metadata] == ["n1"]
    assert nodes.metadata is not None
    assert nodes.metadata.resource_version == str(server.emulator.resource_version)


def test_concurrent_writers_from_threads_keep_the_store_consistent(server: EmulatorServer) -> None:
    emulator = server.emulator
    emulator.create("nodes", node("counter"))

    def bump(i: int) -> str:
        for _ in range(50):  # optimistic-concurrency loop, as a controller would write
            current = emulator.get("nodes", None, "counter")
            assert current is not None
            count = int(current["metadata"].get("annotations", {}).get("count", "0"))
            try:
                won = emulator.patch("nodes", None, "counter", {"metadata": {
                    "resourceVersion": current["metadata"]["resourceVersion"],
                    "annotations": {"count": str(count + 1), f"writer-{i}": "done"}}})
                return str(won["metadata"]["resourceVersion"])
            except ApiError as exc:
                if exc.status != 409:  # only a lost race is retried
                    raise
        raise AssertionError("never won the race")

    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(bump, range(40)))

    final = emulator.get("nodes", None, "counter")
    assert final is not None
    assert final["metadata"]["annotations"]["count"] == "40"
    assert len(set(versions)) == 40

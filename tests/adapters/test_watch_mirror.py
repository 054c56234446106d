"""The lean pod mirror stays correct through cut watches, API errors and field-selector transitions."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
from accelqual.adapters.kube import KubeClient
from accelqual.adapters.watch import Connection, ResourceMirror
from accelqual.handlers.mirrors import ClusterMirrors
from accelqual.sim.emulator import FaultRule
from accelqual.sim.server import EmulatorServer
from aiohttp import web


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer() as running:
        running.emulator.create("namespaces", {"metadata": {"name": "probes"}})
        running.emulator.create("namespaces", {"metadata": {"name": "work"}})
        yield running


def connection(server: EmulatorServer) -> Connection:
    return Connection(KubeClient.for_url(server.url).configuration)


def pod(name: str, namespace: str, *, node: str | None = None, gpus: int = 0, phase: str | None = None,
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "x"}
    if gpus:
        container["resources"] = {"requests": {"nvidia.com/gpu": str(gpus)}, "limits": {"nvidia.com/gpu": str(gpus)}}
    body: dict[str, Any] = {"metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
                            "spec": {"containers": [container]}}
    if node:
        body["spec"]["nodeName"] = node
    if phase:
        body["status"] = {"phase": phase}
    return body


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def test_mirror_follows_creates_updates_and_deletes_and_survives_cut_watches(server: EmulatorServer) -> None:
    emulator = server.emulator
    emulator.faults.add(FaultRule(action="watch", resource="pods", cut_watch_after=2, status=None, count=3))
    changes: list[str] = []
    mirror: ResourceMirror[str] = ResourceMirror(
        connection(server), "/api/v1/namespaces/work/pods",
        parse=lambda obj: obj["metadata"].get("labels", {}).get("v"), on_change=lambda k, o, n: changes.append(k))
    stop = asyncio.Event()
    task = asyncio.create_task(mirror.run(stop))
    try:
        await asyncio.wait_for(mirror.ready.wait(), 5)
        for i in range(6):
            emulator.create("pods", pod(f"p{i}", "work", labels={"v": "1"}))
        emulator.patch("pods", "work", "p0", {"metadata": {"labels": {"v": "2"}}})
        emulator.delete("pods", "work", "p1")
        await eventually(lambda: len(mirror) == 5 and mirror["work/p0"] == "2")
        assert "work/p1" not in list(mirror)
        assert mirror.relists == 1, "cut watches resume from the resourceVersion without relisting"
    finally:
        stop.set()
        await task


async def test_mirror_relists_after_410_gone_and_retries_api_errors(server: EmulatorServer) -> None:
    emulator = server.emulator
    mirror: ResourceMirror[str] = ResourceMirror(connection(server), "/api/v1/namespaces/work/pods",
                                                 parse=lambda obj: obj["metadata"]["name"])
    emulator.faults.add(FaultRule(action="list", resource="pods", status=503, count=1))
    stop = asyncio.Event()
    task = asyncio.create_task(mirror.run(stop))
    try:
        await asyncio.wait_for(mirror.ready.wait(), 10)
        emulator.faults.add(FaultRule(action="watch", resource="pods", status=410, count=1))
        emulator.faults.add(FaultRule(action="watch", resource="pods", cut_watch_after=0, status=None, count=1))
        emulator.create("pods", pod("late", "work"))
        await eventually(lambda: "work/late" in list(mirror), within=10)
    finally:
        stop.set()
        await task


async def test_pod_mirrors_group_probe_pods_by_qualification_and_busy_pods_by_node(server: EmulatorServer) -> None:
    emulator = server.emulator
    woken: list[str | None] = []
    mirrors = ClusterMirrors(connection(server), "probes", woken.append)
    stop = asyncio.Event()
    task = asyncio.create_task(mirrors.run(stop))
    try:
        await asyncio.wait_for(mirrors.wait_ready(), 5)
        probe = pod("aq-1", "probes", labels={"app.kubernetes.io/managed-by": "accelqual-operator"})
        probe["metadata"]["annotations"] = {"accelqual.io/qualification": "pool-a", "accelqual.io/node": "n1"}
        emulator.create("pods", probe)
        emulator.create("pods", pod("train", "work", node="n2", gpus=8, phase="Running"))
        emulator.create("pods", pod("web", "work", node="n3", phase="Running"))  # no accelerators: not busy
        await eventually(lambda: "pool-a" in mirrors.probe_pods and "n2" in mirrors.busy)
        assert [info.node for info, _ in mirrors.probe_pods["pool-a"]] == ["n1"]
        assert list(mirrors.busy["n2"]) == [frozenset({"nvidia.com/gpu"})]
        assert "n3" not in mirrors.busy
        assert "pool-a" in woken
        # A finished workload leaves the field selector: the node becomes idle.
        emulator.patch("pods", "work", "train", {"status": {"phase": "Succeeded"}}, subresource="status")
        await eventually(lambda: "n2" not in mirrors.busy)
        emulator.delete("pods", "probes", "aq-1")
        await eventually(lambda: "pool-a" not in mirrors.probe_pods)
    finally:
        stop.set()
        await task


def _event(kind: str, name: str, rv: int, pad: int = 0) -> bytes:
    obj = {"metadata": {"name": name, "resourceVersion": str(rv), "labels": {"pad": "x" * pad}}}
    return json.dumps({"type": kind, "object": obj}).encode()


async def test_watch_events_split_across_chunks_or_packed_into_one_are_each_applied_once(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The server's chunks need not follow event boundaries; an event larger than aiohttp's line limit
    (128 KiB, which ended the mirror's task) is applied; an endless line is cut off, not buffered; and
    an event of the wrong shape ends the watch (logged, made again) rather than the mirror."""
    monkeypatch.setattr("accelqual.adapters.watch.MAX_LINE_BYTES", 400_000)
    a, b, d = (_event("ADDED", n, rv, pad=300) for n, rv in (("a", 2), ("b", 3), ("d", 5)))
    c = _event("ADDED", "c", 4, pad=300_000)
    streams = [
        # One event split over three chunks, two packed in one chunk with a blank keep-alive line between.
        [a + b"\n" + b[:50], b[50:51], b[51:] + b"\n", c + b"\n\n" + _event("DELETED", "a", 5) + b"\n"],
        # A line that never ends within the limit: the watch is given up and made again.
        [b'{"type": "ADDED", "object": {"metadata": {"name": "' + b"z" * 500_000],
        # Valid JSON of the wrong shape: the watch is given up and made again, the mirror untouched.
        [b"[1, 2]\n"],
        [b'{"type": "ADDED", "object": {"metadata": ["x"]}}\n'],
        [d + b"\n"],
    ]
    watches: list[str] = []
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            return web.json_response({"items": [], "metadata": {"resourceVersion": "1"}})
        watches.append(request.query.get("resourceVersion", ""))
        response = web.StreamResponse()
        await response.prepare(request)
        for chunk in streams[min(len(watches), len(streams)) - 1]:
            await response.write(chunk)
            await asyncio.sleep(0.01)  # separate writes, so the client sees separate chunks
        if len(watches) >= len(streams):
            await release.wait()  # the last watch stays open
        return response

    app = web.Application()
    app.router.add_get("/api/v1/pods", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    changes: list[tuple[str, str | None]] = []
    mirror: ResourceMirror[str] = ResourceMirror(
        Connection(KubeClient.for_url(f"http://127.0.0.1:{port}").configuration), "/api/v1/pods",
        parse=lambda obj: obj["metadata"]["resourceVersion"], on_change=lambda k, o, n: changes.append((k, n)))
    stop = asyncio.Event()
    task = asyncio.create_task(mirror.run(stop))
    try:
        await eventually(lambda: "d" in list(mirror), within=10)
        assert changes == [("a", "2"), ("b", "3"), ("c", "4"), ("a", None), ("d", "5")]
        assert sorted(mirror) == ["b", "c", "d"]
        assert watches == ["1", "5", "5", "5", "5"], "each watch resumes after the last event applied"
        assert "over 400000 bytes" in caplog.text
        assert "is not an object" in caplog.text and "carries no object" in caplog.text
    finally:
        stop.set()
        release.set()
        await task
        await runner.cleanup()


def test_tls_context_is_built_once_and_again_when_its_files_rotate(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", ca)
    config = k8s.Configuration(host="https://api.example.invalid:6443")
    config.ssl_ca_cert = str(ca)
    conn = Connection(config)
    first = conn.ssl_context()
    assert first is conn.ssl_context(), "one context for every request"
    os.utime(ca, (1_000_000, 1_000_000))  # the CA file rotated (a new mtime)
    rotated = conn.ssl_context()
    assert rotated is not first and rotated is conn.ssl_context()
    assert Connection(k8s.Configuration(host="http://127.0.0.1:1")).ssl_context() is False

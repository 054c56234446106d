"""The real kopf operator, in the test's loop, against the emulator over HTTP.

This is the contract the end-to-end tests rely on: kopf discovers our resources, lists and
watches them, runs on.create once (its finalizer JSON patch with `test /metadata/resourceVersion`
succeeds), sees spec changes in on.update, keeps an index over nodes current, runs a daemon,
lands status patches through the status subresource, and releases its finalizer on deletion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
import pytest
from accelqual.sim.server import EmulatorServer

from tests.emulator.apiclient import node, qualification

GROUP, VERSION, PLURAL = "accelqual.io", "v1alpha1", "qualifications"


@dataclass
class Seen:
    """What the handlers observed, for the test to assert on."""

    created: list[str] = field(default_factory=list)
    diffs: list[tuple[Any, ...]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    daemon_ticks: int = 0
    index: dict[str, list[str]] = field(default_factory=dict)


def make_registry(url: str, seen: Seen) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()
        settings.posting.level = logging.WARNING

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, scheme="Bearer", token="x", insecure=True)

    @kopf.index("", "v1", "nodes", id="nodes_by_pool", registry=registry)
    def nodes_by_pool(name: str, labels: kopf.Labels, **_: Any) -> dict[str, str]:
        return {labels.get("pool", ""): name}

    @kopf.on.create(GROUP, VERSION, PLURAL, id="accept", registry=registry)
    def on_create(name: str, patch: kopf.Patch, **_: Any) -> None:
        seen.created.append(name)
        patch.status["phase"] = "Running"

    @kopf.on.update(GROUP, VERSION, PLURAL, id="follow", registry=registry)
    def on_update(diff: kopf.Diff, patch: kopf.Patch, **_: Any) -> None:
        seen.diffs.extend(tuple(change) for change in diff)
        patch.status["phase"] = "Completed"

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="release", registry=registry)
    def on_delete(name: str, **_: Any) -> None:
        seen.deleted.append(name)

    @kopf.daemon(GROUP, VERSION, PLURAL, id="watchdog", registry=registry)
    async def watchdog(stopped: kopf.DaemonStopped, **kwargs: Any) -> None:
        index: kopf.Index[str, str] = kwargs["nodes_by_pool"]  # kopf passes indexes as kwargs by id
        while not stopped:
            seen.daemon_ticks += 1
            seen.index = {pool: sorted(names) for pool, names in index.items()}
            await stopped.wait(0.05)

    return registry


async def eventually(condition: Callable[[], bool], what: str, within_s: float = 10.0) -> None:
    """Poll `condition` (state changes in the emulator's thread, so there is no event to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


@pytest.mark.timeout(60)
async def test_real_kopf_operator_runs_handlers_index_daemon_and_status_patches(server: EmulatorServer) -> None:
    emulator = server.emulator
    emulator.create("nodes", node("gpu-1", {"pool": "a"}))
    seen = Seen()
    stop, ready = asyncio.Event(), asyncio.Event()
    operator = asyncio.create_task(kopf.operator(registry=make_registry(server.url, seen), clusterwide=True,
                                                 standalone=True, stop_flag=stop, ready_flag=ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)

        emulator.create("qualifications", qualification("pool-a"))

        def status_phase() -> Any:
            obj = emulator.get("qualifications", None, "pool-a")
            return (obj or {}).get("status", {}).get("phase")
        await eventually(lambda: status_phase() == "Running", "on.create's status patch")
        await eventually(lambda: seen.index.get("a") == ["gpu-1"], "the node index")

        emulator.patch("qualifications", None, "pool-a", {"spec": {"suite": "full"}})
        await eventually(lambda: ("change", ("spec", "suite"), "quick", "full") in seen.diffs, "on.update's diff")
        await eventually(lambda: status_phase() == "Completed", "on.update's status patch")

        emulator.patch("nodes", None, "gpu-1", {"metadata": {"labels": {"pool": "b"}}})
        await eventually(lambda: seen.index.get("b") == ["gpu-1"] and "a" not in seen.index, "index update")
        ticks = seen.daemon_ticks
        await eventually(lambda: seen.daemon_ticks > ticks, "the daemon keeps running")

        stored = emulator.get("qualifications", None, "pool-a")
        assert stored is not None
        assert stored["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
        assert stored["metadata"]["generation"] == 2
        assert seen.created == ["pool-a"]  # once, despite the later updates and status writes

        emulator.delete("qualifications", None, "pool-a")
        await eventually(lambda: emulator.get("qualifications", None, "pool-a") is None, "finalizer release")
        assert seen.deleted == ["pool-a"]
        assert emulator.stats().get(("patch", "qualifications", "status"), 0) >= 2
    finally:
        stop.set()
        await asyncio.wait_for(operator, 15)

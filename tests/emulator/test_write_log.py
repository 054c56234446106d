"""The write log (writes to the resources a test names, with the object's name, the body sent and the answer),
and watches cut halfway through an event."""

from __future__ import annotations

import json

import aiohttp
import pytest
from accelqual.sim.emu_faults import FaultRule
from accelqual.sim.emulator import ClusterEmulator

from tests.emulator.apiclient import NODES, Api, node, pod, pods


async def test_writes_to_watched_resources_are_logged_with_name_body_and_status(api: Api,
                                                                               emulator: ClusterEmulator) -> None:
    emulator.write_log.watch(["nodes"])
    emulator.faults.add(FaultRule(method="PATCH", resource="nodes", status=500, count=1))
    await api.post(NODES, node("n1"))
    await api.post(pods("a"), pod("p1"))  # not watched

    failed = await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"x": "1"}}})
    stale = await api.patch(f"{NODES}/n1", {"metadata": {"resourceVersion": "1", "labels": {"x": "2"}}})
    await api.get(f"{NODES}/n1")  # a read, not a write

    records = emulator.write_log.records()
    assert [(r.verb, r.resource, r.name, r.status) for r in records] == [
        ("create", "nodes", "n1", 201), ("patch", "nodes", "n1", failed.status), ("patch", "nodes", "n1", stale.status)]
    assert failed.status == 500 and stale.status == 409
    assert not any(r.succeeded for r in records[1:])
    assert records[2].body == {"metadata": {"resourceVersion": "1", "labels": {"x": "2"}}}
    assert emulator.write_log.records("pods") == []


async def test_nothing_is_logged_unless_asked(api: Api, emulator: ClusterEmulator) -> None:
    await api.post(NODES, node("n1"))
    assert emulator.write_log.records() == []


async def test_a_watch_cut_mid_event_drops_the_connection_halfway_through_a_line(
        api: Api, emulator: ClusterEmulator) -> None:
    for i in range(3):
        await api.post(NODES, node(f"n{i}"))
    emulator.faults.add(FaultRule(resource="nodes", cut_watch_after=2, cut_mid_event=True))

    response = await api.session.get(api.url + NODES, params={"watch": "true"})
    first = await response.content.readline()
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.content.read()

    assert json.loads(first)["object"]["metadata"]["name"] == "n0"

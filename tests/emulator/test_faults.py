"""Fault injection and request counters: failures with status and Retry-After, delays, cut watches, stats."""

from __future__ import annotations

import time

import pytest
from accelqual.sim.emu_faults import FaultRule
from accelqual.sim.emulator import ClusterEmulator

from tests.emulator.apiclient import NODES, Api, node, pod, pods


async def test_a_rule_fails_matching_requests_count_times_then_stops(api: Api, emulator: ClusterEmulator) -> None:
    rule = emulator.faults.add(FaultRule(method="PATCH", resource="nodes", status=500, count=2))
    await api.post(NODES, node("n1"))

    replies = [await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"i": str(i)}}}) for i in range(3)]

    assert [r.status for r in replies] == [500, 500, 200]
    assert replies[0].body["kind"] == "Status"
    assert replies[0].body["reason"] == "InternalError"
    assert rule.fired == 2
    assert len(emulator.faults) == 0


async def test_rules_match_on_action_subresource_name_and_namespace(api: Api, emulator: ClusterEmulator) -> None:
    emulator.faults.add(FaultRule(action="patch", resource="pods", subresource="status", namespace="a", name="p1",
                                  status=409, count=None))
    await api.post(pods("a"), pod("p1"))
    await api.post(pods("a"), pod("p2"))

    status_p1 = await api.patch("/api/v1/namespaces/a/pods/p1/status", {"status": {"phase": "Running"}})
    status_p2 = await api.patch("/api/v1/namespaces/a/pods/p2/status", {"status": {"phase": "Running"}})
    main_p1 = await api.patch("/api/v1/namespaces/a/pods/p1", {"metadata": {"labels": {"x": "y"}}})

    assert status_p1.status == 409
    assert status_p1.body["reason"] == "Conflict"
    assert status_p2.status == 200
    assert main_p1.status == 200


async def test_throttling_carries_retry_after(api: Api, emulator: ClusterEmulator) -> None:
    emulator.faults.add(FaultRule(action="list", resource="nodes", status=429, retry_after=1.5))

    throttled = await api.get(NODES)
    served = await api.get(NODES)

    assert throttled.status == 429
    assert throttled.body["reason"] == "TooManyRequests"
    assert throttled.headers["Retry-After"] == "1.5"
    assert served.status == 200


async def test_delay_only_rule_slows_a_request_down(api: Api, emulator: ClusterEmulator) -> None:
    emulator.faults.add(FaultRule(action="get", resource="nodes", status=None, delay_s=0.3))
    await api.post(NODES, node("n1"))

    started = time.monotonic()
    reply = await api.get(f"{NODES}/n1")

    assert reply.status == 200
    assert time.monotonic() - started >= 0.3


async def test_cut_watch_after_ends_matching_streams_after_k_events(api: Api, emulator: ClusterEmulator) -> None:
    for i in range(5):
        await api.post(NODES, node(f"n{i}"))
    emulator.faults.add(FaultRule(resource="nodes", cut_watch_after=3))

    cut = await api.watch(NODES)
    cut_events = await cut.rest()
    whole = await api.watch(NODES)
    whole_events = await whole.take(5)
    whole.close()

    assert len(cut_events) == 3
    assert len(whole_events) == 5
    assert (await api.get(NODES)).status == 200  # the rule only ever touches watches


def test_fault_rule_validates_its_fields() -> None:
    with pytest.raises(ValueError, match="action"):
        FaultRule(action="fetch")
    with pytest.raises(ValueError, match="status"):
        FaultRule(status=42)


async def test_stats_count_requests_by_verb_resource_and_subresource(api: Api, emulator: ClusterEmulator) -> None:
    await api.post(pods(), pod("p1"))
    await api.get("/api/v1/namespaces/default/pods/p1")
    await api.get("/api/v1/pods")
    await api.patch("/api/v1/namespaces/default/pods/p1/status", {"status": {"phase": "Running"}})
    await api.request("PUT", "/api/v1/namespaces/default/pods/p1/log", content_type="text/plain", raw="x")
    await api.request("GET", "/api/v1/namespaces/default/pods/p1/log")
    await api.delete("/api/v1/namespaces/default/pods/p1")
    stream = await api.watch("/api/v1/pods", timeoutSeconds="1")
    await stream.rest()
    await api.get("/api/v1")

    assert emulator.stats() == {
        ("create", "pods", None): 1, ("get", "pods", None): 1, ("list", "pods", None): 1,
        ("patch", "pods", "status"): 1, ("update", "pods", "log"): 1, ("get", "pods", "log"): 1,
        ("delete", "pods", None): 1, ("watch", "pods", None): 1, ("get", "", None): 1,
    }
    emulator.reset_stats()
    assert emulator.stats() == {}


async def test_kmock_request_log_stays_bounded(api: Api, emulator: ClusterEmulator) -> None:
    for _ in range(3 * emulator.request_log_size):
        await api.get(NODES)

    assert len(emulator._requests) <= 2 * emulator.request_log_size
    assert emulator.stats()[("list", "nodes", None)] == 3 * emulator.request_log_size

"""WATCH over HTTP: resumption from a resourceVersion, 410 Gone, bookmarks, timeouts, selectors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from accelqual.sim.emulator import ClusterEmulator
from accelqual.sim.server import EmulatorServer

from tests.emulator.apiclient import NODES, Api, node, pod, pods


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events]


async def test_watch_from_a_resource_version_streams_only_later_events(api: Api) -> None:
    await api.post(NODES, node("n1"))
    await api.post(NODES, node("n2"))
    since = (await api.get(NODES)).body["metadata"]["resourceVersion"]
    await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"x": "1"}}})
    await api.post(NODES, node("n3"))

    stream = await api.watch(NODES, resourceVersion=since)
    events = await stream.take(2)
    stream.close()

    assert kinds(events) == [("MODIFIED", "n1"), ("ADDED", "n3")]
    assert events[0]["object"]["metadata"]["labels"] == {"x": "1"}
    assert events[1]["object"]["apiVersion"] == "v1"
    assert events[1]["object"]["kind"] == "Node"


async def test_watch_without_a_resource_version_starts_with_the_current_objects(api: Api) -> None:
    await api.post(NODES, node("n1"))
    await api.post(NODES, node("n2"))

    for since, live in ((None, "n3"), ("0", "n4")):
        current = (await api.get(NODES)).names
        stream = await api.watch(NODES, **({"resourceVersion": since} if since else {}))
        initial = await stream.take(len(current))
        assert kinds(initial) == [("ADDED", name) for name in current]
        await api.post(NODES, node(live))
        assert kinds(await stream.take(1)) == [("ADDED", live)]
        stream.close()


async def test_a_resumed_watch_gets_exactly_the_events_it_missed(api: Api) -> None:
    stream = await api.watch(NODES, resourceVersion=(await api.get(NODES)).rv)
    await api.post(NODES, node("n1"))
    first = await stream.take(1)
    stream.close()
    last_seen = first[0]["object"]["metadata"]["resourceVersion"]
    await api.patch(f"{NODES}/n1", {"spec": {"unschedulable": True}})
    await api.delete(f"{NODES}/n1")

    resumed = await api.watch(NODES, resourceVersion=last_seen)
    missed = await resumed.take(2)
    resumed.close()

    assert kinds(missed) == [("MODIFIED", "n1"), ("DELETED", "n1")]
    versions = [int(last_seen)] + [int(e["object"]["metadata"]["resourceVersion"]) for e in missed]
    assert versions == sorted(set(versions))


async def test_a_resource_version_older_than_the_history_is_410_gone(
        make_server: Callable[..., EmulatorServer], session: aiohttp.ClientSession) -> None:
    server = make_server(history_limit=3)
    api = Api(session, server.url)
    first = await api.post(NODES, node("n0"))
    for i in range(1, 6):
        await api.post(NODES, node(f"n{i}"))

    stream = await api.watch(NODES, resourceVersion=first.rv)
    events = await stream.rest()

    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["kind"] == "Status"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"
    recent = await api.watch(NODES, resourceVersion=str(int(first.rv) + 3))  # still in the history
    assert kinds(await recent.take(2)) == [("ADDED", "n4"), ("ADDED", "n5")]
    recent.close()


async def test_bookmarks_carry_the_current_resource_version(
        make_server: Callable[..., EmulatorServer], session: aiohttp.ClientSession) -> None:
    server = make_server(bookmark_interval=0.1)
    api = Api(session, server.url)
    await api.post(NODES, node("n1"))
    await api.post(pods(), pod("p1"))  # bumps the global resourceVersion past the last node event

    stream = await api.watch(NODES, resourceVersion="1", allowWatchBookmarks="true")
    events = await stream.take(2, skip_bookmarks=False)
    stream.close()

    assert kinds(events[:1]) == [("ADDED", "n1")]
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["kind"] == "Node"
    assert events[1]["object"]["metadata"]["resourceVersion"] == str(server.emulator.resource_version)


async def test_bookmarks_keep_coming_while_only_filtered_out_events_happen(
        make_server: Callable[..., EmulatorServer], session: aiohttp.ClientSession) -> None:
    server = make_server(bookmark_interval=0.1)
    api = Api(session, server.url)
    stream = await api.watch(NODES, resourceVersion="1", allowWatchBookmarks="true", labelSelector="pool=a")

    for i in range(15):  # busy, but never with a node this watch selects
        await api.post(NODES, node(f"other-{i}", {"pool": "b"}))
        await asyncio.sleep(0.02)
    first = await stream.next()
    stream.close()

    assert first is not None
    assert first["type"] == "BOOKMARK"


async def test_no_bookmarks_unless_allowed(make_server: Callable[..., EmulatorServer],
                                           session: aiohttp.ClientSession) -> None:
    server = make_server(bookmark_interval=0.05)
    api = Api(session, server.url)

    stream = await api.watch(NODES, resourceVersion="1", timeoutSeconds="1")
    events = await stream.rest()

    assert events == []


async def test_send_initial_events_ends_with_an_annotated_bookmark(api: Api) -> None:
    await api.post(NODES, node("n1"))

    stream = await api.watch(NODES, sendInitialEvents="true", allowWatchBookmarks="true",
                             resourceVersionMatch="NotOlderThan")
    events = await stream.take(2, skip_bookmarks=False)
    stream.close()

    assert kinds(events[:1]) == [("ADDED", "n1")]
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_timeout_seconds_ends_the_stream(api: Api) -> None:
    started = time.monotonic()

    stream = await api.watch(NODES, resourceVersion="1", timeoutSeconds="1")
    events = await stream.rest()

    assert events == []
    assert 0.9 <= time.monotonic() - started < 3


async def test_label_selector_on_a_watch_turns_transitions_into_added_and_deleted(api: Api) -> None:
    stream = await api.watch(NODES, resourceVersion=(await api.get(NODES)).rv, labelSelector="pool=a")

    await api.post(NODES, node("n1", {"pool": "a"}))
    await api.post(NODES, node("n2", {"pool": "b"}))
    await api.patch(f"{NODES}/n2", {"metadata": {"labels": {"pool": "a"}}})
    await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"pool": "b"}}})
    await api.patch(f"{NODES}/n2", {"spec": {"unschedulable": True}})
    await api.delete(f"{NODES}/n2")
    await api.delete(f"{NODES}/n1")
    events = await stream.take(5)
    stream.close()

    assert kinds(events) == [("ADDED", "n1"), ("ADDED", "n2"), ("DELETED", "n1"), ("MODIFIED", "n2"),
                             ("DELETED", "n2")]


async def test_field_selector_and_namespace_on_a_watch(api: Api) -> None:
    stream = await api.watch(pods("a"), fieldSelector="spec.nodeName=n1")

    await api.post(pods("a"), pod("elsewhere"))
    await api.post(pods("b"), pod("other-ns", spec={"nodeName": "n1", "containers": []}))
    await api.patch("/api/v1/namespaces/a/pods/elsewhere", {"spec": {"nodeName": "n1"}})
    events = await stream.take(1)
    stream.close()

    assert kinds(events) == [("ADDED", "elsewhere")]


async def test_python_writes_from_another_thread_emit_watch_events(api: Api, emulator: ClusterEmulator) -> None:
    stream = await api.watch(NODES, resourceVersion=(await api.get(NODES)).rv)

    def harness() -> None:
        emulator.create("nodes", node("n1"))
        emulator.patch("nodes", None, "n1", {"metadata": {"labels": {"x": "y"}}})
        emulator.delete("nodes", None, "n1")
    await asyncio.to_thread(harness)
    events = await stream.take(3)
    stream.close()

    assert kinds(events) == [("ADDED", "n1"), ("MODIFIED", "n1"), ("DELETED", "n1")]


async def test_streams_end_when_the_server_stops(session: aiohttp.ClientSession) -> None:
    server = EmulatorServer().start()
    stream = await Api(session, server.url).watch(NODES)

    started = time.monotonic()
    await asyncio.to_thread(server.stop)

    assert time.monotonic() - started < 1.0
    assert await stream.rest() == []


async def test_a_client_that_goes_away_releases_its_watch(api: Api, emulator: ClusterEmulator) -> None:
    stream = await api.watch(NODES)
    await api.post(NODES, node("n1"))
    await stream.take(1)
    assert emulator.open_watches() == 1

    stream.close()
    for _ in range(50):  # the server notices the closed connection asynchronously
        if emulator.open_watches() == 0:
            break
        await asyncio.sleep(0.05)

    assert emulator.open_watches() == 0


async def test_a_resource_version_from_the_future_is_410_so_the_client_relists(api: Api) -> None:
    stream = await api.watch(NODES, resourceVersion="999999")

    events = await stream.rest()

    assert [e["type"] for e in events] == ["ERROR"]
    assert events[0]["object"]["code"] == 410

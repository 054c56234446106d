"""Deletion over HTTP: finalizers and deletionTimestamp, and ownerReference garbage collection."""

from __future__ import annotations

from typing import Any

from accelqual.sim.emulator import ClusterEmulator

from tests.emulator.apiclient import JSON_PATCH, NODES, QUALIFICATIONS, Api, node, pod, pods, qualification

FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


def owned_by(owner: dict[str, Any]) -> list[dict[str, Any]]:
    meta = owner["metadata"]
    return [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": meta["name"], "uid": meta["uid"],
             "controller": True, "blockOwnerDeletion": True}]


async def test_delete_with_finalizers_marks_the_object_until_they_are_removed(api: Api) -> None:
    created = await api.post(QUALIFICATIONS, {**qualification("q1"), "metadata": {"name": "q1",
                                                                                  "finalizers": [FINALIZER]}})
    stream = await api.watch(QUALIFICATIONS, resourceVersion=created.rv)

    marked = await api.delete(f"{QUALIFICATIONS}/q1")
    again = await api.delete(f"{QUALIFICATIONS}/q1")
    still_there = await api.get(f"{QUALIFICATIONS}/q1")
    released = await api.patch(f"{QUALIFICATIONS}/q1", [
        {"op": "test", "path": "/metadata/resourceVersion", "value": still_there.rv},
        {"op": "remove", "path": "/metadata/finalizers/0"}], JSON_PATCH)
    events = await stream.take(2)
    stream.close()

    assert marked.status == 202
    assert marked.body["metadata"]["deletionTimestamp"]
    assert again.status == 202
    assert again.rv == marked.rv  # a repeated delete of a terminating object changes nothing
    assert still_there.status == 200
    assert released.status == 200
    assert (await api.get(f"{QUALIFICATIONS}/q1")).status == 404
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert events[1]["object"]["metadata"].get("finalizers", []) == []


async def test_no_new_finalizers_on_a_terminating_object(api: Api) -> None:
    await api.post(NODES, {"metadata": {"name": "n1", "finalizers": ["a/b"]}})
    await api.delete(f"{NODES}/n1")

    reply = await api.patch(f"{NODES}/n1", {"metadata": {"finalizers": ["a/b", "c/d"]}})

    assert reply.status == 422


async def test_deletion_timestamp_cannot_be_forged_by_a_patch(api: Api) -> None:
    await api.post(NODES, node("n1"))

    patched = await api.patch(f"{NODES}/n1", {"metadata": {"deletionTimestamp": "2020-01-01T00:00:00Z",
                                                           "uid": "forged", "labels": {"a": "b"}}})

    assert "deletionTimestamp" not in patched.body["metadata"]
    assert patched.body["metadata"]["uid"] != "forged"
    assert patched.body["metadata"]["labels"] == {"a": "b"}


async def test_deleting_a_cluster_scoped_owner_collects_its_namespaced_pods(api: Api) -> None:
    owner = (await api.post(QUALIFICATIONS, qualification("q1"))).body
    other = (await api.post(QUALIFICATIONS, qualification("q2"))).body
    for name, owners in (("probe-1", owned_by(owner)), ("probe-2", owned_by(owner)),
                         ("shared", owned_by(owner) + owned_by(other)), ("foreign", owned_by(other))):
        await api.post(pods("accelqual-system"), pod(name, metadata={"name": name, "ownerReferences": owners}))

    deleted = await api.delete(f"{QUALIFICATIONS}/q1")

    assert deleted.status == 200
    remaining = await api.get(pods("accelqual-system"))
    assert remaining.names == ["foreign", "shared"]  # "shared" still has a live owner


async def test_dependents_with_finalizers_are_marked_not_removed(api: Api) -> None:
    owner = (await api.post(QUALIFICATIONS, qualification("q1"))).body
    await api.post(pods(), pod("p1", metadata={"name": "p1", "ownerReferences": owned_by(owner),
                                               "finalizers": ["x/y"]}))

    await api.delete(f"{QUALIFICATIONS}/q1")

    left = await api.get("/api/v1/namespaces/default/pods/p1")
    assert left.status == 200
    assert left.body["metadata"]["deletionTimestamp"]


async def test_garbage_collection_cascades_and_orphan_propagation_keeps_dependents(
        api: Api, emulator: ClusterEmulator) -> None:
    q1 = emulator.create("qualifications", qualification("q1"))
    cm = emulator.create("configmaps", {"metadata": {"name": "cm", "ownerReferences": owned_by(q1)}}, "default")
    emulator.create("pods", pod("grandchild", metadata={"name": "grandchild", "ownerReferences": owned_by(cm)}),
                    "default")
    q2 = emulator.create("qualifications", qualification("q2"))
    emulator.create("pods", pod("orphan", metadata={"name": "orphan", "ownerReferences": owned_by(q2)}), "default")

    await api.delete(f"{QUALIFICATIONS}/q1")
    await api.delete(f"{QUALIFICATIONS}/q2", {"kind": "DeleteOptions", "apiVersion": "v1",
                                              "propagationPolicy": "Orphan"})

    assert emulator.get("configmaps", "default", "cm") is None
    assert emulator.get("pods", "default", "grandchild") is None
    orphan = emulator.get("pods", "default", "orphan")
    assert orphan is not None
    assert orphan["metadata"]["ownerReferences"] == []


async def test_recreated_object_gets_a_new_uid(api: Api) -> None:
    first = await api.post(NODES, node("n1"))
    await api.delete(f"{NODES}/n1")

    second = await api.post(NODES, node("n1"))

    assert second.body["metadata"]["uid"] != first.body["metadata"]["uid"]
    assert second.body["metadata"]["generation"] == 1

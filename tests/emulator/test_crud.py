"""Create, read, replace and delete over HTTP: server-managed metadata and Kubernetes errors."""

from __future__ import annotations

import re
import uuid

from accelqual.sim.emulator import ClusterEmulator

from tests.emulator.apiclient import NODES, QUALIFICATIONS, Api, node, pod, pods, qualification

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_create_sets_server_managed_metadata(api: Api) -> None:
    created = await api.post(pods("default"), pod("p1"))

    assert created.status == 201
    meta = created.body["metadata"]
    assert uuid.UUID(meta["uid"]).version == 4
    assert RFC3339_Z.match(meta["creationTimestamp"])
    assert meta["resourceVersion"].isdigit()
    assert meta["generation"] == 1
    assert meta["namespace"] == "default"
    assert created.body["apiVersion"] == "v1"
    assert created.body["kind"] == "Pod"
    assert created.body["status"]["phase"] == "Pending"


async def test_namespace_comes_from_the_url(api: Api) -> None:
    created = await api.post(pods("team-a"), {"metadata": {"name": "p1"}, "spec": {}})

    assert created.body["metadata"]["namespace"] == "team-a"
    assert (await api.get("/api/v1/namespaces/team-a/pods/p1")).status == 200
    assert (await api.get("/api/v1/namespaces/default/pods/p1")).status == 404


async def test_namespace_mismatch_between_url_and_body_is_rejected(api: Api) -> None:
    reply = await api.post(pods("team-a"), {"metadata": {"name": "p1", "namespace": "team-b"}})

    assert reply.status == 400
    assert "does not match the namespace" in reply.body["message"]


async def test_cluster_scoped_objects_have_no_namespace(api: Api) -> None:
    created = await api.post(QUALIFICATIONS, qualification("pool-a"))

    assert created.status == 201
    assert "namespace" not in created.body["metadata"]
    assert created.body["kind"] == "Qualification"


async def test_resource_version_is_one_global_increasing_counter(api: Api) -> None:
    first = await api.post(NODES, node("n1"))
    second = await api.post(pods(), pod("p1"))
    third = await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"x": "y"}}})

    versions = [int(first.rv), int(second.rv), int(third.rv)]
    assert versions == sorted(versions)
    assert len(set(versions)) == 3
    listed = await api.get(NODES)
    assert listed.body["metadata"]["resourceVersion"] == third.rv


async def test_generate_name_appends_five_random_characters(api: Api) -> None:
    first = await api.post("/api/v1/namespaces/default/events", {"metadata": {"generateName": "kopf-event-"},
                                                                "reason": "Test"})
    second = await api.post("/api/v1/namespaces/default/events", {"metadata": {"generateName": "kopf-event-"},
                                                                 "reason": "Test"})

    assert first.status == second.status == 201
    for reply in (first, second):
        assert re.fullmatch(r"kopf-event-[a-z0-9]{5}", reply.body["metadata"]["name"])
        assert reply.body["metadata"]["generateName"] == "kopf-event-"
    assert first.body["metadata"]["name"] != second.body["metadata"]["name"]


async def test_create_without_name_or_generate_name_is_invalid(api: Api) -> None:
    reply = await api.post(NODES, {"metadata": {}})

    assert reply.status == 422
    assert reply.body["reason"] == "Invalid"


async def test_invalid_names_and_label_values_are_rejected_like_a_real_server(api: Api) -> None:
    bad_name = await api.post(NODES, node("Not_A_DNS_Name"))
    bad_label = await api.post(NODES, node("n1", {"x": "v" * 64}))

    assert bad_name.status == 422
    assert bad_label.status == 422
    assert "metadata.labels" in bad_label.body["message"]


async def test_duplicate_create_is_409_already_exists(api: Api) -> None:
    await api.post(NODES, node("n1"))

    reply = await api.post(NODES, node("n1"))

    assert reply.status == 409
    assert reply.body["kind"] == "Status"
    assert reply.body["reason"] == "AlreadyExists"
    assert reply.body["code"] == 409


async def test_missing_object_is_404_status(api: Api) -> None:
    reply = await api.get(f"{NODES}/ghost")

    assert reply.status == 404
    assert reply.body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": 'nodes "ghost" not found', "reason": "NotFound", "code": 404,
                          "details": {"kind": "nodes", "name": "ghost"}}


async def test_unknown_resource_is_404(api: Api) -> None:
    reply = await api.get("/apis/example.com/v1/widgets")

    assert reply.status == 404
    assert reply.body["kind"] == "Status"


async def test_put_replaces_the_object_and_keeps_server_metadata(api: Api) -> None:
    created = await api.post(NODES, node("n1", {"a": "1"}, spec={"podCIDR": "10.0.0.0/24"}))

    replaced = await api.put(f"{NODES}/n1", node("n1", {"b": "2"}, spec={"unschedulable": True}))

    assert replaced.status == 200
    assert replaced.body["metadata"]["labels"] == {"b": "2"}
    assert replaced.body["spec"] == {"unschedulable": True}
    assert replaced.body["metadata"]["uid"] == created.body["metadata"]["uid"]
    assert replaced.body["metadata"]["creationTimestamp"] == created.body["metadata"]["creationTimestamp"]
    assert int(replaced.rv) > int(created.rv)
    assert replaced.body["metadata"]["generation"] == 2


async def test_put_of_a_missing_object_is_404(api: Api) -> None:
    reply = await api.put(f"{NODES}/ghost", node("ghost"))

    assert reply.status == 404
    assert reply.body["reason"] == "NotFound"


async def test_put_with_a_stale_resource_version_is_409_conflict(api: Api) -> None:
    created = await api.post(NODES, node("n1"))
    await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"moved": "on"}}})

    stale = node("n1", {"mine": "lost?"})
    stale["metadata"]["resourceVersion"] = created.rv
    reply = await api.put(f"{NODES}/n1", stale)

    assert reply.status == 409
    assert reply.body["reason"] == "Conflict"
    assert "the object has been modified; please apply your changes to the latest version" in reply.body["message"]
    assert (await api.get(f"{NODES}/n1")).body["metadata"]["labels"] == {"moved": "on"}


async def test_put_with_the_current_resource_version_succeeds(api: Api) -> None:
    created = await api.post(NODES, node("n1"))

    current = node("n1", {"mine": "kept"})
    current["metadata"]["resourceVersion"] = created.rv
    reply = await api.put(f"{NODES}/n1", current)

    assert reply.status == 200
    assert reply.body["metadata"]["labels"] == {"mine": "kept"}


async def test_delete_returns_the_object_and_it_is_gone(api: Api) -> None:
    created = await api.post(NODES, node("n1"))

    deleted = await api.delete(f"{NODES}/n1")

    assert deleted.status == 200
    assert deleted.body["metadata"]["uid"] == created.body["metadata"]["uid"]
    assert (await api.get(f"{NODES}/n1")).status == 404
    assert (await api.delete(f"{NODES}/n1")).status == 404


async def test_delete_precondition_on_a_stale_resource_version_is_409(api: Api) -> None:
    created = await api.post(NODES, node("n1"))
    await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"x": "y"}}})

    reply = await api.delete(f"{NODES}/n1", {"preconditions": {"resourceVersion": created.rv}})

    assert reply.status == 409
    assert (await api.get(f"{NODES}/n1")).status == 200


async def test_python_api_reads_and_writes_the_same_store(api: Api, emulator: ClusterEmulator) -> None:
    emulator.create("nodes", node("n1", {"pool": "a"}))
    await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"seen": "http"}}})

    from_python = emulator.get("nodes", None, "n1")

    assert from_python is not None
    assert from_python["metadata"]["labels"] == {"pool": "a", "seen": "http"}
    assert emulator.get("nodes", None, "ghost") is None
    from_python["metadata"]["labels"]["mutated"] = "locally"  # a copy: the store is unaffected
    assert "mutated" not in (await api.get(f"{NODES}/n1")).body["metadata"]["labels"]


async def test_server_dry_run_is_refused_rather_than_applied(api: Api) -> None:
    reply = await api.request("POST", NODES, node("n1"), params={"dryRun": "All"})

    assert reply.status == 400
    assert "dryRun" in reply.body["message"]
    assert (await api.get(f"{NODES}/n1")).status == 404


async def test_size_limits_of_a_real_server(api: Api) -> None:
    too_big_body = await api.post(pods(), {"metadata": {"name": "p1"}, "data": "x" * (3 * 1024 * 1024 + 1)})
    too_big_object = await api.post("/api/v1/namespaces/default/configmaps",
                                    {"metadata": {"name": "cm"}, "data": {"blob": "x" * (2 * 1024 * 1024)}})

    assert too_big_body.status == 413
    assert too_big_object.status == 500
    assert "request is too large" in too_big_object.body["message"]
    assert (await api.get("/api/v1/namespaces/default/configmaps/cm")).status == 404


async def test_custom_resources_are_validated_against_their_crd_schema(api: Api) -> None:
    bad = qualification("bad", maxConcurrent=-1, suite="everything")
    reply = await api.post(QUALIFICATIONS, bad)
    assert reply.status == 422
    assert reply.body["reason"] == "Invalid"
    assert "spec.maxConcurrent" in reply.body["message"] and "spec.suite" in reply.body["message"]
    created = await api.post(QUALIFICATIONS, qualification("good"))
    assert created.status == 201
    patched = await api.patch(f"{QUALIFICATIONS}/good", {"spec": {"trigger": "Sometimes"}})
    assert patched.status == 422
    status = await api.patch(f"{QUALIFICATIONS}/good/status", {"status": {"phase": "Exploded"}})
    assert status.status == 422

"""PATCH over HTTP: merge, strategic merge and JSON patches; generation; the status subresource; conflicts."""

from __future__ import annotations

import pytest

from tests.emulator.apiclient import (
    APPLY,
    JSON_PATCH,
    MERGE,
    NODES,
    QUALIFICATIONS,
    STRATEGIC,
    Api,
    node,
    pod,
    pods,
    qualification,
)

TAINTS = [{"key": "a", "effect": "NoSchedule"}, {"key": "b", "value": "1", "effect": "NoExecute"}]


async def test_merge_patch_merges_maps_replaces_lists_and_null_deletes(api: Api) -> None:
    await api.post(NODES, node("n1", {"keep": "1", "drop": "2"}, spec={"taints": TAINTS}))

    patched = await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"drop": None, "new": "3"}},
                                              "spec": {"taints": [{"key": "c", "effect": "NoSchedule"}]}}, MERGE)

    assert patched.status == 200
    assert patched.body["metadata"]["labels"] == {"keep": "1", "new": "3"}
    assert patched.body["spec"]["taints"] == [{"key": "c", "effect": "NoSchedule"}]


async def test_strategic_merge_patch_merges_taints_by_key_and_deletes_with_directive(api: Api) -> None:
    await api.post(NODES, node("n1", spec={"taints": TAINTS}))

    added = await api.patch(f"{NODES}/n1", {"spec": {"taints": [{"key": "b", "value": "2", "effect": "NoExecute"},
                                                                 {"key": "c", "effect": "NoSchedule"}]}}, STRATEGIC)
    removed = await api.patch(f"{NODES}/n1", {"spec": {"taints": [{"key": "a", "$patch": "delete"}]}}, STRATEGIC)

    assert added.body["spec"]["taints"] == [{"key": "a", "effect": "NoSchedule"},
                                            {"key": "b", "value": "2", "effect": "NoExecute"},
                                            {"key": "c", "effect": "NoSchedule"}]
    assert removed.body["spec"]["taints"] == [{"key": "b", "value": "2", "effect": "NoExecute"},
                                              {"key": "c", "effect": "NoSchedule"}]


async def test_strategic_merge_patch_merges_containers_conditions_and_container_statuses(api: Api) -> None:
    body = pod("p1", spec={"containers": [{"name": "main", "image": "a:1"}, {"name": "side", "image": "b:1"}]})
    await api.post(pods(), body)
    await api.patch("/api/v1/namespaces/default/pods/p1/status", {"status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "Scheduled", "status": "True"}],
        "containerStatuses": [{"name": "main", "ready": False}, {"name": "side", "ready": False}]}}, MERGE)

    spec = await api.patch("/api/v1/namespaces/default/pods/p1",
                           {"spec": {"containers": [{"name": "side", "image": "b:2"}]}}, STRATEGIC)
    status = await api.patch("/api/v1/namespaces/default/pods/p1/status", {"status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "main", "ready": True}]}}, STRATEGIC)

    assert spec.body["spec"]["containers"] == [{"name": "main", "image": "a:1"}, {"name": "side", "image": "b:2"}]
    assert status.body["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                                   {"type": "Scheduled", "status": "True"}]
    assert status.body["status"]["containerStatuses"] == [{"name": "main", "ready": True},
                                                          {"name": "side", "ready": False}]


async def test_strategic_merge_patch_merges_finalizers_as_a_set(api: Api) -> None:
    await api.post(NODES, {"metadata": {"name": "n1", "finalizers": ["x/a"]}})

    patched = await api.patch(f"{NODES}/n1", {"metadata": {"finalizers": ["x/a", "x/b"]}}, STRATEGIC)
    pruned = await api.patch(f"{NODES}/n1", {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x/a"]}},
                             STRATEGIC)

    assert patched.body["metadata"]["finalizers"] == ["x/a", "x/b"]
    assert pruned.body["metadata"]["finalizers"] == ["x/b"]


async def test_strategic_merge_patch_on_a_custom_resource_is_415(api: Api) -> None:
    await api.post(QUALIFICATIONS, qualification("q1"))

    reply = await api.patch(f"{QUALIFICATIONS}/q1", {"spec": {"suite": "full"}}, STRATEGIC)

    assert reply.status == 415
    assert reply.body["reason"] == "UnsupportedMediaType"


async def test_json_patch_supports_every_operation(api: Api) -> None:
    await api.post(NODES, node("n1", {"a": "1"}, spec={"taints": TAINTS}))

    patched = await api.patch(f"{NODES}/n1", [
        {"op": "test", "path": "/metadata/labels/a", "value": "1"},
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "replace", "path": "/metadata/labels/a", "value": "one"},
        {"op": "copy", "from": "/metadata/labels/b", "path": "/metadata/labels/c"},
        {"op": "move", "from": "/metadata/labels/b", "path": "/metadata/labels/d"},
        {"op": "remove", "path": "/spec/taints/0"},
        {"op": "add", "path": "/spec/taints/-", "value": {"key": "z", "effect": "NoSchedule"}},
        {"op": "add", "path": "/metadata/annotations", "value": {"x~y/z": "escaped"}},
        {"op": "replace", "path": "/metadata/annotations/x~0y~1z", "value": "unescaped"},
    ], JSON_PATCH)

    assert patched.status == 200, patched.body
    assert patched.body["metadata"]["labels"] == {"a": "one", "c": "2", "d": "2"}
    assert [t["key"] for t in patched.body["spec"]["taints"]] == ["b", "z"]
    assert patched.body["metadata"]["annotations"] == {"x~y/z": "unescaped"}


async def test_failed_json_patch_test_is_422_invalid_and_changes_nothing(api: Api) -> None:
    created = await api.post(NODES, node("n1"))

    reply = await api.patch(f"{NODES}/n1", [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "12345"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["kopf.zalando.org/KopfFinalizerMarker"]},
    ], JSON_PATCH)

    assert reply.status == 422  # kopf's APIUnprocessableEntityError: it retries on the next cycle
    assert reply.body["reason"] == "Invalid"
    after = await api.get(f"{NODES}/n1")
    assert after.rv == created.rv
    assert "finalizers" not in after.body["metadata"]


async def test_json_patch_on_a_missing_path_is_422(api: Api) -> None:
    await api.post(NODES, node("n1"))

    reply = await api.patch(f"{NODES}/n1", [{"op": "remove", "path": "/spec/nothing"}], JSON_PATCH)

    assert reply.status == 422


async def test_server_side_apply_is_refused_with_415_not_silently_ignored(api: Api) -> None:
    await api.post(NODES, node("n1"))

    reply = await api.request("PATCH", f"{NODES}/n1", content_type=APPLY,
                              raw="apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels: {x: y}\n")

    assert reply.status == 415
    assert "server-side apply" in reply.body["message"]
    assert (await api.get(f"{NODES}/n1")).body["metadata"]["labels"] == {}


async def test_merge_patch_with_a_stale_resource_version_is_409_conflict(api: Api) -> None:
    created = await api.post(NODES, node("n1"))
    await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"first": "writer"}}})

    reply = await api.patch(f"{NODES}/n1", {"metadata": {"resourceVersion": created.rv, "labels": {"second": "w"}}})
    current = await api.patch(f"{NODES}/n1", {"metadata": {"resourceVersion": (await api.get(f"{NODES}/n1")).rv,
                                                           "labels": {"second": "w"}}})

    assert reply.status == 409
    assert reply.body["reason"] == "Conflict"
    assert "please apply your changes to the latest version and try again" in reply.body["message"]
    assert current.status == 200


async def test_strategic_patch_with_a_stale_resource_version_is_409(api: Api) -> None:
    created = await api.post(NODES, node("n1"))
    await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"first": "writer"}}})

    reply = await api.patch(f"{NODES}/n1", {"metadata": {"resourceVersion": created.rv},
                                            "spec": {"taints": TAINTS}}, STRATEGIC)

    assert reply.status == 409


async def test_generation_tracks_spec_changes_only(api: Api) -> None:
    created = await api.post(QUALIFICATIONS, qualification("q1"))
    spec_change = await api.patch(f"{QUALIFICATIONS}/q1", {"spec": {"suite": "full"}})
    metadata_change = await api.patch(f"{QUALIFICATIONS}/q1", {"metadata": {"annotations": {"a": "b"}}})
    status_change = await api.patch(f"{QUALIFICATIONS}/q1/status", {"status": {"phase": "Running"}})

    assert created.body["metadata"]["generation"] == 1
    assert spec_change.body["metadata"]["generation"] == 2
    assert metadata_change.body["metadata"]["generation"] == 2
    assert status_change.body["metadata"]["generation"] == 2
    assert int(created.rv) < int(spec_change.rv) < int(metadata_change.rv) < int(status_change.rv)


async def test_a_no_op_patch_keeps_the_resource_version(api: Api) -> None:
    created = await api.post(NODES, node("n1", {"a": "1"}))

    same = await api.patch(f"{NODES}/n1", {"metadata": {"labels": {"a": "1"}}})

    assert same.rv == created.rv


async def test_status_subresource_writes_change_only_status(api: Api) -> None:
    await api.post(QUALIFICATIONS, qualification("q1"))

    patched = await api.patch(f"{QUALIFICATIONS}/q1/status", {"status": {"phase": "Running"},
                                                              "spec": {"suite": "full"},
                                                              "metadata": {"labels": {"sneaky": "yes"}}})
    replaced = await api.put(f"{QUALIFICATIONS}/q1/status", {**qualification("q1", suite="standard"),
                                                             "status": {"phase": "Completed"}})

    assert patched.body["status"] == {"phase": "Running"}
    assert patched.body["spec"]["suite"] == "quick"
    assert "labels" not in patched.body["metadata"]
    assert replaced.body["status"] == {"phase": "Completed"}
    assert replaced.body["spec"]["suite"] == "quick"


async def test_main_resource_writes_ignore_status(api: Api) -> None:
    await api.post(QUALIFICATIONS, qualification("q1"))
    await api.patch(f"{QUALIFICATIONS}/q1/status", {"status": {"phase": "Running"}})

    patched = await api.patch(f"{QUALIFICATIONS}/q1", {"spec": {"suite": "full"}, "status": {"phase": "Forged"}})
    replaced = await api.put(f"{QUALIFICATIONS}/q1", {**qualification("q1", suite="standard"),
                                                      "status": {"phase": "Forged"}})

    assert patched.body["spec"]["suite"] == "full"
    assert patched.body["status"] == {"phase": "Running"}
    assert replaced.body["spec"]["suite"] == "standard"
    assert replaced.body["status"] == {"phase": "Running"}


async def test_json_patch_on_status_subresource_applies_its_status_ops(api: Api) -> None:
    created = await api.post(QUALIFICATIONS, qualification("q1"))

    reply = await api.patch(f"{QUALIFICATIONS}/q1/status", [
        {"op": "test", "path": "/metadata/resourceVersion", "value": created.rv},
        {"op": "add", "path": "/status", "value": {"phase": "Running"}},
    ], JSON_PATCH)

    assert reply.status == 200
    assert reply.body["status"] == {"phase": "Running"}


async def test_kubelet_style_binding_and_status_patches_on_pods(api: Api) -> None:
    await api.post(pods(), pod("p1"))

    bound = await api.patch("/api/v1/namespaces/default/pods/p1", {"spec": {"nodeName": "n1"}})
    running = await api.patch("/api/v1/namespaces/default/pods/p1/status", {"status": {"phase": "Running"}})

    assert bound.body["spec"]["nodeName"] == "n1"
    assert running.body["status"]["phase"] == "Running"
    assert running.body["spec"]["nodeName"] == "n1"


async def test_binding_subresource_assigns_the_node_once(api: Api) -> None:
    await api.post(pods(), pod("p1"))
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p1"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "n7"}}

    first = await api.post("/api/v1/namespaces/default/pods/p1/binding", binding)
    second = await api.post("/api/v1/namespaces/default/pods/p1/binding", binding)

    assert first.status == 201
    assert (await api.get("/api/v1/namespaces/default/pods/p1")).body["spec"]["nodeName"] == "n7"
    assert second.status == 409


@pytest.mark.parametrize("content_type", ["text/plain", "application/yaml"])
async def test_unknown_patch_content_type_is_415(api: Api, content_type: str) -> None:
    await api.post(NODES, node("n1"))

    reply = await api.request("PATCH", f"{NODES}/n1", content_type=content_type, raw="{}")

    assert reply.status == 415

"""The official `kubernetes` client (37.0.1) against the emulator: list, patch, get, status, errors.

Note for callers: this client version sends PATCH as `application/json-patch+json` unless
`_content_type` is given, so a dict body needs `_content_type="application/merge-patch+json"`.
The client is blocking: these tests are sync, with the emulator in its own thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import kubernetes
import pytest
from accelqual.sim.server import EmulatorServer

from tests.emulator.apiclient import MERGE, STRATEGIC, node, qualification

GROUP, VERSION = "accelqual.io", "v1alpha1"


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[kubernetes.client.ApiClient]:
    api_client = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=server.url))
    try:
        yield api_client
    finally:
        api_client.close()  # type: ignore[no-untyped-call]  # (untyped upstream) frees its thread pool


def test_list_patch_and_get_nodes(server: EmulatorServer, client: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(client)
    server.emulator.create("nodes", node("gpu-1", {"pool": "a"}))
    server.emulator.create("nodes", node("gpu-2", {"pool": "b"}))

    listed = core.list_node(label_selector="pool=a")
    core.patch_node("gpu-1", {"metadata": {"labels": {"accelqual.io/verdict": "fail"}}}, _content_type=MERGE)
    core.patch_node("gpu-1", {"spec": {"taints": [{"key": "accelqual.io/failed", "effect": "NoSchedule"}]}},
                    _content_type=STRATEGIC)
    core.patch_node("gpu-1", [{"op": "add", "path": "/metadata/annotations", "value": {"why": "ecc"}}])
    fetched = core.read_node("gpu-1")

    assert [n.metadata.name for n in listed.items if n.metadata] == ["gpu-1"]
    assert fetched.metadata is not None
    assert fetched.spec is not None
    assert fetched.metadata.labels == {"pool": "a", "accelqual.io/verdict": "fail"}
    assert fetched.metadata.annotations == {"why": "ecc"}
    assert [(t.key, t.effect) for t in fetched.spec.taints or []] == [("accelqual.io/failed", "NoSchedule")]
    assert fetched.metadata.resource_version == str(server.emulator.resource_version)


def test_custom_objects_and_their_status(server: EmulatorServer, client: kubernetes.client.ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(client)

    custom.create_cluster_custom_object(GROUP, VERSION, "qualifications", qualification("pool-a"))
    custom.patch_cluster_custom_object_status(GROUP, VERSION, "qualifications", "pool-a",
                                              {"status": {"phase": "Running"}}, _content_type=MERGE)
    fetched = cast(dict[str, Any], custom.get_cluster_custom_object(GROUP, VERSION, "qualifications", "pool-a"))
    listed = cast(dict[str, Any], custom.list_cluster_custom_object(GROUP, VERSION, "qualifications"))

    assert fetched["status"] == {"phase": "Running"}
    assert fetched["metadata"]["generation"] == 1
    assert [item["metadata"]["name"] for item in listed["items"]] == ["pool-a"]


def test_errors_surface_as_api_exceptions_with_kubernetes_status(client: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(client)

    with pytest.raises(kubernetes.client.ApiException) as missing:
        core.read_node("ghost")
    config_map = kubernetes.client.V1ConfigMap(metadata=kubernetes.client.V1ObjectMeta(name="cm"), data={"a": "b"})
    core.create_namespaced_config_map("default", config_map)
    with pytest.raises(kubernetes.client.ApiException) as duplicate:
        core.create_namespaced_config_map("default", config_map)

    assert missing.value.status == 404
    assert duplicate.value.status == 409
    assert '"reason":"AlreadyExists"' in str(duplicate.value.body)

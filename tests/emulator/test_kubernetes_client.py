"""The official `kubernetes` client (37.0.1) against the emulator: list, patch, get, status, errors.

Note for callers: this client version sends PATCH as `application/json-patch+json` unless
`_content_type` is given, so a dict body needs `_content_type="application/merge-patch+json"`.
The client is blocking: these tests are sync, with the emulator in its own thread.
"""

from __future__ import annotations

from collections.abc import Iterator

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
        api_client.close()  # an unclosed ApiClient keeps a thread pool alive


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

    assert [n.metadata.name for n in listed.items] == ["gpu-1"]
    assert fetched.metadata.labels == {"pool": "a", "accelqual.io/verdict": "fail"}
    assert fetched.metadata.annotations == {"why": "ecc"}
    assert [(t.key, t.effect) for t in fetched.spec.taints] == [("accelqual.io/failed", "NoSchedule")]
    assert int(fetched.metadata.resource_version) == server.emulator.resource_version


def test_custom_objects_and_their_status(server: EmulatorServer, client: kubernetes.client.ApiClient) -> None:
    custom = kubernetes.client.CustomObjectsApi(client)

    custom.create_cluster_custom_object(GROUP, VERSION, "qualifications", qualification("pool-a"))
    custom.patch_cluster_custom_object_status(GROUP, VERSION, "qualifications", "pool-a",
                                              {"status": {"phase": "Running"}}, _content_type=MERGE)
    fetched = custom.get_cluster_custom_object(GROUP, VERSION, "qualifications", "pool-a")
    listed = custom.list_cluster_custom_object(GROUP, VERSION, "qualifications")

    assert fetched["status"] == {"phase": "Running"}
    assert fetched["metadata"]["generation"] == 1
    assert [item["metadata"]["name"] for item in listed["items"]] == ["pool-a"]


def test_errors_surface_as_api_exceptions_with_kubernetes_status(client: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(client)

    with pytest.raises(kubernetes.client.ApiException) as missing:
        core.read_node("ghost")
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    with pytest.raises(kubernetes.client.ApiException) as duplicate:
        core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})

    assert missing.value.status == 404
    assert duplicate.value.status == 409
    assert '"reason":"AlreadyExists"' in duplicate.value.body

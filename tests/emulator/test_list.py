"""LIST over HTTP: the list envelope, label and field selectors, limit/continue pagination."""

from __future__ import annotations

import pytest
from accelqual.sim.emulator import ClusterEmulator

from tests.emulator.apiclient import NODES, Api, node, pod, pods


async def test_list_envelope_carries_kind_api_version_and_current_resource_version(api: Api) -> None:
    await api.post(NODES, node("n1"))
    await api.post(pods(), pod("p1"))

    listed = await api.get(NODES)

    assert listed.status == 200
    assert listed.body["apiVersion"] == "v1"
    assert listed.body["kind"] == "NodeList"
    assert listed.body["metadata"] == {"resourceVersion": listed.body["metadata"]["resourceVersion"]}
    assert int(listed.body["metadata"]["resourceVersion"]) >= int(listed.body["items"][0]["metadata"]
                                                                  ["resourceVersion"])
    assert [(i["apiVersion"], i["kind"]) for i in listed.body["items"]] == [("v1", "Node")]


async def test_list_across_and_within_namespaces(api: Api) -> None:
    await api.post(pods("a"), pod("p1"))
    await api.post(pods("b"), pod("p2"))

    everywhere = await api.get("/api/v1/pods")
    in_a = await api.get(pods("a"))

    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere.body["items"]] == [
        ("a", "p1"), ("b", "p2")]
    assert in_a.names == ["p1"]


LABELLED = {
    "n1": {"pool": "a", "tier": "gpu", "gen": "3"},
    "n2": {"pool": "b", "tier": "gpu", "gen": "5"},
    "n3": {"pool": "c"},
    "n4": {},
}


@pytest.mark.parametrize(("selector", "expected"), [
    ("pool=a", ["n1"]),
    ("pool==a", ["n1"]),
    ("pool!=a", ["n2", "n3", "n4"]),
    ("pool in (a, b)", ["n1", "n2"]),
    ("pool notin (a,b)", ["n3", "n4"]),
    ("tier", ["n1", "n2"]),
    ("!tier", ["n3", "n4"]),
    ("tier=gpu,pool!=b", ["n1"]),
    ("gen>4", ["n2"]),
    ("gen<4", ["n1"]),
    ("tier,pool in (b,c)", ["n2"]),
    ("", ["n1", "n2", "n3", "n4"]),
])
async def test_label_selector_full_syntax(api: Api, emulator: ClusterEmulator, selector: str,
                                          expected: list[str]) -> None:
    for name, labels in LABELLED.items():
        emulator.create("nodes", node(name, labels))

    listed = await api.get(NODES, labelSelector=selector)

    assert listed.names == expected
    assert [o["metadata"]["name"] for o in emulator.list("nodes", label_selector=selector)] == expected


async def test_malformed_label_selector_is_400(api: Api) -> None:
    reply = await api.get(NODES, labelSelector="pool in (a")

    assert reply.status == 400
    assert reply.body["reason"] == "BadRequest"


async def test_field_selectors_on_pods(api: Api, emulator: ClusterEmulator) -> None:
    emulator.create("pods", pod("p1", spec={"nodeName": "n1", "containers": []}), namespace="a")
    emulator.create("pods", pod("p2", spec={"nodeName": "n2", "containers": []}), namespace="a")
    emulator.create("pods", pod("p3"), namespace="b")
    emulator.patch("pods", "a", "p2", {"status": {"phase": "Running"}}, subresource="status")

    async def names(selector: str) -> list[str]:
        return (await api.get("/api/v1/pods", fieldSelector=selector)).names

    assert await names("spec.nodeName=n1") == ["p1"]
    assert await names("status.phase==Running") == ["p2"]
    assert await names("status.phase!=Running") == ["p1", "p3"]
    assert await names("metadata.namespace=b") == ["p3"]
    assert await names("metadata.name=p2,spec.nodeName=n2") == ["p2"]
    assert await names("spec.nodeName=") == ["p3"]


async def test_unsupported_field_label_is_400_like_a_real_server(api: Api) -> None:
    reply = await api.get(NODES, fieldSelector="spec.providerID=x")

    assert reply.status == 400
    assert "field label not supported" in reply.body["message"]


async def test_limit_and_continue_page_through_everything_once(api: Api, emulator: ClusterEmulator) -> None:
    for i in range(7):
        emulator.create("nodes", node(f"n{i}", {"even": str(i % 2 == 0).lower()}))

    seen: list[str] = []
    token = None
    pages = 0
    list_rv = None
    while True:
        params = {"limit": "3", "labelSelector": "even=true"}
        if token:
            params["continue"] = token
        page = await api.get(NODES, **params)
        pages += 1
        seen += page.names
        list_rv = list_rv or page.body["metadata"]["resourceVersion"]
        assert page.body["metadata"]["resourceVersion"] == list_rv  # one snapshot version across pages
        token = page.body["metadata"].get("continue")
        if not token:
            break

    assert seen == ["n0", "n2", "n4", "n6"]
    assert pages == 2


async def test_invalid_continue_token_is_400(api: Api) -> None:
    reply = await api.get(NODES, limit="1", **{"continue": "not-a-token"})

    assert reply.status == 400

"""Discovery, resource registration (API and CRDs) and kubectl's Table output."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from accelqual.sim.emulator import ClusterEmulator
from accelqual.sim.server import EmulatorServer

from tests.emulator.apiclient import NODES, QUALIFICATIONS, Api, node, qualification

TABLE = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
         "application/json")  # what kubectl get sends


def by_name(resource_list: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in resource_list["resources"]}


async def test_core_discovery_lists_kinds_scopes_verbs_and_short_names(api: Api) -> None:
    versions = await api.get("/api")
    core = await api.get("/api/v1")

    assert versions.body["versions"] == ["v1"]
    assert core.body["groupVersion"] == "v1"
    resources = by_name(core.body)
    assert {"nodes", "pods", "pods/status", "pods/log", "pods/binding", "events", "configmaps", "namespaces",
            "secrets", "services"} <= set(resources)
    assert resources["pods"]["kind"] == "Pod"
    assert resources["pods"]["namespaced"] is True
    assert resources["nodes"]["namespaced"] is False
    assert set(resources["pods"]["verbs"]) == {"create", "delete", "get", "list", "patch", "update", "watch"}
    assert resources["pods/log"]["verbs"] == ["get"]
    assert resources["pods/status"]["shortNames"] == []
    assert resources["nodes"]["shortNames"] == ["no"]


async def test_group_discovery_lists_our_custom_resources(api: Api) -> None:
    groups = await api.get("/apis")
    group = await api.get("/apis/accelqual.io")
    version = await api.get("/apis/accelqual.io/v1alpha1")

    names = {g["name"] for g in groups.body["groups"]}
    assert {"accelqual.io", "kopf.dev", "coordination.k8s.io", "events.k8s.io", "apiextensions.k8s.io"} <= names
    assert group.body["preferredVersion"]["version"] == "v1alpha1"
    resources = by_name(version.body)
    assert resources["qualifications"]["kind"] == "Qualification"
    assert resources["qualifications"]["namespaced"] is False
    assert resources["qualifications"]["shortNames"] == ["aq"]
    assert "qualifications/status" in resources
    assert resources["cardprofiles"]["kind"] == "CardProfile"
    assert resources["cardprofiles"]["shortNames"] == ["acp"]
    assert "cardprofiles/status" not in resources
    kopf = by_name((await api.get("/apis/kopf.dev/v1")).body)
    assert kopf["clusterkopfpeerings"]["namespaced"] is False
    assert kopf["kopfpeerings"]["namespaced"] is True


async def test_register_serves_one_more_resource(api: Api, emulator: ClusterEmulator) -> None:
    emulator.register("example.com", "v1", "widgets", kind="Widget", namespaced=True, subresources=("status",),
                      short_names=("wd",))

    created = await api.post("/apis/example.com/v1/namespaces/default/widgets", {"metadata": {"name": "w1"}})
    discovered = by_name((await api.get("/apis/example.com/v1")).body)

    assert created.status == 201
    assert created.body["apiVersion"] == "example.com/v1"
    assert discovered["widgets"]["shortNames"] == ["wd"]
    assert emulator.spec("wd").kind == "Widget"


async def test_creating_a_crd_serves_its_resource(api: Api) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "gadgets.example.org"},
           "spec": {"group": "example.org", "scope": "Cluster",
                    "names": {"plural": "gadgets", "kind": "Gadget", "shortNames": ["gd"]},
                    "versions": [{"name": "v2", "served": True, "storage": True, "subresources": {"status": {}}}]}}

    created = await api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    gadget = await api.post("/apis/example.org/v2/gadgets", {"metadata": {"name": "g1"}, "spec": {"x": 1}})
    status = await api.patch("/apis/example.org/v2/gadgets/g1", {"status": {"ignored": True}})

    assert created.status == 201
    assert gadget.status == 201
    assert "status" not in status.body  # it has a status subresource
    assert (await api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                           {"metadata": {"name": "broken"}, "spec": {}})).status == 422


async def test_table_output_for_nodes_and_printer_columns_for_qualifications(api: Api) -> None:
    await api.post(NODES, node("n1", status={"conditions": [{"type": "Ready", "status": "True"}]}))
    await api.post(QUALIFICATIONS, qualification("q1"))
    await api.patch(f"{QUALIFICATIONS}/q1/status", {"status": {"phase": "Running",
                                                               "summary": {"passed": 2, "failed": 1, "total": 5}}})

    nodes = await api.request("GET", NODES, headers={"Accept": TABLE})
    quals = await api.request("GET", QUALIFICATIONS, headers={"Accept": TABLE})
    one = await api.request("GET", f"{QUALIFICATIONS}/q1", headers={"Accept": TABLE})

    assert nodes.body["kind"] == "Table"
    assert nodes.body["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in nodes.body["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert nodes.body["rows"][0]["cells"][:2] == ["n1", "Ready"]
    assert nodes.body["rows"][0]["object"]["metadata"]["name"] == "n1"
    columns = [c["name"] for c in quals.body["columnDefinitions"]]
    assert columns[:5] == ["Name", "Phase", "Passed", "Failed", "Inconclusive"]
    cells = dict(zip(columns, quals.body["rows"][0]["cells"], strict=True))
    assert cells["Phase"] == "Running"
    assert (cells["Passed"], cells["Failed"], cells["Total"]) == (2, 1, 5)
    assert cells["Inconclusive"] == "<none>"
    assert one.body["kind"] == "Table"
    assert len(one.body["rows"]) == 1


async def test_plain_json_without_the_table_accept_header(api: Api) -> None:
    await api.post(NODES, node("n1"))

    reply = await api.request("GET", NODES, headers={"Accept": "application/json"})

    assert reply.body["kind"] == "NodeList"


def test_kubectl_gets_labels_and_patches_through_the_kubeconfig(server: EmulatorServer, tmp_path: Path,
                                                                kubectl: Path) -> None:
    config = server.write_kubeconfig(tmp_path / "kubeconfig")
    server.emulator.create("qualifications", qualification("pool-a"))
    server.emulator.create("nodes", node("gpu-1", status={"conditions": [{"type": "Ready", "status": "True"}]}))

    def run(*args: str) -> str:
        done = subprocess.run([str(kubectl), "--kubeconfig", str(config), *args], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "Warning" not in done.stderr, done.stderr
        return done.stdout

    assert "pool-a" in run("get", "aq")
    run("label", "node", "gpu-1", "accelqual.io/verdict=pass")
    run("cordon", "gpu-1")
    listed = run("get", "nodes", "-l", "accelqual.io/verdict=pass")

    assert "Ready,SchedulingDisabled" in listed
    patched = server.emulator.get("nodes", None, "gpu-1")
    assert patched is not None
    assert patched["spec"]["unschedulable"] is True

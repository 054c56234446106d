"""`RealCluster`: the end-to-end tests' cluster interface over a real cluster (kind, k3s, ...).

Set `ACCELQUAL_E2E_KUBECONFIG` and run `pytest -m realcluster`: the tests marked `realcluster`
then drive a real API server, scheduler and kubelets instead of the emulator. The operator
still runs in the test process (against the kubeconfig), S3 is still a local moto server
(only the operator talks to S3), and the probe pods are real: `accelqual probe` in the image
named by `ACCELQUAL_E2E_PROBE_IMAGE` (build `images/probe-cpu.Dockerfile` and load it into the
cluster, e.g. `kind load docker-image`), on the CPU of the real nodes.

The tests' simulated nodes (`node-0`, `other-1`, ...) are mapped in order onto the real nodes
named by `ACCELQUAL_E2E_NODES` (comma-separated; default: every Ready, schedulable node).
Their labels and taints are put on those nodes for the test and every change is undone
afterwards (labels, taints and our annotations restored, Qualifications and probe pods
deleted). A test that needs more nodes than there are, or a fault injected into one node
(the real probe image has no per-node fault switch), is skipped with the reason.

Other settings: `ACCELQUAL_E2E_NAMESPACE` (probe pods; default `accelqual-e2e`, created when
missing), `ACCELQUAL_E2E_TIMEOUT_SCALE` (waits are this many times the simulator's; default 10:
real pods pull images and run real probes).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from accelqual.adapters.kube import MERGE_PATCH, KubeClient, KubeError, node_path
from accelqual.adapters.metrics import Metrics
from accelqual.handlers.reconcile import OperatorConfig
from accelqual.runtime import OperatorOptions
from accelqual.sim.cluster import BUCKET, S3_SECRET, ClusterDriver, OperatorThread
from accelqual.sim.kubelet import SimNode
from accelqual.sim.s3 import LocalS3

ENV_KUBECONFIG = "ACCELQUAL_E2E_KUBECONFIG"
CRDS = Path(__file__).resolve().parents[2] / "crds"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
#: Node metadata keys of ours: what a test may leave on a real node and the cleanup removes.
OURS = "accelqual.io/"


def configured() -> str | None:
    """The real cluster's kubeconfig, when the tests are asked to use one."""
    return os.environ.get(ENV_KUBECONFIG) or None


class RealCluster(ClusterDriver):
    """A real cluster behind the `ClusterDriver` interface of the end-to-end tests."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = os.environ.get("ACCELQUAL_E2E_NAMESPACE", "accelqual-e2e")
        self.image = os.environ.get("ACCELQUAL_E2E_PROBE_IMAGE", "accelqual/probe-cpu:dev")
        self.timeout_scale = float(os.environ.get("ACCELQUAL_E2E_TIMEOUT_SCALE", "10"))
        self.kube: KubeClient | None = None
        self.operator: OperatorThread | None = None
        self.metrics = Metrics()
        self.s3: LocalS3 | None = LocalS3()
        self.kubelet = None  # real kubelets: nothing to script
        self._names: dict[str, str] = {}  # test name -> real node name
        self._saved: dict[str, dict[str, Any]] = {}  # real node name -> its labels, annotations and taints
        self._applied: set[tuple[str, str]] = set()

    # --- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> RealCluster:
        self.kube = KubeClient.from_environment(self.kubeconfig)
        self._ensure_crds()
        self._ensure(f"/api/v1/namespaces/{self.namespace}", "/api/v1/namespaces",
                     {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
        assert self.s3 is not None
        self.s3.start()
        self.s3.create_bucket(BUCKET)
        self._ensure(f"/api/v1/namespaces/{self.namespace}/secrets/{S3_SECRET}",
                     f"/api/v1/namespaces/{self.namespace}/secrets", self.s3_secret())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Undo everything the test did to the cluster, then stop the operator and S3."""
        try:
            for plural, name in self._applied:
                self._delete_quietly(f"/apis/accelqual.io/v1alpha1/{plural}/{name}")
            self._wait_gone(self._applied)  # the running operator lifts kopf's finalizer; then it may stop
            for pod in self.pods("app.kubernetes.io/component=probe"):
                self._delete_quietly(f"/api/v1/namespaces/{self.namespace}/pods/{pod['metadata']['name']}")
        finally:
            self.stop_operator()  # after the deletes: nothing may re-mark a node once it is restored
            for node, saved in self._saved.items():
                self._restore(node, saved)
            if self.kube is not None:
                self.kube.close()
                self.kube = None
            if self.s3 is not None:
                self.s3.stop()

    def options(self) -> OperatorOptions:
        return OperatorOptions(config=OperatorConfig(namespace=self.namespace, secret_namespace=self.namespace),
                               kubeconfig=self.kubeconfig, debounce=0.2)

    # --- nodes --------------------------------------------------------------------------

    def node_name(self, name: str) -> str:
        return self._names.get(name, name)

    def add_nodes(self, nodes: Iterable[SimNode]) -> None:
        """Give real nodes the labels and taints of the tests' simulated ones (in order)."""
        wanted = list(nodes)
        for node in wanted:
            if node.faults or node.env:
                pytest.skip(f"{node.name} needs an injected fault or scripted output ({node.faults or node.env}); "
                            "the real probe image has no per-node fault switch")
        free = [n for n in self._candidates() if n not in self._saved]
        if len(wanted) > len(free):
            pytest.skip(f"needs {len(wanted) + len(self._saved)} nodes; the real cluster offers "
                        f"{len(free) + len(self._saved)}")
        for node, real in zip(wanted, free, strict=False):
            current = self.api.get(node_path(real))
            meta = current["metadata"]
            self._saved[real] = {"labels": dict(meta.get("labels") or {}),
                                 "annotations": dict(meta.get("annotations") or {}),
                                 "taints": list((current.get("spec") or {}).get("taints") or [])}
            self._names[node.name] = real
            taints = self._saved[real]["taints"] + [t for t in node.taints if t not in self._saved[real]["taints"]]
            self.api.patch(node_path(real), {"metadata": {"labels": dict(node.labels)},
                                             "spec": {"taints": taints or None}}, MERGE_PATCH)

    def _candidates(self) -> list[str]:
        named = [n.strip() for n in os.environ.get("ACCELQUAL_E2E_NODES", "").split(",") if n.strip()]
        if named:
            return named
        found = []
        for node in self.api.list_all("/api/v1/nodes"):
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (node.get("status") or {}).get("conditions") or [])
            if ready and not (node.get("spec") or {}).get("unschedulable"):
                found.append(node["metadata"]["name"])
        return sorted(found)

    def _restore(self, node: str, saved: Mapping[str, Any]) -> None:
        try:
            current = self.api.get(node_path(node))
        except KubeError:
            return
        meta = current["metadata"]
        labels: dict[str, str | None] = {k: None for k in meta.get("labels") or {} if k not in saved["labels"]}
        labels.update(saved["labels"])
        annotations: dict[str, str | None] = {k: None for k in meta.get("annotations") or {}
                                              if k.startswith(OURS) and k not in saved["annotations"]}
        self.api.patch(node_path(node), {"metadata": {"labels": labels, "annotations": annotations or None},
                                         "spec": {"taints": list(saved["taints"]) or None}}, MERGE_PATCH)

    def nodes(self) -> dict[str, dict[str, Any]]:
        """The nodes the test uses, under the names the test gave them."""
        real = {n["metadata"]["name"]: n for n in self.api.list_all("/api/v1/nodes")}
        return {test: real[name] for test, name in self._names.items() if name in real}

    # --- content ------------------------------------------------------------------------

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Apply with the real cluster's probe settings: its image, no simulated resource, real waits."""
        manifest = dict(manifest)
        if manifest.get("kind") == "Qualification":
            spec = dict(manifest.get("spec") or {})
            probe = {k: v for k, v in dict(spec.get("probe") or {}).items() if k != "resourceName"}
            probe.update(image=self.image, cpu="1", memory="2Gi",
                         timeoutSeconds=max(int(probe.get("timeoutSeconds", 60) * self.timeout_scale), 300))
            spec["probe"] = probe
            manifest["spec"] = spec
        plural = {"Qualification": "qualifications", "CardProfile": "cardprofiles"}.get(str(manifest.get("kind")))
        if plural is not None:
            self._applied.add((plural, str(manifest["metadata"]["name"])))
        return super().apply(manifest)

    # --- helpers ------------------------------------------------------------------------

    def _ensure(self, path: str, collection: str, body: Mapping[str, Any]) -> None:
        try:
            self.api.get(path)
        except KubeError as exc:
            if not exc.not_found:
                raise
            self.api.create(collection, body)

    def _ensure_crds(self) -> None:
        for file in sorted(CRDS.glob("*.yaml")):
            crd = yaml.safe_load(file.read_text())
            self._ensure(f"{CRD_PATH}/{crd['metadata']['name']}", CRD_PATH, crd)
        deadline = time.monotonic() + 60
        while True:  # a new CRD is served once it is Established
            try:
                self.api.list_all("/apis/accelqual.io/v1alpha1/qualifications")
                return
            except KubeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def _wait_gone(self, objects: Iterable[tuple[str, str]], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for plural, name in objects:
            while time.monotonic() < deadline:
                try:
                    self.api.get(f"/apis/accelqual.io/v1alpha1/{plural}/{name}")
                except KubeError as exc:
                    if exc.not_found:
                        break
                    raise
                time.sleep(0.2)

    def _delete_quietly(self, path: str) -> None:
        try:
            self.api.delete(path)
        except KubeError as exc:
            if not exc.not_found:
                raise


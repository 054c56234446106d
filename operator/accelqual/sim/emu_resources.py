"""The resources the emulated API server knows: what discovery lists and what the store accepts.

A `ResourceSpec` carries what discovery, `kubectl get` and the store need about one resource:
kind, scope, subresources, short names, printer columns, the field labels its field selectors
may use, and whether it is a built-in kind (strategic merge patch) or a custom resource.
`DEFAULT_RESOURCES` is what a fresh `ClusterEmulator` serves: the built-in kinds the operator,
kopf and the simulated kubelet touch, kopf's peering resources, and accelqual's own CRDs taken
from `accelqual.crdgen` (the source of truth for their names, columns and subresources).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from accelqual import crdgen

#: Field labels every resource supports in field selectors.
COMMON_FIELD_LABELS = frozenset({"metadata.name", "metadata.namespace"})
#: The verbs discovery lists for a main resource and for its subresources.
RESOURCE_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
SUBRESOURCE_VERBS: dict[str, tuple[str, ...]] = {
    "status": ("get", "patch", "update"),
    "log": ("get",),
    "binding": ("create",),
    "finalize": ("update",),
}


@dataclass(frozen=True)
class ResourceSpec:
    """One served resource (group/version/plural) and what clients learn about it from discovery."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    singular: str = ""
    #: CRD-style `additionalPrinterColumns` (name, type, jsonPath, priority) for Table output.
    printer_columns: tuple[Mapping[str, Any], ...] = ()
    field_labels: frozenset[str] = COMMON_FIELD_LABELS
    #: Built-in kinds accept strategic merge patches; custom resources answer them with 415.
    builtin: bool = True
    #: A custom resource's openAPIV3Schema as canonical JSON ('' for none): writes are validated.
    schema: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """`group/version/plural` ('' group for core), the store's key for this resource."""
        return f"{self.group}/{self.version}/{self.plural}"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    def has_status(self) -> bool:
        return "status" in self.subresources


def resource_spec(group: str, version: str, plural: str, *, kind: str, namespaced: bool,
                  subresources: Iterable[str] = (), short_names: Iterable[str] = (),
                  printer_columns: Sequence[Mapping[str, Any]] = (), categories: Iterable[str] = (),
                  singular: str = "", field_labels: Iterable[str] = (), builtin: bool | None = None) -> ResourceSpec:
    """Build a `ResourceSpec`; a resource is built-in unless its group contains a dot other than *.k8s.io."""
    if builtin is None:
        builtin = group == "" or group.endswith(".k8s.io") or "." not in group
    return ResourceSpec(group=group, version=version, plural=plural, kind=kind, namespaced=namespaced,
                        subresources=tuple(subresources), short_names=tuple(short_names),
                        categories=tuple(categories), singular=singular,
                        printer_columns=tuple(dict(c) for c in printer_columns),
                        field_labels=COMMON_FIELD_LABELS | frozenset(field_labels), builtin=builtin)


def spec_from_crd(crd: Mapping[str, Any]) -> ResourceSpec:
    """The resource a CustomResourceDefinition manifest defines (its storage version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = spec.get("versions") or []
    if not spec.get("group") or not names.get("plural") or not names.get("kind") or not versions:
        raise ValueError("a CustomResourceDefinition needs spec.group, spec.names.plural/kind and spec.versions")
    version = next((v for v in versions if v.get("storage")), versions[0])
    schema = (version.get("schema") or {}).get("openAPIV3Schema")
    resource = resource_spec(
        spec["group"], version["name"], names["plural"], kind=names["kind"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        subresources=[name for name in (version.get("subresources") or {})],
        short_names=names.get("shortNames") or (), categories=names.get("categories") or (),
        singular=names.get("singular") or "", printer_columns=version.get("additionalPrinterColumns") or (),
        builtin=False,
    )
    return replace(resource, schema=json.dumps(schema, sort_keys=True)) if schema else resource


_POD_FIELDS = ("spec.nodeName", "status.phase", "spec.schedulerName", "spec.serviceAccountName",
               "spec.restartPolicy", "status.podIP", "status.nominatedNodeName")
_EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                 "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                 "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type")


def default_resources() -> list[ResourceSpec]:
    """The resources a fresh emulator serves (see the module docstring)."""
    spec = resource_spec
    return [
        spec("", "v1", "nodes", kind="Node", namespaced=False, subresources=("status",), short_names=("no",),
             field_labels=("spec.unschedulable",)),
        spec("", "v1", "pods", kind="Pod", namespaced=True, subresources=("status", "log", "binding"),
             short_names=("po",), categories=("all",), field_labels=_POD_FIELDS),
        spec("", "v1", "events", kind="Event", namespaced=True, short_names=("ev",), field_labels=_EVENT_FIELDS),
        spec("", "v1", "configmaps", kind="ConfigMap", namespaced=True, short_names=("cm",)),
        spec("", "v1", "namespaces", kind="Namespace", namespaced=False, subresources=("status", "finalize"),
             short_names=("ns",), field_labels=("status.phase",)),
        spec("", "v1", "secrets", kind="Secret", namespaced=True, field_labels=("type",)),
        spec("", "v1", "services", kind="Service", namespaced=True, subresources=("status",), short_names=("svc",),
             categories=("all",)),
        spec("coordination.k8s.io", "v1", "leases", kind="Lease", namespaced=True),
        spec("events.k8s.io", "v1", "events", kind="Event", namespaced=True, short_names=("ev",)),
        spec("apiextensions.k8s.io", "v1", "customresourcedefinitions", kind="CustomResourceDefinition",
             namespaced=False, subresources=("status",), short_names=("crd", "crds"),
             categories=("api-extensions",)),
        spec("kopf.dev", "v1", "clusterkopfpeerings", kind="ClusterKopfPeering", namespaced=False),
        spec("kopf.dev", "v1", "kopfpeerings", kind="KopfPeering", namespaced=True),
        *(spec_from_crd(crd) for crd in crdgen.all_crds()),
    ]

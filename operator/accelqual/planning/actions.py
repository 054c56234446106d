"""What `plan()` asks the handlers to do. Plain values; the handlers apply them in order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from accelqual_probes.schema import OverallVerdict

from accelqual.planning.snapshot import Taint


@dataclass(frozen=True)
class CreatePod:
    node: str
    manifest: Mapping[str, Any]


@dataclass(frozen=True)
class DeletePod:
    name: str
    why: str


@dataclass(frozen=True)
class MarkNode:
    """Record a verdict on a node and change our taints, conditional on `resource_version`.

    Only taints with our own keys are added or removed; the applier reads the node's current
    taint list, edits it, and writes it back with the resourceVersion precondition, so a
    concurrent change by anyone else makes the write fail (409) rather than being lost.
    """

    node: str
    verdict: OverallVerdict
    resource_version: str
    labels: Mapping[str, str | None] = field(default_factory=dict)
    annotations: Mapping[str, str | None] = field(default_factory=dict)
    add_taints: tuple[Taint, ...] = ()
    remove_taints: tuple[Taint, ...] = ()
    #: True: cordon, False: uncordon (only when we cordoned), None: leave as is.
    unschedulable: bool | None = None


@dataclass(frozen=True)
class PostEvent:
    """A Kubernetes Event on a Node or on the Qualification; `key` makes its name deterministic."""

    kind: str  # "Node" | "Qualification"
    name: str
    type: str  # "Normal" | "Warning"
    reason: str
    message: str
    key: str


@dataclass(frozen=True)
class UploadSummary:
    run_id: str
    document: Mapping[str, Any]


@dataclass(frozen=True)
class RemoveAnnotation:
    """Remove an annotation from the Qualification (the consumed `resume` request)."""

    key: str


Action = CreatePod | DeletePod | MarkNode | PostEvent | UploadSummary | RemoveAnnotation


def node_patch(
    mark: MarkNode, taints: tuple[Taint, ...], unschedulable: bool, resource_version: str
) -> dict[str, Any]:
    """The merge patch for `mark` on a node whose current taints are `taints`.

    The taint list is rewritten from the list read at `resource_version`, which the patch
    carries as a precondition: if anyone changed the node since, the server answers 409
    and nothing of theirs is overwritten. Only taints whose key is ours are touched.
    """
    removed = {(t.key, t.effect) for t in mark.remove_taints}
    new_taints = [t for t in taints if (t.key, t.effect) not in removed]
    present = {(t.key, t.effect) for t in new_taints}
    new_taints += [t for t in mark.add_taints if (t.key, t.effect) not in present]
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if mark.labels:
        metadata["labels"] = dict(mark.labels)
    if mark.annotations:
        metadata["annotations"] = dict(mark.annotations)
    body: dict[str, Any] = {"metadata": metadata}
    spec: dict[str, Any] = {}
    if list(new_taints) != list(taints):
        spec["taints"] = [t.to_dict() for t in new_taints] or None
    if mark.unschedulable is not None and mark.unschedulable != unschedulable:
        spec["unschedulable"] = mark.unschedulable or None
    if spec:
        body["spec"] = spec
    return body

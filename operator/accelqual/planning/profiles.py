"""Which profile, resource and device count apply to a node (pure).

`profile: auto` reads the card model from node labels (an explicit `accelqual.io/profile`
label first, then the labels device plugins publish, e.g. `nvidia.com/gpu.product`);
when no label names a known card, the probe detects the card itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from accelqual_probes.profiles import BUILTIN, CardProfileSpec, auto_select

from accelqual.constants import LABEL_PROFILE, PRODUCT_LABELS
from accelqual.planning.snapshot import NodeInfo

#: Node labels that state how many cards a node should have (GPU feature discovery and peers).
COUNT_LABELS = ("nvidia.com/gpu.count", "amd.com/gpu.count", "accelqual.io/device-count")


@dataclass(frozen=True)
class NodeProfile:
    name: str  # "auto" when the probe is to detect it
    spec: CardProfileSpec | None
    #: JSON passed to the pod for profiles the probe image does not have built in.
    custom_json: str | None


def known_profiles(custom: Mapping[str, CardProfileSpec]) -> dict[str, CardProfileSpec]:
    """Built-in profiles overlaid by the cluster's CardProfile objects (a custom one may override)."""
    return {**BUILTIN, **custom}


def profile_for(spec_profile: str, node: NodeInfo, custom: Mapping[str, CardProfileSpec]) -> NodeProfile:
    profiles = known_profiles(custom)
    name: str | None = spec_profile if spec_profile != "auto" else None
    if name is None:
        pinned = node.labels.get(LABEL_PROFILE)
        if pinned in profiles:
            name = pinned
    if name is None:
        for label in PRODUCT_LABELS[1:]:
            value = node.labels.get(label)
            if value:
                name = auto_select(value.replace("-", " "), profiles)
                if name:
                    break
    if name is None or name not in profiles:
        return NodeProfile("auto", None, None)
    spec = profiles[name]
    custom_json = None
    if name in custom:
        custom_json = json.dumps({"name": name, "spec": spec.model_dump(mode="json", by_alias=True,
                                                                          exclude_none=True)},
                                 separators=(",", ":"), sort_keys=True)
    return NodeProfile(name, spec, custom_json)


def resource_count(node: NodeInfo, resource: str | None) -> int:
    if not resource:
        return 0
    raw = node.allocatable.get(resource, "0")
    try:
        return max(int(raw), 0)
    except ValueError:
        return 0


def expected_devices(node: NodeInfo, resource: str | None) -> int | None:
    """How many cards the node should have: a count label if published, else what it advertises."""
    for label in COUNT_LABELS:
        raw = node.labels.get(label)
        if raw is not None and raw.isdigit():
            return int(raw)
    count = resource_count(node, resource)
    return count if count > 0 else None

"""Small builders shared by the end-to-end tests."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

from accelqual.constants import LABEL_PROFILE
from accelqual.sim.kubelet import SimNode

POOL = {"accelqual.io/pool": "e2e"}
RESOURCE = "accelqual.io/sim-accelerator"


def sim_nodes(count: int, *, prefix: str = "node", labels: dict[str, str] | None = None,
              faults: dict[int, list[str]] | None = None, behaviours: dict[int, str] | None = None,
              taints: list[dict[str, str]] | None = None) -> list[SimNode]:
    nodes = []
    for i in range(count):
        env = {"ACCELQUAL_SIM_BEHAVIOUR": behaviours[i]} if behaviours and i in behaviours else {}
        nodes.append(SimNode(
            name=f"{prefix}-{i}",
            labels={**POOL, LABEL_PROFILE: "cpu-reference", **(labels or {})},
            allocatable={"cpu": "8", "memory": "32Gi", "pods": "110", RESOURCE: "1"},
            faults=list((faults or {}).get(i, [])),
            env=env,
            taints=list(taints or []),
        ))
    return nodes


def qualification(name: str = "e2e", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "nodeSelector": {"matchLabels": dict(POOL)},
        "suite": "quick",
        "maxConcurrent": "100%",
        "failureBudget": "50%",
        "fleetRelative": {"enabled": False},
        "probe": {"resourceName": RESOURCE, "timeoutSeconds": 60},
    }
    body.update(spec)
    return {"apiVersion": "accelqual.io/v1alpha1", "kind": "Qualification", "metadata": {"name": name},
            "spec": body}


def labels(node: dict[str, Any]) -> dict[str, str]:
    return dict((node.get("metadata") or {}).get("labels") or {})


def taint_keys(node: dict[str, Any]) -> list[str]:
    return [t["key"] for t in (node.get("spec") or {}).get("taints") or []]


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind)


def wait_until(what: str, predicate: Callable[[], Any], timeout: float = 60.0, poll: float = 0.05) -> Any:
    """The first truthy value of `predicate()`; `TimeoutError` naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(poll)


def sha256(body: bytes) -> str:
    """The hex SHA-256 the operator records for an evidence object, computed here independently."""
    return hashlib.sha256(body).hexdigest()

"""Kubernetes JSON objects -> the snapshot's plain values (pure; shared by the handlers and the simulator)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from accelqual.constants import (
    ANN_QUALIFICATION,
    GROUP,
    LABEL_APP_MANAGED_BY,
    LABEL_POD_NODE,
    LABEL_POD_RUN,
    MANAGER,
)
from accelqual.planning.snapshot import NodeInfo, PodPhase, ProbePodInfo, Taint


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    # Timestamps have a resolution of a second, so the pods of a run share a few hundred of them.
    found = _TIMES.get(value)
    if found is None:
        try:
            found = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if len(_TIMES) >= _TIMES_MAX:
            _TIMES.clear()
        _TIMES[value] = found
    return found


_TIMES: dict[str, datetime] = {}
_TIMES_MAX = 4096


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def node_info(obj: Mapping[str, Any]) -> NodeInfo:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    taints = tuple(
        Taint(str(t.get("key", "")), str(t.get("value", "") or ""), str(t.get("effect", "")))
        for t in (spec.get("taints") or []) if isinstance(t, Mapping)
    )
    ready = True
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            ready = cond.get("status") == "True"
    annotations = {k: v for k, v in _str_map(meta.get("annotations")).items() if k.startswith(f"{GROUP}/")}
    return NodeInfo(
        name=str(meta.get("name", "")),
        labels=_str_map(meta.get("labels")),
        annotations=annotations,
        taints=taints,
        unschedulable=bool(spec.get("unschedulable", False)),
        allocatable=_str_map(status.get("allocatable")),
        ready=ready,
        resource_version=str(meta.get("resourceVersion", "")),
        uid=str(meta.get("uid", "")),
        created_at=parse_time(meta.get("creationTimestamp")),
    )


def is_probe_pod(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return isinstance(labels, Mapping) and labels.get(LABEL_APP_MANAGED_BY) == MANAGER


def pod_qualification(obj: Mapping[str, Any]) -> str | None:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANN_QUALIFICATION) if isinstance(annotations, Mapping) else None
    return str(value) if value else None


_PHASES = {p.value: p for p in PodPhase}


def probe_pod_info(obj: Mapping[str, Any]) -> tuple[ProbePodInfo, str | None]:
    """Our probe pod and its container's termination message (None if not terminated)."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    # Two labels and one annotation are read, on every state change of every probe pod: looked up, not copied.
    labels = meta.get("labels")
    labels = labels if isinstance(labels, Mapping) else {}
    annotations = meta.get("annotations")
    annotations = annotations if isinstance(annotations, Mapping) else {}
    phase = _PHASES.get(str(status.get("phase") or "Pending"), PodPhase.UNKNOWN)
    reason = str(status.get("reason") or "")
    exit_code: int | None = None
    message: str | None = None
    started = parse_time(status.get("startTime"))
    for cs in status.get("containerStatuses") or []:
        if not isinstance(cs, Mapping) or cs.get("name") != "probe":
            continue
        terminated = (cs.get("state") or {}).get("terminated")
        if isinstance(terminated, Mapping):
            code = terminated.get("exitCode")
            exit_code = code if isinstance(code, int) else None
            message = str(terminated.get("message") or "")
            if not reason and terminated.get("reason") in ("OOMKilled",):
                reason = str(terminated["reason"])
        running = (cs.get("state") or {}).get("running")
        if isinstance(running, Mapping) and running.get("startedAt"):
            started = parse_time(running.get("startedAt")) or started
    info = ProbePodInfo(
        name=str(meta.get("name", "")),
        node=str(annotations.get(LABEL_POD_NODE) or spec.get("nodeName") or labels.get(LABEL_POD_NODE) or ""),
        run_id=str(labels.get(LABEL_POD_RUN) or ""),
        phase=phase,
        uid=str(meta.get("uid", "")),
        deleting=bool(meta.get("deletionTimestamp")),
        reason=reason,
        exit_code=exit_code,
        created_at=parse_time(meta.get("creationTimestamp")),
        started_at=started,
    )
    return info, message


def requested_extended_resources(obj: Mapping[str, Any]) -> frozenset[str]:
    """Extended resources (names with a '/') requested by a pod's containers."""
    spec = obj.get("spec") or {}
    found: set[str] = set()
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if not isinstance(container, Mapping):
            continue
        resources = container.get("resources") or {}
        for section in ("requests", "limits"):
            for name, qty in (resources.get(section) or {}).items():
                if "/" in str(name) and str(qty) not in ("0", ""):
                    found.add(str(name))
    return frozenset(found)


def busy_pod(obj: Mapping[str, Any]) -> tuple[str, frozenset[str]] | None:
    """(node, resources) for a bound, unfinished non-probe pod holding extended resources."""
    if is_probe_pod(obj):
        return None
    node = (obj.get("spec") or {}).get("nodeName")
    phase = (obj.get("status") or {}).get("phase")
    if not node or phase in ("Succeeded", "Failed"):
        return None
    resources = requested_extended_resources(obj)
    return (str(node), resources) if resources else None

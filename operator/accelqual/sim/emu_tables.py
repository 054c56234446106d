"""Server-side `Table` rendering for `kubectl get` against the emulated API server.

kubectl asks for `Accept: application/json;as=Table;v=v1;g=meta.k8s.io, ...` and prints the
rows the server computed. Columns: the resource's printer columns when it has them (custom
resources: their CRD's `additionalPrinterColumns`), a few built-in layouts (nodes, pods),
and Name/Age otherwise. JSONPath support covers what printer columns use in practice:
dotted fields, `[N]` indexes and `[?(@.field=="value")]` filters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from accelqual.sim.emu_patch import JsonObj
from accelqual.sim.emu_resources import ResourceSpec

_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
        "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}
_NAME = {"name": "Name", "type": "string", "format": "name",
         "description": "Name must be unique within a namespace."}
_TOKEN = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def wants_table(accept: str | None) -> bool:
    """Whether the client asked for a meta.k8s.io/v1 Table (kubectl get does)."""
    if not accept:
        return False
    for option in accept.split(","):
        params = {p.strip().split("=", 1)[0]: p.strip().split("=", 1)[-1] for p in option.split(";")[1:]}
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") == "v1":
            return True
    return False


def jsonpath(obj: Any, path: str) -> Any:
    """Evaluate a printer-column JSONPath (subset, see the module docstring); None when absent."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    path = path.removeprefix("$")
    node, pos = obj, 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None:
            return None
        pos = m.end()
        field, index, filter_field, filter_value = m.groups()
        if field is not None:
            node = node.get(field) if isinstance(node, Mapping) else None
        elif index is not None:
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
        else:
            matches = [item for item in node or [] if isinstance(item, Mapping)
                       and str(jsonpath(item, "." + filter_field)) == filter_value] if isinstance(node, list) else []
            node = matches[0] if matches else None
        if node is None:
            return None
    return node


def human_age(timestamp: str | None, now: datetime | None = None) -> str:
    """Kubernetes' short age format: 45s, 12m, 5h, 3d."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<invalid>"
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _node_status(node: JsonObj) -> str:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"
    if (node.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    return status


def _pod_cells(pod: JsonObj) -> list[Any]:
    status = pod.get("status") or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Pending"
    for s in statuses:  # a terminated container's reason is what `kubectl get pods` shows
        terminated = (s.get("state") or {}).get("terminated")
        if terminated and terminated.get("reason") and status.get("phase") not in ("Running",):
            reason = terminated["reason"]
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return [f"{ready}/{len(containers)}", reason, restarts]


def _columns(spec: ResourceSpec) -> list[dict[str, Any]]:
    if spec.printer_columns:
        columns: list[dict[str, Any]] = [dict(_NAME)]
        for col in spec.printer_columns:
            columns.append({"name": col["name"], "type": col.get("type", "string"),
                            "format": col.get("format", ""), "description": col.get("description", ""),
                            "priority": int(col.get("priority", 0)), "jsonPath": col.get("jsonPath", "")})
        return columns
    if spec.key == "/v1/nodes":
        return [dict(_NAME), {"name": "Status", "type": "string", "description": "The node's readiness."},
                dict(_AGE)]
    if spec.key == "/v1/pods":
        return [dict(_NAME), {"name": "Ready", "type": "string"}, {"name": "Status", "type": "string"},
                {"name": "Restarts", "type": "integer"}, dict(_AGE)]
    return [dict(_NAME), dict(_AGE)]


def _cells(spec: ResourceSpec, columns: Sequence[Mapping[str, Any]], obj: JsonObj, now: datetime) -> list[Any]:
    if spec.printer_columns:
        cells: list[Any] = [obj["metadata"]["name"]]
        for col in columns[1:]:
            value = jsonpath(obj, col["jsonPath"])
            if col["type"] == "date":
                value = human_age(value, now) if value else "<none>"
            cells.append("<none>" if value is None else value)
        return cells
    age = human_age(obj["metadata"].get("creationTimestamp"), now)
    if spec.key == "/v1/nodes":
        return [obj["metadata"]["name"], _node_status(obj), age]
    if spec.key == "/v1/pods":
        return [obj["metadata"]["name"], *_pod_cells(obj), age]
    return [obj["metadata"]["name"], age]


def render_table(spec: ResourceSpec, objects: Sequence[JsonObj], list_meta: Mapping[str, Any],
                 include_object: str = "Metadata") -> JsonObj:
    """A meta.k8s.io/v1 Table of `objects`, with PartialObjectMetadata per row unless told otherwise."""
    now = datetime.now(UTC)
    columns = _columns(spec)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": _cells(spec, columns, obj, now)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    definitions = [{"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                    "description": c.get("description", ""), "priority": int(c.get("priority", 0))}
                   for c in columns]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": dict(list_meta),
            "columnDefinitions": definitions, "rows": rows}

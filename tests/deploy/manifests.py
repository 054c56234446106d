"""Rendering the chart and validating Kubernetes manifests, for the deployment tests.

Built-in kinds are validated by kubernetes-validate in strict mode (unknown fields fail) for
the Kubernetes version our kubectl speaks. Custom resources are validated with jsonschema
against the `openAPIV3Schema` of their CRD (ours and kopf's peering CRD from the chart's
crds/), made strict the way `kubectl apply --validate=strict` is: an object schema that lists
its properties admits no others. prometheus-operator's kinds are checked against the subset
of their schema this chart writes (MONITORING_SCHEMAS, written here, not copied).
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from accelqual.sim.emu_schema import to_jsonschema

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "accelqual"
EXAMPLES = ROOT / "examples"
KUBERNETES_VERSION = "1.33.0"
RELEASE = "accelqual"
NAMESPACE = "accelqual-system"

Doc = dict[str, Any]

_DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_RULE = {
    "type": "object", "additionalProperties": False, "required": ["expr"],
    "properties": {"alert": {"type": "string"}, "record": {"type": "string"},
                   "expr": {"type": ["string", "integer"]}, "for": _DURATION, "keep_firing_for": _DURATION,
                   "labels": _STRING_MAP, "annotations": _STRING_MAP},
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
}
_META = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
MONITORING_SCHEMAS: dict[str, Doc] = {
    "ServiceMonitor": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
            "metadata": _META,
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {"type": "object", "additionalProperties": False,
                                 "properties": {"matchLabels": _STRING_MAP}},
                    "namespaceSelector": {"type": "object", "additionalProperties": False,
                                          "properties": {"matchNames": {"type": "array",
                                                                        "items": {"type": "string"}}}},
                    "endpoints": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False, "required": ["port"],
                        "properties": {"port": {"type": "string"}, "path": {"type": "string"},
                                       "interval": _DURATION, "scrapeTimeout": _DURATION}}},
                },
            },
        },
    },
    "PrometheusRule": {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
            "metadata": _META,
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["groups"],
                "properties": {"groups": {"type": "array", "items": {
                    "type": "object", "additionalProperties": False, "required": ["name", "rules"],
                    "properties": {"name": {"type": "string"}, "interval": _DURATION,
                                   "query_offset": _DURATION, "limit": {"type": "integer"},
                                   "rules": {"type": "array", "items": _RULE}}}}},
            },
        },
    },
}


def helm_template(helm: Path, *values: Path, set_values: Sequence[str] = (), namespace: str = NAMESPACE) -> list[Doc]:
    """`helm template` of the chart with these values files and --set items, as a list of objects."""
    return [dict(d) for d in _render(str(helm), tuple(str(v) for v in values), tuple(set_values), namespace)]


@functools.lru_cache(maxsize=32)
def _render(helm: str, values: tuple[str, ...], set_values: tuple[str, ...], namespace: str) -> tuple[Doc, ...]:
    args = [helm, "template", RELEASE, str(CHART), "--namespace", namespace, "--kube-version", KUBERNETES_VERSION]
    for path in values:
        args += ["--values", path]
    for item in set_values:
        args += ["--set", item]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RenderError(done.stderr.strip())
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


class RenderError(Exception):
    """`helm template` refused the values (schema, `fail`)."""


def load_yaml_documents(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _closed(node: Any) -> Any:
    """The schema with every object that lists its properties closed to others (unless it preserves them)."""
    if isinstance(node, list):
        return [_closed(n) for n in node]
    if not isinstance(node, Mapping):
        return node
    out = {k: _closed(v) for k, v in node.items()}
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _strict(openapi: Mapping[str, Any]) -> Any:
    """A CRD's OpenAPI v3 schema as strict JSON Schema (the emulator's translation, then closed objects)."""
    return to_jsonschema(_closed(openapi))


def crd_documents() -> list[Doc]:
    """Every CRD the chart installs (helm/accelqual/crds/)."""
    return [doc for path in sorted((CHART / "crds").glob("*.yaml")) for doc in load_yaml_documents(path)]


@functools.lru_cache(maxsize=1)
def _crd_validators() -> dict[tuple[str, str], jsonschema.Draft4Validator]:
    validators = {}
    for crd in crd_documents():
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            # The API server accepts these at the root whatever the schema lists.
            for implicit in ("apiVersion", "kind", "metadata"):
                schema.setdefault("properties", {}).setdefault(implicit, {})
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft4Validator(schema)
    return validators


def problems(doc: Mapping[str, Any]) -> list[str]:
    """Why `doc` would not be accepted as written (empty when it validates)."""
    api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
    name = (doc.get("metadata") or {}).get("name")
    if not name:
        return [f"{kind}: metadata.name is missing"]
    crd = _crd_validators().get((api_version, kind))
    if crd is not None:
        return [f"{kind}/{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}" for e in crd.iter_errors(doc)]
    if kind in MONITORING_SCHEMAS:
        validator = jsonschema.Draft7Validator(MONITORING_SCHEMAS[kind])
        return [f"{kind}/{name}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(doc)]
    try:
        kubernetes_validate.validate(dict(doc), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{kind}/{name}: no schema for {api_version} {kind} in Kubernetes {KUBERNETES_VERSION}"]
    except kubernetes_validate.ValidationError as exc:
        return [f"{kind}/{name}: {'.'.join(map(str, exc.absolute_path))}: {exc.message}"]
    return []


def all_problems(docs: Iterable[Mapping[str, Any]]) -> list[str]:
    return [p for d in docs for p in problems(d)]


def by_kind(docs: Iterable[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]

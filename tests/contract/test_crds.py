"""The committed CRDs are exactly what the models generate, and they are structural schemas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from accelqual.crdgen import all_crds, render

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found.extend(_walk(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_walk(value, f"{path}/{i}"))
    return found


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["metadata"]["name"])
def test_committed_crd_matches_the_models(crd: dict[str, Any]) -> None:
    path = CRD_DIR / f"{crd['metadata']['name']}.yaml"
    assert path.exists(), f"{path} is missing: run `make crds`"
    assert path.read_text(encoding="utf-8") == render(crd), (
        f"{path} drifted from the models: run `make crds` and commit")


@pytest.mark.parametrize("crd", all_crds(), ids=lambda c: c["metadata"]["name"])
def test_crd_schema_is_structural(crd: dict[str, Any]) -> None:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for where, node in _walk(schema):
        assert "$ref" not in node, where
        assert "patternProperties" not in node, where
        assert "const" not in node, where
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            if bound in node:  # OpenAPI 3.0: a flag beside minimum/maximum, not a number
                assert isinstance(node[bound], bool), where
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, f"{where}: anyOf only for int-or-string"
        if where.endswith("/properties") or "/anyOf/" in where:
            continue
        looks_like_schema = any(k in node for k in ("type", "properties", "items", "enum"))
        if looks_like_schema and "x-kubernetes-int-or-string" not in node:
            assert "type" in node, f"{where}: every schema node needs a type in a structural schema"
    # Jsonschema itself accepts the schema (draft 4 semantics, like the API server's validator).
    jsonschema.Draft4Validator.check_schema(_openapi_to_jsonschema(schema))


def _openapi_to_jsonschema(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if isinstance(node, list):
        return [_openapi_to_jsonschema(v) for v in node]
    return node


def crd_validator(kind: str) -> jsonschema.Draft4Validator:
    crd = next(c for c in all_crds() if c["spec"]["names"]["kind"] == kind)
    schema = _openapi_to_jsonschema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    return jsonschema.Draft4Validator(schema)


def test_qualification_crd_accepts_the_first_example() -> None:
    doc = yaml.safe_load((ROOT / "examples" / "qualification.yaml").read_text())
    errors = list(crd_validator("Qualification").iter_errors(doc))
    assert errors == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"maxConcurrent": -1}, "maxConcurrent"),
        ({"maxConcurrent": "ten"}, "maxConcurrent"),
        ({"suite": "everything"}, "suite"),
        ({"trigger": "Sometimes"}, "trigger"),
        ({"nodeSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}, "operator"),
        ({"onFailure": {"taint": {"key": "bad key!", "effect": "NoSchedule"}}}, "key"),
        ({"probe": {"timeoutSeconds": 5}}, "timeoutSeconds"),
    ],
)
def test_qualification_crd_rejects_what_kubernetes_would(change: dict[str, Any], where: str) -> None:
    spec: dict[str, Any] = {"nodeSelector": {"matchLabels": {"pool": "a"}}}
    spec.update(change)
    doc = {"apiVersion": "accelqual.io/v1alpha1", "kind": "Qualification", "metadata": {"name": "q"}, "spec": spec}
    errors = list(crd_validator("Qualification").iter_errors(doc))
    assert errors, f"{change} was accepted"
    assert any(where in "/".join(str(p) for p in e.absolute_path) or where in e.message for e in errors)


def test_qualification_crd_requires_a_node_selector() -> None:
    doc = {"apiVersion": "accelqual.io/v1alpha1", "kind": "Qualification", "metadata": {"name": "q"}, "spec": {}}
    assert list(crd_validator("Qualification").iter_errors(doc))


def test_printer_columns_show_phase_passed_failed_total_and_age() -> None:
    crd = next(c for c in all_crds() if c["spec"]["names"]["kind"] == "Qualification")
    names = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    for column in ("Phase", "Passed", "Failed", "Total", "Age"):
        assert column in names
    assert crd["spec"]["names"]["shortNames"] == ["aq"]
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}

"""Validation of custom resources against their CRD's `openAPIV3Schema`, as the API server does.

A real API server refuses a `Qualification` whose `maxConcurrent` is -1 or whose `suite` is
not an enum value with 422 Invalid before any controller sees it; without this the
emulator would let such objects reach the operator and tests would exercise a path a
real cluster never takes. jsonschema (draft 4, the dialect OpenAPI v3.0 schemas are based
on) does the work; the Kubernetes extensions are mapped to their meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jsonschema

from accelqual.sim import emu_errors as errors
from accelqual.sim.emu_patch import JsonObj


def to_jsonschema(node: Any) -> Any:
    """An OpenAPI v3 structural schema as plain JSON Schema (extensions translated or dropped)."""
    if isinstance(node, list):
        return [to_jsonschema(n) for n in node]
    if not isinstance(node, Mapping):
        return node
    out = {k: to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-") and k != "nullable"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> jsonschema.Draft4Validator:
    import json

    return jsonschema.Draft4Validator(to_jsonschema(json.loads(schema_json)))


def validate(kind: str, group: str, plural: str, schema_json: str, obj: JsonObj) -> None:
    """Raise 422 Invalid naming every offending field, like the API server's message."""
    validator = _validator(schema_json)
    problems = sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    if not problems:
        return
    name = str((obj.get("metadata") or {}).get("name", ""))
    details = []
    causes = []
    for problem in problems[:10]:
        path = ".".join(str(p) for p in problem.absolute_path) or "<root>"
        details.append(f"{path}: Invalid value: {problem.message}")
        causes.append({"reason": "FieldValueInvalid", "message": f"Invalid value: {problem.message}", "field": path})
    raise errors.invalid(plural, group, name, f'{kind}.{group} "{name}" is invalid: ' + "; ".join(details),
                         kind=kind, causes=causes)

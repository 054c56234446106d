"""Patch semantics of the emulated API server: JSON merge patch, strategic merge patch, JSON patch.

- `merge_patch`: RFC 7386 (a `null` deletes a key; lists are replaced whole).
- `strategic_merge_patch`: Kubernetes' strategic merge for built-in kinds. Lists of maps that
  the real types declare with `patchStrategy: merge` are merged item by item on their merge key
  (`spec.taints` on `key`, `spec.containers` on `name`, `status.conditions` on `type`, ...);
  `$patch: delete` / `$patch: replace` directives and `$deleteFromPrimitiveList/<field>` work;
  `metadata.finalizers` merges as a set. Everything else behaves like a merge patch.
- `json_patch`: RFC 6902 (add/remove/replace/move/copy/test). Any failure, including a failed
  `test`, is a 422 `Invalid`, as the real server answers; kopf relies on exactly that code to
  retry its `test /metadata/resourceVersion` finalizer patches on the next cycle.

All functions are pure: they return a new document and never modify their inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from accelqual.sim.emu_errors import ApiError

JsonObj = dict[str, Any]
T = TypeVar("T")

# Merge keys of the built-in types' `patchStrategy: merge` lists, by path ('*' = any list item).
MERGE_KEYS: dict[tuple[str, ...], str] = {
    ("spec", "taints"): "key",
    ("spec", "containers"): "name",
    ("spec", "initContainers"): "name",
    ("spec", "ephemeralContainers"): "name",
    ("spec", "volumes"): "name",
    ("spec", "imagePullSecrets"): "name",
    ("spec", "containers", "*", "env"): "name",
    ("spec", "containers", "*", "ports"): "containerPort",
    ("spec", "containers", "*", "volumeMounts"): "mountPath",
    ("spec", "initContainers", "*", "env"): "name",
    ("spec", "initContainers", "*", "volumeMounts"): "mountPath",
    ("status", "conditions"): "type",
    ("status", "containerStatuses"): "name",
    ("status", "initContainerStatuses"): "name",
    ("status", "addresses"): "type",
    ("metadata", "ownerReferences"): "uid",
}
# Lists of scalars that merge as sets instead of being replaced.
PRIMITIVE_SET_LISTS: frozenset[tuple[str, ...]] = frozenset({("metadata", "finalizers")})

_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"
_SET_ELEMENT_ORDER = "$setElementOrder/"


def _clone(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def clone(value: T) -> T:
    """Deep copy of a JSON value (several times faster than `copy.deepcopy` for JSON)."""
    return cast(T, _clone(value))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return clone(patch)
    result: JsonObj = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Kubernetes strategic merge patch for the built-in types (see `MERGE_KEYS`)."""
    if not isinstance(patch, Mapping):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    result: JsonObj = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith(_SET_ELEMENT_ORDER):
            continue  # ordering and retain-keys hints do not change the stored content here
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE):]
            doomed = set(value or [])
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in doomed]
            continue
        child_path = (*path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and child_path in MERGE_KEYS:
            result[key] = _merge_keyed_list(result.get(key), value, MERGE_KEYS[child_path], child_path)
        elif isinstance(value, list) and child_path in PRIMITIVE_SET_LISTS:
            current = list(result.get(key) or [])
            result[key] = current + [item for item in value if item not in current]
        elif isinstance(value, Mapping):
            merged = strategic_merge_patch(result.get(key), value, child_path)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = clone(value)
    return result


def _merge_keyed_list(current: Any, patch: list[Any], merge_key: str, path: tuple[str, ...]) -> list[Any]:
    if any(isinstance(item, Mapping) and item.get("$patch") == "replace" for item in patch):
        return [clone(item) for item in patch if not (isinstance(item, Mapping) and "$patch" in item)]
    result: list[Any] = clone(current) if isinstance(current, list) else []
    item_path = (*path, "*")
    for item in patch:
        if not isinstance(item, Mapping) or merge_key not in item:
            raise ApiError(422, f"map in list {'.'.join(path)} has no merge key {merge_key!r}: {item!r}")
        index = next((i for i, old in enumerate(result)
                      if isinstance(old, Mapping) and old.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append({k: clone(v) for k, v in item.items() if k != "$patch"})
        else:
            result[index] = strategic_merge_patch(result[index], item, item_path)
    return result


# --- RFC 6902 JSON patch -------------------------------------------------------------------------

def _invalid(message: str) -> ApiError:
    return ApiError(422, message)


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise ApiError(400, f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise _invalid(f"invalid array index {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise _invalid(f"array index {index} out of bounds")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise _invalid(f"path /{'/'.join(tokens)} does not exist: missing {token!r}")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, allow_end=False)]
        else:
            raise _invalid(f"path /{'/'.join(tokens)} does not exist")
    return node


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _invalid(f"path /{'/'.join(tokens)} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise _invalid(f"path /{'/'.join(tokens)} does not exist")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise _invalid(f"cannot add at /{'/'.join(tokens)}: parent is not a container")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise _invalid("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _invalid(f"unable to remove nonexistent key: /{'/'.join(tokens)}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, allow_end=False))
    raise _invalid(f"cannot remove /{'/'.join(tokens)}")


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; raises `ApiError` 422 on any failed operation (the whole patch fails)."""
    if not isinstance(operations, list):
        raise ApiError(400, "a JSON patch must be a JSON array of operations")
    doc = clone(target)
    for op in operations:
        if not isinstance(op, Mapping) or "op" not in op or "path" not in op:
            raise ApiError(400, f"invalid JSON patch operation: {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind in ("add", "replace", "test") and "value" not in op:
            raise ApiError(400, f"JSON patch operation {kind!r} needs a value: {op!r}")
        if kind == "add":
            doc = _add(doc, tokens, clone(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, tokens)
        elif kind == "replace":
            _get(doc, tokens)  # must exist
            doc, _ = _remove(doc, tokens) if tokens else (doc, None)
            doc = _add(doc, tokens, clone(op["value"]))
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from"))
            if kind == "move" and tokens[:len(source)] == source and tokens != source:
                raise _invalid(f"cannot move {op.get('from')} into its own child {op['path']}")
            value = clone(_get(doc, source))
            if kind == "move":
                doc, _ = _remove(doc, source)
            doc = _add(doc, tokens, value)
        elif kind == "test":
            actual = _get(doc, tokens)
            if actual != op["value"]:
                raise _invalid(f"testing value {op['path']} failed: expected {op['value']!r}, found {actual!r}")
        else:
            raise ApiError(400, f"unknown JSON patch operation {kind!r}")
    return doc

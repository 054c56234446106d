"""The object store of the emulated API server: objects, resourceVersions, watch history, GC.

What a real API server's registry and etcd do, in memory:

- one global, increasing `resourceVersion`, bumped by every write that changes something
  (a no-op write changes nothing and emits no event, as on a real server);
- server-managed metadata: `uid`, `creationTimestamp`, `generation` (bumped when anything
  outside `metadata` and `status` changes), `generateName`, `deletionTimestamp`;
- the status subresource split: main-resource writes keep the stored `.status`, `/status`
  writes change only `.status`;
- optimistic concurrency: a write whose object carries a different `resourceVersion` is a 409;
- deletion with finalizers (`deletionTimestamp` first, removal when the finalizers are gone)
  and background garbage collection along `ownerReferences`;
- a bounded per-resource event history for watch resumption (`410 Gone` when compacted away)
  and the fan-out of every change to the open watches.

Stored objects are immutable snapshots: a write builds a new document and never modifies
the old one, so the history and in-flight responses can share them without copying.
All methods are synchronous and must run on the emulator's event loop (`ClusterEmulator`
marshals calls from other threads), which makes every read-modify-write atomic.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import uuid
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from accelqual.sim import emu_errors as errors
from accelqual.sim import emu_schema as schema
from accelqual.sim.emu_errors import ApiError
from accelqual.sim.emu_patch import JsonObj, clone
from accelqual.sim.emu_resources import ResourceSpec

#: Metadata fields only the server sets; client-supplied values are ignored on every write.
SYSTEM_METADATA = ("uid", "creationTimestamp", "generation", "resourceVersion", "deletionTimestamp",
                   "deletionGracePeriodSeconds", "name", "namespace")
# apimachinery's rand.String alphabet: no vowels (no accidental words), no confusable 0/1/3.
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

ObjectKey = tuple[str, str]  # (namespace or '', name)
#: The largest stored object: etcd's default request limit (--max-request-bytes, 1.5 MiB).
MAX_OBJECT_BYTES = 1_572_864


def now_rfc3339(clock: Callable[[], datetime] | None = None) -> str:
    return (clock() if clock is not None else datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def encode(obj: JsonObj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@dataclass(slots=True)
class WatchEvent:
    """One change: the object after it (for DELETED: the last state) and the one before it."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    obj: JsonObj
    old: JsonObj | None
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    def encoded_object(self) -> bytes:
        """`obj` as JSON, serialized once however many watches stream it."""
        if self._encoded is None:
            self._encoded = encode(self.obj)
        return self._encoded


class Watcher:
    """The queue between the store and one open watch stream.

    Bounded: a consumer that falls `limit` events behind is cut off (its stream ends and the
    client resumes from its last resourceVersion, or relists on 410), as a real server
    drops slow watchers instead of buffering without end.
    """

    def __init__(self, limit: int) -> None:
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self.limit = limit
        self.closed = False

    def offer(self, event: WatchEvent) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= self.limit:
            self.close()
            return
        self.queue.put_nowait(event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)  # wakes the stream; None means "end of stream"


def _validate_name(spec: ResourceSpec, name: str) -> None:
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise errors.invalid(spec.plural, spec.group, name,
                             f'{spec.kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": a lowercase '
                             f"RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                             f"and must start and end with an alphanumeric character")


def _validate_labels(spec: ResourceSpec, name: str, labels: Any) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        raise errors.invalid(spec.plural, spec.group, name, "metadata.labels: must be a map of strings")
    for key, value in labels.items():
        prefix, _, label_name = key.rpartition("/")
        key_ok = (len(label_name) <= 63 and _LABEL_NAME.fullmatch(label_name) is not None
                  and (not prefix or (len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix) is not None)))
        value_ok = isinstance(value, str) and len(value) <= 63 and (value == "" or _LABEL_NAME.fullmatch(value))
        if not key_ok or not value_ok:
            raise errors.invalid(spec.plural, spec.group, name,
                                 f'{spec.kind} "{name}" is invalid: metadata.labels: Invalid value: '
                                 f'"{key}={value}": label keys and values must be at most 63 characters of '
                                 f"alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric")


def _owner_uids(obj: JsonObj | None) -> set[str]:
    if obj is None:
        return set()
    refs = obj["metadata"].get("ownerReferences") or []
    return {ref["uid"] for ref in refs if isinstance(ref, dict) and ref.get("uid")}


def _spec_part(obj: JsonObj) -> JsonObj:
    """What `generation` tracks: everything but metadata and status (and the type fields)."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class ObjectStore:
    """All objects of all resources, with the history and watches described in the module docstring."""

    def __init__(self, history_limit: int = 10_000, watch_queue_limit: int = 10_000,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.history_limit = history_limit
        #: The server's time for creation/deletion timestamps (a simulated clock in rehearsals).
        self.clock = clock
        self.watch_queue_limit = watch_queue_limit
        self._rv = 0
        self._specs: dict[str, ResourceSpec] = {}
        self._objects: dict[str, dict[ObjectKey, JsonObj]] = {}
        # Keys in (namespace, name) order, so that a page or a namespace is found by bisection.
        self._order: dict[str, list[ObjectKey]] = {}
        # The stored objects serialized (a snapshot never changes), so that a LIST joins bytes.
        self._encoded: dict[str, dict[ObjectKey, bytes]] = {}
        self._history: dict[str, deque[WatchEvent]] = {}
        self._compacted: dict[str, int] = {}
        self._watchers: dict[str, set[Watcher]] = {}
        self._by_uid: dict[str, tuple[str, ObjectKey]] = {}
        self._dependents: dict[str, set[tuple[str, ObjectKey]]] = {}
        self._logs: dict[ObjectKey, str] = {}

    # --- resources and reads -------------------------------------------------------------------

    def add_resource(self, spec: ResourceSpec) -> None:
        self._specs[spec.key] = spec
        self._objects.setdefault(spec.key, {})
        self._order.setdefault(spec.key, [])
        self._encoded.setdefault(spec.key, {})
        self._history.setdefault(spec.key, deque(maxlen=self.history_limit))
        self._compacted.setdefault(spec.key, 0)
        self._watchers.setdefault(spec.key, set())

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, spec: ResourceSpec, namespace: str | None, name: str) -> JsonObj:
        """The stored snapshot (do not modify it); 404 `ApiError` when absent."""
        obj = self._objects[spec.key].get((namespace or "", name))
        if obj is None:
            raise errors.not_found(spec.plural, spec.group, name)
        return obj

    def items(self, spec: ResourceSpec, namespace: str | None = None,
              after: ObjectKey | None = None) -> Iterator[tuple[ObjectKey, JsonObj]]:
        """The stored snapshots in (namespace, name) order: all, one namespace's, or those after a key.

        A live view: consume it without awaiting in between (or take a `list()` of it).
        """
        keys, objects = self._order[spec.key], self._objects[spec.key]
        start = bisect_left(keys, (namespace, "")) if namespace is not None else 0
        if after is not None:
            start = max(start, bisect_right(keys, after))
        for index in range(start, len(keys)):
            key = keys[index]
            if namespace is not None and key[0] != namespace:
                return
            yield key, objects[key]

    def encoded(self, spec: ResourceSpec, key: ObjectKey) -> bytes:
        """The JSON of a stored object, serialized once when it was written."""
        return self._encoded[spec.key][key]

    # --- writes --------------------------------------------------------------------------------

    def create(self, spec: ResourceSpec, namespace: str | None, body: Any) -> JsonObj:
        if not isinstance(body, dict):
            raise errors.bad_request(f"the body of a {spec.kind} must be a JSON object")
        for attr, expected in (("apiVersion", spec.api_version), ("kind", spec.kind)):
            if body.get(attr) not in (None, "", expected):
                raise errors.bad_request(f"the {attr} in the data ({body[attr]}) does not match the expected "
                                         f"{attr} ({expected})")
        obj = clone(body)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
        namespace = self._namespace_for(spec, namespace, meta)
        name = meta.get("name")
        if not name:
            prefix = meta.get("generateName")
            if not prefix:
                raise errors.invalid(spec.plural, spec.group, None,
                                     f"{spec.kind} is invalid: metadata.name: Required value: "
                                     f"name or generateName is required")
            name = self._generate_name(spec, namespace, prefix)
        if not isinstance(name, str):
            raise errors.invalid(spec.plural, spec.group, None, "metadata.name: must be a string")
        _validate_name(spec, name)
        _validate_labels(spec, name, meta.get("labels"))
        if (namespace, name) in self._objects[spec.key]:
            raise errors.already_exists(spec.plural, spec.group, name)
        meta = {k: v for k, v in meta.items() if k not in SYSTEM_METADATA}
        meta.update(name=name, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(self.clock), generation=1)
        if spec.namespaced:
            meta["namespace"] = namespace
        obj = {"apiVersion": spec.api_version, "kind": spec.kind, **obj, "metadata": meta}
        obj["apiVersion"], obj["kind"] = spec.api_version, spec.kind
        if spec.key == "/v1/pods":
            # The real server resets a new pod's status to Pending; other kinds keep what the
            # client sent (nodes do on a real server too), so harnesses can seed a status.
            obj["status"] = {"phase": "Pending", **(obj.get("status") or {})}
            self._logs.pop((namespace, name), None)
        self._commit(spec, (namespace, name), "ADDED", obj, None)
        return obj

    def modify(self, spec: ResourceSpec, namespace: str | None, name: str,
               mutate: Callable[[JsonObj], Any], *, subresource: str | None = None) -> JsonObj:
        """Apply `mutate(stored) -> candidate` (which must not modify its argument) as one write.

        Enforces the server's rules on the candidate: 409 on a different `resourceVersion`, the
        status subresource split, server-managed metadata, generation, no new finalizers on
        a terminating object, and removal once a terminating object has no finalizers.
        """
        key = (namespace or "", name)
        old = self.get(spec, namespace, name)
        candidate = mutate(old)
        if not isinstance(candidate, dict) or not isinstance(candidate.get("metadata", {}), dict):
            raise errors.invalid(spec.plural, spec.group, name, f"{spec.kind} must be an object with metadata")
        wanted_rv = candidate.get("metadata", {}).get("resourceVersion")
        if wanted_rv not in (None, "") and str(wanted_rv) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(spec.plural, spec.group, name)
        if candidate.get("metadata", {}).get("name") not in (None, name):
            raise errors.bad_request(f"the name of the object ({candidate['metadata']['name']}) does not match "
                                     f"the name on the URL ({name})")
        new = self._settle(spec, old, candidate, subresource)
        if new == old:
            return old  # a no-op write: no new resourceVersion, no event
        if _spec_part(new) != _spec_part(old):
            new["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(spec, key, new, propagation="Background")
        else:
            self._commit(spec, key, "MODIFIED", new, old)
        return new

    def delete(self, spec: ResourceSpec, namespace: str | None, name: str, *, propagation: str = "Background",
               precondition_uid: str | None = None, precondition_rv: str | None = None) -> JsonObj:
        """Delete (or, with finalizers, start deleting) an object; returns its last state."""
        key = (namespace or "", name)
        old = self.get(spec, namespace, name)
        meta = old["metadata"]
        if precondition_uid and precondition_uid != meta["uid"]:
            raise ApiError(409, f"Precondition failed: UID in precondition: {precondition_uid}, "
                                f"UID in object meta: {meta['uid']}", reason="Conflict")
        if precondition_rv and precondition_rv != meta["resourceVersion"]:
            raise errors.conflict(spec.plural, spec.group, name)
        if meta.get("deletionTimestamp"):
            return old  # already terminating: waits for its finalizers
        if meta.get("finalizers"):
            new = dict(old)
            new["metadata"] = {**meta, "deletionTimestamp": now_rfc3339(self.clock), "deletionGracePeriodSeconds": 0}
            self._commit(spec, key, "MODIFIED", new, old)
            return new
        return self._remove(spec, key, old, propagation=propagation)

    def set_log(self, namespace: str, name: str, text: str) -> None:
        self.get(self._specs["/v1/pods"], namespace, name)
        self._logs[(namespace, name)] = text

    def get_log(self, namespace: str, name: str) -> str:
        self.get(self._specs["/v1/pods"], namespace, name)
        return self._logs.get((namespace, name), "")

    # --- watches -------------------------------------------------------------------------------

    def open_watch(self, spec: ResourceSpec, since: int | None) -> tuple[list[WatchEvent], Watcher]:
        """The events a new watch starts with, and its queue of live events (atomically, no gap).

        `since=None` (no resourceVersion, or "0") starts with a synthetic ADDED per current
        object; otherwise with the retained events after `since`, or 410 Gone if some of them
        were compacted away (or `since` is newer than anything this store issued).
        """
        if since is None:
            initial = [WatchEvent(int(obj["metadata"]["resourceVersion"]), "ADDED", obj, None,
                                  self.encoded(spec, key)) for key, obj in self.items(spec)]
        else:
            compacted = self._compacted[spec.key]
            if since < compacted:
                raise errors.gone(f"too old resource version: {since} ({compacted})")
            if since > self._rv:
                # A version this store never issued (a client of an earlier emulator instance). A real
                # server waits and answers 504; 410 makes the client relist, which is what it needs.
                raise errors.gone(f"too large resource version: {since}, current: {self._rv}")
            initial = self._events_after(spec, since)
        watcher = Watcher(self.watch_queue_limit)
        self._watchers[spec.key].add(watcher)
        return initial, watcher

    def close_watch(self, spec: ResourceSpec, watcher: Watcher) -> None:
        watcher.close()
        self._watchers[spec.key].discard(watcher)

    def close_all_watches(self) -> None:
        for watchers in self._watchers.values():
            for watcher in list(watchers):
                watcher.close()
            watchers.clear()

    def open_watch_count(self) -> int:
        return sum(len(w) for w in self._watchers.values())

    def _events_after(self, spec: ResourceSpec, since: int) -> list[WatchEvent]:
        newer: list[WatchEvent] = []
        for event in reversed(self._history[spec.key]):
            if event.rv <= since:
                break
            newer.append(event)
        newer.reverse()
        return newer

    # --- internals -----------------------------------------------------------------------------

    def _namespace_for(self, spec: ResourceSpec, namespace: str | None, meta: dict[str, Any]) -> str:
        if not spec.namespaced:
            return ""
        in_body = meta.get("namespace")
        if namespace and in_body and in_body != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on "
                                     "the request")
        namespace = namespace or in_body
        if not namespace:
            raise errors.bad_request(f"{spec.plural} is namespaced: a namespace is required")
        _validate_name(spec, namespace)
        return str(namespace)

    def _generate_name(self, spec: ResourceSpec, namespace: str, prefix: str) -> str:
        for _ in range(100):
            name = prefix + "".join(random.choices(_GENERATE_ALPHABET, k=5))
            if (namespace, name) not in self._objects[spec.key]:
                return name
        raise ApiError(500, f"could not generate a unique name for prefix {prefix!r}")

    def _settle(self, spec: ResourceSpec, old: JsonObj, candidate: JsonObj, subresource: str | None) -> JsonObj:
        if subresource == "status":
            new = dict(old)
            if "status" in candidate:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
            new["metadata"] = dict(old["metadata"])
            return new
        new = {**candidate, "apiVersion": spec.api_version, "kind": spec.kind}
        meta = dict(new.get("metadata") or {})
        for system in SYSTEM_METADATA:
            meta.pop(system, None)
            if system in old["metadata"]:
                meta[system] = old["metadata"][system]
        _validate_labels(spec, old["metadata"]["name"], meta.get("labels"))
        if old["metadata"].get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
            if added:
                raise errors.invalid(spec.plural, spec.group, old["metadata"]["name"],
                                     f"metadata.finalizers: Forbidden: no new finalizers can be added if the "
                                     f"object is being deleted, found new finalizers {sorted(added)!r}")
        new["metadata"] = meta
        if spec.has_status():
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        return new

    def _commit(self, spec: ResourceSpec, key: ObjectKey, event_type: str, obj: JsonObj, old: JsonObj | None) -> None:
        """Store (or remove) `obj` at the next resourceVersion and publish the event."""
        obj["metadata"]["resourceVersion"] = str(self._rv + 1)
        objects, order, encodings = self._objects[spec.key], self._order[spec.key], self._encoded[spec.key]
        encoded = None
        if event_type == "DELETED":
            objects.pop(key, None)
            encodings.pop(key, None)
            del order[bisect_left(order, key)]
            self._by_uid.pop(obj["metadata"]["uid"], None)
            self._index_owners(spec, key, old, None)
        else:
            if spec.schema:
                schema.validate(spec.kind, spec.group, spec.plural, spec.schema, obj)
            encoded = encode(obj)
            if len(encoded) > MAX_OBJECT_BYTES:
                # etcd's request limit: an operator whose status grows with the pool fails here as it
                # would on a real cluster, instead of passing every test.
                raise ApiError(500, f"etcdserver: request is too large ({spec.kind} {key[1]!r} is "
                                    f"{len(encoded)} bytes, the limit is {MAX_OBJECT_BYTES})")
            if key not in objects:
                insort(order, key)
            objects[key], encodings[key] = obj, encoded
            self._by_uid[obj["metadata"]["uid"]] = (spec.key, key)
            self._index_owners(spec, key, old, obj)
        self._rv += 1
        history = self._history[spec.key]
        if len(history) == history.maxlen:
            self._compacted[spec.key] = history[0].rv
        event = WatchEvent(self._rv, event_type, obj, old, encoded)
        history.append(event)
        for watcher in list(self._watchers[spec.key]):
            watcher.offer(event)
            if watcher.closed:
                self._watchers[spec.key].discard(watcher)

    def _index_owners(self, spec: ResourceSpec, key: ObjectKey, old: JsonObj | None, new: JsonObj | None) -> None:
        before, after = _owner_uids(old), _owner_uids(new)
        ref = (spec.key, key)
        for uid in before - after:
            dependents = self._dependents.get(uid)
            if dependents is not None:
                dependents.discard(ref)
                if not dependents:
                    del self._dependents[uid]
        for uid in after - before:
            self._dependents.setdefault(uid, set()).add(ref)

    def _remove(self, spec: ResourceSpec, key: ObjectKey, last: JsonObj, *, propagation: str) -> JsonObj:
        gone = dict(last)
        gone["metadata"] = dict(last["metadata"])
        self._commit(spec, key, "DELETED", gone, self._objects[spec.key].get(key))
        if spec.key == "/v1/pods":
            self._logs.pop(key, None)
        self._collect_dependents(gone["metadata"]["uid"], orphan=propagation == "Orphan")
        return gone

    def _collect_dependents(self, owner_uid: str, *, orphan: bool) -> None:
        """Background GC: delete dependents whose owners are all gone (or orphan them)."""
        for spec_key, key in sorted(self._dependents.pop(owner_uid, set())):
            spec = self._specs[spec_key]
            obj = self._objects[spec_key].get(key)
            if obj is None:
                continue
            if orphan:
                def drop_owner(o: JsonObj) -> JsonObj:
                    refs = [r for r in o["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
                    return {**o, "metadata": {**o["metadata"], "ownerReferences": refs}}
                self.modify(spec, key[0] or None, key[1], drop_owner)
            elif not any(uid in self._by_uid for uid in _owner_uids(obj)):
                self.delete(spec, key[0] or None, key[1])

"""The durable evidence outbox: objects S3 did not take yet, kept in the cluster until it does.

Used by the reconciler (`handlers.reconcile`) for one Qualification. Evidence is first
offered to S3 directly; only what S3 refuses (or what arrives while S3 is known to be
down) is written here, so a healthy S3 costs no extra API writes. Once an object is in
the outbox its probe pod may go: an operator restart, a lost pod or a deleted node loses
nothing, because the outbox is in the cluster, not in the operator's memory.

Layout: ConfigMaps ("segments") in the operator's namespace, labelled with the
Qualification and owned by it (deleting the Qualification deletes its outbox). A
segment holds gzip-compressed objects in `binaryData` under entry names `ID.PART` and
an index in `data["index.json"]`: entry -> S3 key, SHA-256 and size of the whole
object, part number and count, content type, destination (the `report` spec) and the
time it was queued. A segment stays under `SEGMENT_LIMIT` bytes (the API server refuses
ConfigMaps over 1 MiB); an object bigger than that spans several segments, and one that
is incomplete after a crash is dropped on load (its probe pod still holds it, because a
pod is released only after the whole object is written).

Only the operator writes these ConfigMaps. The segments are read once per Qualification
(after a start or when a write failed) and then mirrored in memory; each write carries
the segment's resourceVersion, so a change by anyone else makes the write fail and the
outbox reload instead of overwriting it. All calls are blocking (run them in a thread).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from accelqual.adapters.kube import MERGE_PATCH, KubeClient, KubeError
from accelqual.constants import (
    API_VERSION,
    APP_NAME,
    GROUP,
    LABEL_APP_COMPONENT,
    LABEL_APP_MANAGED_BY,
    LABEL_APP_NAME,
    MANAGER,
)
from accelqual.planning.naming import label_value

log = logging.getLogger("accelqual.outbox")

OUTBOX_COMPONENT = "evidence-outbox"
LABEL_OUTBOX_QUALIFICATION = f"{GROUP}/outbox-for"
INDEX = "index.json"
#: Bytes of index plus compressed objects in one ConfigMap: the API server refuses more than
#: 1 MiB of data, and etcd more than 1.5 MiB per object (binaryData travels base64-encoded).
SEGMENT_LIMIT = 900_000
#: A segment with less room than this is not worth splitting an object into.
MIN_PIECE = 16_384
#: Segments per Qualification (about 28 MiB compressed, thousands of node reports). Beyond that,
#: new evidence waits in its probe pod (which is then kept), not in etcd.
MAX_SEGMENTS = 32


class OutboxFullError(Exception):
    """The outbox has no room left for more evidence; it stays where it is (its probe pod)."""


@dataclass(frozen=True)
class OutboxObject:
    """One object waiting for S3: its key, content and destination (the `report` spec it was made under)."""

    key: str
    body: bytes
    content_type: str
    report: Mapping[str, Any]
    queued_at: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def object_id(self) -> str:
        """Entry names derive from the key: queuing the same key again replaces the object."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:20]


@dataclass
class _Segment:
    name: str
    resource_version: str = ""
    #: entry name -> index record (JSON-able)
    index: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: entry name -> compressed bytes of that part
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(_index_json(self.index)) + sum(len(b) for b in self.blobs.values())

    def room(self) -> int:
        return SEGMENT_LIMIT - self.size


class EvidenceOutbox:
    """The outbox of one Qualification, mirrored in memory after `load()`."""

    def __init__(self, kube: KubeClient, namespace: str, qualification: str, owner_uid: str = "") -> None:
        self.kube = kube
        self.namespace = namespace
        self.qualification = qualification
        self.owner_uid = owner_uid
        self._segments: dict[str, _Segment] = {}
        self._objects: dict[str, OutboxObject] = {}  # by S3 key
        self.loaded = False

    # --- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._objects)

    def objects(self) -> list[OutboxObject]:
        """Waiting objects, oldest first."""
        return sorted(self._objects.values(), key=lambda o: (o.queued_at, o.key))

    @property
    def stored_bytes(self) -> int:
        return sum(sum(len(b) for b in s.blobs.values()) for s in self._segments.values())

    @property
    def oldest(self) -> str | None:
        return min((o.queued_at for o in self._objects.values()), default=None)

    def segment_names(self) -> list[str]:
        return sorted(self._segments)

    def load(self) -> None:
        """Read this Qualification's segments and reassemble the objects in them (verifying each digest)."""
        selector = f"{LABEL_APP_COMPONENT}={OUTBOX_COMPONENT},{LABEL_OUTBOX_QUALIFICATION}=" \
                   f"{label_value(self.qualification)}"
        items = self.kube.list_all(_configmaps(self.namespace), label_selector=selector)
        segments: dict[str, _Segment] = {}
        for item in items:
            meta = item.get("metadata") or {}
            if (meta.get("annotations") or {}).get(LABEL_OUTBOX_QUALIFICATION) != self.qualification:
                continue  # a label value shared by two long names: not ours
            segment = _Segment(name=str(meta.get("name")), resource_version=str(meta.get("resourceVersion") or ""))
            try:
                index = json.loads((item.get("data") or {}).get(INDEX) or "{}")
            except ValueError:
                index = {}
            binary = item.get("binaryData") or {}
            for entry, record in index.items() if isinstance(index, dict) else ():
                if entry in binary and isinstance(record, dict):
                    segment.index[entry] = record
                    segment.blobs[entry] = base64.b64decode(binary[entry])
            segments[segment.name] = segment
        self._segments = segments
        self._objects, garbage = _assemble(segments)
        self.loaded = True
        if garbage:
            log.error("outbox of %s: dropping %d unusable entries (incomplete or corrupt): %s",
                      self.qualification, len(garbage), ", ".join(sorted(garbage)[:5]))
            try:
                self._drop_entries(garbage)
            except KubeError:
                self.loaded = False
                raise
        if self._objects:
            log.info("outbox of %s holds %d objects waiting for S3", self.qualification, len(self._objects))

    # --- writing ------------------------------------------------------------------------

    def add(self, objects: Iterable[OutboxObject]) -> None:
        """Store `objects` durably (replacing any with the same key); `KubeError`/`OutboxFullError` if not stored.

        After a failure the memory no longer mirrors the cluster (`loaded` is False): load again first.
        """
        incoming = list(objects)
        if not incoming:
            return
        try:
            replaced = {o.object_id for o in incoming if o.key in self._objects}
            if replaced:
                self._drop_entries({e for s in self._segments.values() for e, r in s.index.items()
                                    if r.get("id") in replaced})
            added: dict[str, set[str]] = {}
            created: set[str] = set()
            for obj in incoming:
                for segment, entry in self._place(obj, gzip.compress(obj.body, mtime=0), created):
                    added.setdefault(segment.name, set()).add(entry)
            for name in sorted(added):
                self._write(self._segments[name], create=name in created, added=added[name])
        except (KubeError, OutboxFullError):
            self.loaded = False
            raise
        for obj in incoming:
            self._objects[obj.key] = obj

    def remove(self, keys: Iterable[str]) -> None:
        """Forget objects S3 now has (their entries are deleted; empty segments too)."""
        wanted = list(keys)
        ids = {self._objects[k].object_id for k in wanted if k in self._objects}
        entries = {e for s in self._segments.values() for e, r in s.index.items() if r.get("id") in ids}
        for key in wanted:
            self._objects.pop(key, None)
        if entries:
            try:
                self._drop_entries(entries)
            except KubeError:
                self.loaded = False
                raise

    def _place(self, obj: OutboxObject, data: bytes, created: set[str]) -> list[tuple[_Segment, str]]:
        """Put `data` into segments with room (new ones as needed), in parts if it does not fit in one."""
        record = {"id": obj.object_id, "key": obj.key, "sha256": obj.sha256, "size": len(obj.body),
                  "contentType": obj.content_type, "report": dict(obj.report), "queuedAt": obj.queued_at}
        overhead = len(_index_json({f"{obj.object_id}.999": {**record, "part": 999, "parts": 999}}))
        placed: list[tuple[_Segment, str]] = []
        offset = 0
        current = self._segments[max(self._segments)] if self._segments else None
        while offset < len(data):
            remaining = len(data) - offset
            if current is None or current.room() - overhead < min(MIN_PIECE, remaining):
                current = self._new_segment(created)
            take = min(remaining, current.room() - overhead)
            entry = f"{obj.object_id}.{len(placed)}"
            current.index[entry] = {**record, "part": len(placed)}
            current.blobs[entry] = data[offset:offset + take]
            placed.append((current, entry))
            offset += take
        for segment, entry in placed:
            segment.index[entry]["parts"] = len(placed)
        return placed

    def _new_segment(self, created: set[str]) -> _Segment:
        if len(self._segments) >= MAX_SEGMENTS:
            raise OutboxFullError(f"the outbox of {self.qualification} is full ({MAX_SEGMENTS} ConfigMaps)")
        number = 0
        while segment_name(self.qualification, number) in self._segments:
            number += 1
        segment = _Segment(name=segment_name(self.qualification, number))
        self._segments[segment.name] = segment
        created.add(segment.name)
        return segment

    def _drop_entries(self, entries: set[str]) -> None:
        for segment in list(self._segments.values()):
            gone = entries & set(segment.index)
            if not gone:
                continue
            for entry in gone:
                segment.index.pop(entry, None)
                segment.blobs.pop(entry, None)
            if segment.index:
                self._write(segment, removed=gone)
            else:
                self._delete(segment)

    def _write(self, segment: _Segment, *, create: bool = False, added: Iterable[str] = (),
               removed: Iterable[str] = ()) -> None:
        """Create `segment`, or patch its index and the entries `added` and `removed` (not the others)."""
        if create:
            body = self._manifest(segment)
            try:
                result = self.kube.create(_configmaps(self.namespace), body)
            except KubeError as exc:
                if not exc.conflict:
                    raise
                # A segment of that name survived from before (a failed earlier write): take it over.
                current = self.kube.get(_configmaps(self.namespace, segment.name))
                body["metadata"]["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion")
                result = self.kube.request("PUT", _configmaps(self.namespace, segment.name), body=body)
        else:
            binary: dict[str, str | None] = {e: None for e in removed}
            binary.update({e: base64.b64encode(segment.blobs[e]).decode() for e in added})
            patch = {"metadata": {"resourceVersion": segment.resource_version},
                     "data": {INDEX: _index_json(segment.index)}, "binaryData": binary}
            result = self.kube.patch(_configmaps(self.namespace, segment.name), patch, MERGE_PATCH)
        segment.resource_version = str((result.get("metadata") or {}).get("resourceVersion") or "")

    def _delete(self, segment: _Segment) -> None:
        try:
            self.kube.request("DELETE", _configmaps(self.namespace, segment.name), body={
                "kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"resourceVersion": segment.resource_version}})
        except KubeError as exc:
            if not exc.not_found:
                raise
        self._segments.pop(segment.name, None)

    def _manifest(self, segment: _Segment) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": segment.name,
            "namespace": self.namespace,
            "labels": {LABEL_APP_NAME: APP_NAME, LABEL_APP_COMPONENT: OUTBOX_COMPONENT,
                       LABEL_APP_MANAGED_BY: MANAGER, LABEL_OUTBOX_QUALIFICATION: label_value(self.qualification)},
            "annotations": {LABEL_OUTBOX_QUALIFICATION: self.qualification},
        }
        if self.owner_uid:
            meta["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": "Qualification",
                                        "name": self.qualification, "uid": self.owner_uid}]
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                "data": {INDEX: _index_json(segment.index)},
                "binaryData": {e: base64.b64encode(b).decode() for e, b in segment.blobs.items()}}


def segment_name(qualification: str, number: int) -> str:
    """`aq-outbox-<qualification>-<hash>-<n>`: deterministic, a valid ConfigMap name."""
    safe = "".join(c if c.isalnum() or c == "-" else "-" for c in qualification.lower()).strip("-")[:40]
    digest = hashlib.sha256(qualification.encode()).hexdigest()[:8]
    return f"aq-outbox-{safe}-{digest}-{number:03d}"


def _configmaps(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    return f"{base}/{name}" if name else base


def _index_json(index: Mapping[str, Any]) -> str:
    return json.dumps(index, sort_keys=True, separators=(",", ":"))


def _assemble(segments: Mapping[str, _Segment]) -> tuple[dict[str, OutboxObject], set[str]]:
    """Objects whose parts are all present and whose content matches its digest; the other entries."""
    parts: dict[str, dict[int, tuple[str, dict[str, Any], bytes]]] = {}
    for segment in segments.values():
        for entry, record in segment.index.items():
            parts.setdefault(str(record.get("id")), {})[int(record.get("part", 0))] = (
                entry, record, segment.blobs[entry])
    objects: dict[str, OutboxObject] = {}
    garbage: set[str] = set()
    for found in parts.values():
        record = next(iter(found.values()))[1]
        count = int(record.get("parts") or 0)
        entries = {entry for entry, _, _ in found.values()}
        if count < 1 or sorted(found) != list(range(count)):
            garbage |= entries
            continue
        try:
            body = gzip.decompress(b"".join(found[i][2] for i in range(count)))
        except (OSError, EOFError):
            garbage |= entries
            continue
        obj = OutboxObject(key=str(record["key"]), body=body, content_type=str(record.get("contentType") or ""),
                           report=dict(record.get("report") or {}), queued_at=str(record.get("queuedAt") or ""))
        if obj.sha256 != record.get("sha256"):
            garbage |= entries
            continue
        objects[obj.key] = obj
    return objects, garbage

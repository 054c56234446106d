"""Evidence delivery for the reconciler: node reports, run summaries and human reports to S3, via the outbox.

Called by `handlers.reconcile` once per reconcile (`flush`) and when a run completes
(`deliver_summary`). Evidence goes to S3 directly while S3 answers; what S3 refuses,
and whatever arrives while S3 is backing off, goes to the durable outbox
(`handlers.outbox`, ConfigMaps in the cluster). The outbox is drained, oldest first and
run summaries last, when the backoff allows; the backoff is per Qualification (one S3
failing means the next call would fail too) and doubles up to `BACKOFF_MAX` seconds.
Credentials come from the Secret the spec names, else from boto3's default chain
(environment, IRSA web identity, instance profile).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from accelqual.adapters.evidence import EvidenceError, EvidenceStore, S3Credentials
from accelqual.adapters.kube import KubeClient, KubeError
from accelqual.adapters.metrics import Metrics
from accelqual.constants import Reason
from accelqual.handlers.outbox import EvidenceOutbox, OutboxFullError, OutboxObject
from accelqual.handlers.state import DeliveryState, QualificationState
from accelqual.models import QualificationSpec, ReportSpec
from accelqual.planning.actions import PostEvent, UploadSummary
from accelqual.planning.naming import summary_key
from accelqual.reporting.markdown import render_summary_markdown

log = logging.getLogger("accelqual.evidence")

BACKOFF_MAX = 60.0
#: Objects uploaded from the outbox per reconcile (the rest follow on the next ones).
DRAIN_BATCH = 64
HUMAN_REPORT = "report.md"
EVIDENCE_DELIVERED = "EvidenceDelivered"
#: The crash point after each object S3 stored (before the outbox or the caches forget it).
CRASH_EVIDENCE_STORED = "evidence-stored"

EvidenceFactory = Callable[[ReportSpec, S3Credentials | None], EvidenceStore]


@dataclass(frozen=True)
class DeliveredSummary:
    uri: str
    sha256: str
    queued: bool  # in the outbox, not in S3 yet


class EvidenceDelivery:
    """S3 stores per `report` spec, and the outbox and backoff of each Qualification (in its state)."""

    def __init__(self, kube: KubeClient, namespace: str, secret_namespace: str, metrics: Metrics,
                 io: Callable[..., Awaitable[Any]], factory: EvidenceFactory, *,
                 backoff_max: float = BACKOFF_MAX, checkpoint: Callable[[str | None], None] | None = None) -> None:
        self.backoff_max = backoff_max
        #: The reconciler's crash hook: called with a point's name after each object S3 stored,
        #: and with None before each write (it raises once the operator is dead; see `handlers.reconcile`).
        self._checkpoint = checkpoint or _no_checkpoint
        self.kube = kube
        self.namespace = namespace
        self.secret_namespace = secret_namespace
        self.metrics = metrics
        self._io = io
        self._factory = factory
        self._stores: dict[str, asyncio.Future[EvidenceStore]] = {}

    # --- what the reconciler calls -------------------------------------------------------

    async def flush(self, name: str, uid: str, qs: QualificationState, now: datetime) -> list[PostEvent]:
        """Deliver fresh evidence (to S3, else the outbox) and drain the outbox; returns Events to post.

        Each object carries its own destination, so this works whatever the spec says now (even invalid)."""
        d = qs.delivery
        box = await self.outbox(name, uid, qs)
        had_backlog = d.queued_since is not None
        if qs.evidence:
            fresh = list(qs.evidence.items())
            objects = [OutboxObject(p.key, p.body, p.content_type, p.report, _iso(now)) for _, p in fresh]
            refused = await self._upload(d, objects, now) if self._due(d, now) else objects
            refused_keys = {o.key for o in refused}
            for pod, pending in fresh:
                if pending.key not in refused_keys:
                    qs.evidence.pop(pod, None)
            if refused and box is not None:
                try:
                    self._checkpoint(None)
                    await self._io(box.add, refused)
                    for pod, _ in fresh:
                        qs.evidence.pop(pod, None)
                except (KubeError, OutboxFullError) as exc:
                    log.warning("outbox of %s cannot take %d objects (%s); their probe pods are kept",
                                name, len(refused), exc)
                    self.metrics.reconcile_error(name, "outbox")
        if box is not None and len(box) and self._due(d, now):
            await self._drain(name, box, d, now)
        events = self._transitions(name, box, d, had_backlog, now)
        self.metrics.evidence_backlog(name, self.backlog(qs), box.stored_bytes if box is not None else 0)
        return events

    async def deliver_summary(self, name: str, uid: str, qs: QualificationState, spec: QualificationSpec,
                              action: UploadSummary, now: datetime) -> DeliveredSummary:
        """Store the run's human report and summary (in that order): in S3, or durably in the outbox.

        The summary names the human report's key and SHA-256; the status names the summary's.
        When an earlier attempt of this run already stored them (the operator died before
        the status named them), those objects are kept and named: evidence is written once.
        `EvidenceError` only if neither S3 nor the outbox took them (the run then stays Running).
        """
        report = spec.report
        assert report is not None
        document = dict(action.document)
        destination = report.to_json_dict()
        human_key = summary_key(report.prefix, name, action.run_id, HUMAN_REPORT)
        human = OutboxObject(human_key, render_summary_markdown(document).encode(), "text/markdown; charset=utf-8",
                             destination, _iso(now))
        d = qs.delivery
        stored: dict[str, str] = {}
        refused = await self._upload(d, [human], now, adopt=True, stored=stored) if self._due(d, now) else [human]
        document["humanReport"] = {"key": human_key, "uri": f"s3://{report.bucket}/{human_key}",
                                   "sha256": stored.get(human_key, human.sha256), "contentType": "text/markdown"}
        key = summary_key(report.prefix, name, action.run_id)
        summary = OutboxObject(key, json.dumps(document, sort_keys=True, indent=1).encode(), "application/json",
                               destination, _iso(now))
        if refused:
            refused.append(summary)  # the summary goes only after the report it names
        elif self._due(d, now):
            refused = await self._upload(d, [summary], now, adopt=True, stored=stored)
        else:
            refused = [summary]
        if refused:
            box = await self.outbox(name, uid, qs)
            if box is None:
                raise EvidenceError(f"S3 did not take the run summary ({d.last_error}) and the outbox is unreadable")
            try:
                self._checkpoint(None)
                await self._io(box.add, refused)
            except (KubeError, OutboxFullError) as exc:
                raise EvidenceError(f"S3 did not take the run summary ({d.last_error}) and the outbox "
                                    f"could not either: {exc}") from None
            self.metrics.evidence_backlog(name, self.backlog(qs), box.stored_bytes)
        return DeliveredSummary(uri=f"s3://{report.bucket}/{key}", sha256=stored.get(key, summary.sha256),
                                queued=bool(refused))

    def backlog(self, qs: QualificationState) -> int:
        box = qs.delivery.outbox
        return len(qs.evidence) + (len(box) if box is not None else 0)

    def retry_in(self, qs: QualificationState, now: datetime) -> float | None:
        """Seconds until the next upload attempt, if anything waits."""
        if not self.backlog(qs):
            return None
        d = qs.delivery
        return max(0.5, (d.next_try - now).total_seconds()) if d.next_try is not None else 0.5

    async def outbox(self, name: str, uid: str, qs: QualificationState) -> EvidenceOutbox | None:
        """The Qualification's outbox, (re)loaded from the cluster when needed; None if unreadable now."""
        d = qs.delivery
        if d.outbox is None:
            d.outbox = EvidenceOutbox(self.kube, self.namespace, name, uid)
        box = d.outbox
        if uid:
            box.owner_uid = uid
        if not box.loaded:
            try:
                await self._io(box.load)
            except KubeError as exc:
                log.warning("cannot read the evidence outbox of %s: %s", name, exc)
                self.metrics.reconcile_error(name, "outbox")
                return None
            if len(box) and d.queued_since is None:
                d.queued_since = box.oldest
        return box

    # --- S3 -----------------------------------------------------------------------------

    @staticmethod
    def _due(d: DeliveryState, now: datetime) -> bool:
        return d.next_try is None or d.next_try <= now

    async def _upload(self, d: DeliveryState, objects: Sequence[OutboxObject], now: datetime, *,
                      adopt: bool = False, stored: dict[str, str] | None = None) -> list[OutboxObject]:
        """Create `objects` in S3 (concurrently); returns those S3 did not take.

        An object already at a key with other content is replaced (the evidence at hand is what
        the node marks and the status name), unless `adopt`: then it is kept and its digest goes
        to `stored` (a run summary stored by an earlier attempt of the same run)."""
        refused: list[OutboxObject] = []

        async def put(obj: OutboxObject) -> bool:
            try:
                store = await self._store(obj.report)
                self._checkpoint(None)
                digest = await self._io(store.put, obj.key, obj.body, obj.content_type)
                if digest != obj.sha256 and not adopt:
                    log.warning("%s held other content than the evidence at hand; replacing it", store.uri(obj.key))
                    self._checkpoint(None)
                    digest = await self._io(store.replace, obj.key, obj.body, obj.content_type)
            except EvidenceError as exc:
                d.last_error = str(exc)
                # Build the client again next time: the Secret's keys may have been rotated meanwhile.
                self._stores.pop(_store_key(obj.report), None)
                return False
            if stored is not None:
                stored[obj.key] = digest
            self._checkpoint(CRASH_EVIDENCE_STORED)
            return True

        outcomes = await asyncio.gather(*(put(o) for o in objects))
        refused = [o for o, ok in zip(objects, outcomes, strict=True) if not ok]
        self.metrics.evidence_uploaded(True, len(objects) - len(refused))
        if refused:
            self.metrics.evidence_uploaded(False, len(refused))
            d.attempts += 1
            d.next_try = now + timedelta(seconds=min(self.backoff_max, 2.0 ** d.attempts))
            log.warning("S3 did not take %d evidence objects (%s); retry in %.0f s", len(refused), d.last_error,
                        (d.next_try - now).total_seconds())
        else:
            d.attempts = 0
            d.next_try = None
        return refused

    async def _drain(self, name: str, box: EvidenceOutbox, d: DeliveryState, now: datetime) -> None:
        """Upload the oldest waiting objects; summaries only once the rest of the batch is in."""
        batch = box.objects()[:DRAIN_BATCH]
        first = [o for o in batch if not o.key.endswith("/summary.json")]
        last = [o for o in batch if o.key.endswith("/summary.json")]
        done: list[str] = []
        for group in (first, last):
            if not group:
                continue
            refused = {o.key for o in await self._upload(d, group, now)}
            done += [o.key for o in group if o.key not in refused]
            if refused:
                break  # summaries go only after everything before them is in
        if done:
            log.info("outbox of %s: %d objects now in S3, %d still waiting", name, len(done), len(box) - len(done))
            try:
                self._checkpoint(None)
                await self._io(box.remove, done)
            except KubeError as exc:  # they are in S3; the next load finds and re-uploads them (idempotent)
                log.warning("cannot remove delivered objects from the outbox of %s: %s", name, exc)
                self.metrics.reconcile_error(name, "outbox")

    async def _store(self, report: Mapping[str, Any]) -> EvidenceStore:
        """The store for a `report` spec: built once (concurrent uploads wait for the same one), in a worker
        thread, because building an S3 client loads its service model: most of a second of CPU that must
        not stall the event loop and the watches it serves."""
        cache_key = _store_key(report)
        pending = self._stores.get(cache_key)
        if pending is None:
            pending = asyncio.ensure_future(self._build_store(ReportSpec.model_validate(dict(report))))
            self._stores[cache_key] = pending
        try:
            return await asyncio.shield(pending)
        except BaseException:
            if pending.done() and self._stores.get(cache_key) is pending:
                self._stores.pop(cache_key, None)  # built again on the next attempt
            raise

    async def _build_store(self, spec: ReportSpec) -> EvidenceStore:
        credentials = None
        ref = spec.credentials_secret
        if ref is not None:
            credentials = await self._io(self._read_credentials, ref.namespace or self.secret_namespace, ref.name)
        store: EvidenceStore = await self._io(self._factory, spec, credentials)
        return store

    def _read_credentials(self, namespace: str, name: str) -> S3Credentials:
        try:
            secret = self.kube.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except KubeError as exc:
            raise EvidenceError(f"cannot read report credentials Secret {namespace}/{name}: {exc.status} "
                                f"{exc.reason}") from None
        data = secret.get("data") or {}

        def value(*keys: str) -> str | None:
            for key in keys:
                if key in data:
                    return base64.b64decode(data[key]).decode()
            return None

        key_id = value("AWS_ACCESS_KEY_ID", "accessKeyId")
        secret_key = value("AWS_SECRET_ACCESS_KEY", "secretAccessKey")
        if not key_id or not secret_key:
            raise EvidenceError(f"Secret {namespace}/{name} lacks AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        return S3Credentials(key_id, secret_key, value("AWS_SESSION_TOKEN", "sessionToken"))

    # --- Events -------------------------------------------------------------------------

    def _transitions(self, name: str, box: EvidenceOutbox | None, d: DeliveryState, had_backlog: bool,
                     now: datetime) -> list[PostEvent]:
        waiting = len(box) if box is not None else 0
        if waiting and d.queued_since is None:
            d.queued_since = box.oldest if box is not None else None
        if waiting and not had_backlog and d.queued_since is not None:
            where = ", ".join(box.segment_names()[:3]) if box is not None else ""
            return [PostEvent("Qualification", name, "Warning", Reason.EVIDENCE_BACKLOG.value,
                              f"S3 did not take the evidence ({d.last_error or 'backing off'}): {waiting} objects "
                              f"wait in the outbox (ConfigMaps {where} in {self.namespace}) and are retried with "
                              "backoff; nothing is lost", key=f"outbox/{d.queued_since}")]
        if not waiting and had_backlog and d.queued_since is not None:
            since, d.queued_since = d.queued_since, None
            return [PostEvent("Qualification", name, "Normal", EVIDENCE_DELIVERED,
                              f"S3 took the evidence that waited in the outbox since {since}; the outbox is empty",
                              key=f"outbox/{since}/delivered")]
        return []


def _no_checkpoint(_point: str | None) -> None:
    return None


def _store_key(report: Mapping[str, Any]) -> str:
    return json.dumps(ReportSpec.model_validate(dict(report)).to_json_dict(), sort_keys=True)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

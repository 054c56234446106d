"""In-memory state of the operator, per Qualification: caches only, never the source of truth.

Everything here can be rebuilt from the cluster after a restart (results are re-read
from the probe pods, which are kept until their run completes and their evidence is in
S3 or in the durable outbox; the outbox is re-read from its ConfigMaps); it exists so
that a reconcile does not repeat API calls whose effect the watch streams have not
shown yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from accelqual.models import QualificationStatus
from accelqual.planning.snapshot import NodeInfo, NodeResult

if TYPE_CHECKING:
    from accelqual.handlers.outbox import EvidenceOutbox


@dataclass(frozen=True)
class PendingEvidence:
    """A node's evidence read from its probe pod, neither in S3 nor in the outbox yet (the pod holds it)."""

    key: str
    body: bytes
    report: Mapping[str, Any]  # the `report` spec it goes to
    content_type: str = "application/json"


@dataclass
class DeliveryState:
    """How S3 has been answering for one Qualification, and its outbox (loaded from the cluster)."""

    outbox: EvidenceOutbox | None = None
    attempts: int = 0
    next_try: datetime | None = None
    last_error: str = ""
    #: When the outbox last became non-empty (ISO time of its oldest object), for the Events.
    queued_since: str | None = None


@dataclass
class QualificationState:
    #: Results of finished probe pods, by pod name (and the pod uid they were read from).
    results: dict[str, tuple[str, NodeResult]] = field(default_factory=dict)
    #: Evidence neither in S3 nor in the durable outbox, by pod name: the pod is kept meanwhile.
    evidence: dict[str, PendingEvidence] = field(default_factory=dict)
    delivery: DeliveryState = field(default_factory=DeliveryState)
    #: The status we last wrote, with the generation it was written for (the watch may lag).
    status: QualificationStatus | None = None
    #: Pods we created whose ADDED event has not arrived yet: name -> (node, run, manifest).
    created: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Pods we deleted whose DELETED event has not arrived yet.
    deleted: set[str] = field(default_factory=set)
    #: Event names already posted (their names are deterministic, so a repeat is a 409 anyway).
    posted: set[str] = field(default_factory=set)
    #: Summaries delivered (to S3 or the outbox), by run id.
    summaries: set[str] = field(default_factory=set)
    #: Last spec problem reported as an Event, by generation.
    invalid_reported: int | None = None
    #: Unfinished probe pods by name: (phase seen, monotonic time first seen in it), for their observed age.
    observed: dict[str, tuple[str, float]] = field(default_factory=dict)


@dataclass
class OperatorState:
    qualifications: dict[str, QualificationState] = field(default_factory=dict)
    #: Nodes as returned by our own patches, newer than the index until the watch catches up.
    node_overlay: dict[str, NodeInfo] = field(default_factory=dict)
    wakers: dict[str, asyncio.Event] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def of(self, name: str) -> QualificationState:
        return self.qualifications.setdefault(name, QualificationState())

    def forget(self, name: str) -> None:
        self.qualifications.pop(name, None)
        self.wakers.pop(name, None)

    def wake(self, name: str | None = None) -> None:
        """Wake one Qualification's reconcile loop, or all of them."""
        targets = [self.wakers[name]] if name is not None and name in self.wakers else (
            list(self.wakers.values()) if name is None else [])
        for event in targets:
            event.set()

    def waker(self, name: str) -> asyncio.Event:
        return self.wakers.setdefault(name, asyncio.Event())

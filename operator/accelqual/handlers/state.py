"""In-memory state of the operator, per Qualification: caches only, never the source of truth.

Everything here can be rebuilt from the cluster after a restart (results are re-read
from the probe pods, which are kept until their run completes and their evidence is
uploaded); it exists so that a reconcile does not repeat API calls whose effect the
watch streams have not shown yet.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from accelqual.models import QualificationStatus
from accelqual.planning.snapshot import NodeInfo, NodeResult


@dataclass
class PendingEvidence:
    key: str
    body: bytes
    attempts: int = 0
    next_try: datetime | None = None
    last_error: str = ""


@dataclass
class QualificationState:
    #: Results of finished probe pods, by pod name (and the pod uid they were read from).
    results: dict[str, tuple[str, NodeResult]] = field(default_factory=dict)
    #: Evidence not yet in S3, by pod name: the pod is the outbox and is not deleted meanwhile.
    evidence: dict[str, PendingEvidence] = field(default_factory=dict)
    #: The status we last wrote, with the generation it was written for (the watch may lag).
    status: QualificationStatus | None = None
    #: Pods we created whose ADDED event has not arrived yet: name -> (node, run, manifest).
    created: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Pods we deleted whose DELETED event has not arrived yet.
    deleted: set[str] = field(default_factory=set)
    #: Event names already posted (their names are deterministic, so a repeat is a 409 anyway).
    posted: set[str] = field(default_factory=set)
    #: Summary uploads done, by run id.
    summaries: set[str] = field(default_factory=set)
    #: Last spec problem reported as an Event, by generation.
    invalid_reported: int | None = None


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

"""The snapshot `plan()` decides on: plain frozen values built by the handlers from the cluster."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from accelqual_probes.profiles import CardProfileSpec
from accelqual_probes.schema import OverallVerdict

#: A node label's text -> the verdict it names (a lookup where a set of the enum was built per node).
VERDICT_BY_LABEL: Mapping[str, OverallVerdict] = {v.value: v for v in OverallVerdict}


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str

    def to_dict(self) -> dict[str, str]:
        data = {"key": self.key, "effect": self.effect}
        if self.value:
            data["value"] = self.value
        return data


@dataclass(frozen=True)
class NodeInfo:
    """What planning needs to know about one node."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    allocatable: Mapping[str, str] = field(default_factory=dict)
    ready: bool = True
    resource_version: str = ""
    #: The Node object's uid: Events about the node name it, which is how `kubectl describe node` finds them.
    uid: str = ""
    #: When the Node object was created: a node that joins after a run started waits for the next run.
    created_at: datetime | None = None

    def has_taint(self, key: str, effect: str | None = None) -> bool:
        return any(t.key == key and (effect is None or t.effect == effect) for t in self.taints)


class PodPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class ProbePodInfo:
    """One of our probe pods, as seen in the cluster."""

    name: str
    node: str
    run_id: str
    phase: PodPhase
    uid: str = ""
    deleting: bool = False
    #: Why the pod ended, when the cluster says (DeadlineExceeded, Evicted, OOMKilled, Error...).
    reason: str = ""
    exit_code: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    #: How long this operator has watched the pod in its current phase, on its own monotonic clock
    #: (None: not tracked). Timestamps come from other hosts' clocks and `now` from a clock that
    #: NTP may step, so a pod's age is never taken to be more than this (see `views`).
    observed_seconds: float | None = None

    @property
    def finished(self) -> bool:
        return self.phase in (PodPhase.SUCCEEDED, PodPhase.FAILED)


class CheckOutcome(NamedTuple):
    """A per-check summary kept in memory for fleet statistics and the run summary.

    A tuple rather than a dataclass: the operator keeps one per check per node (175,000 in a
    5,000-node run of the standard suite), and a named tuple is built in 0.6 of the time and
    takes half the memory (88 bytes rather than 176)."""

    verdict: str
    value: float | None = None
    #: The fail limit applied to that value on this node (the report's, or the operator's re-check).
    minimum: float | None = None
    maximum: float | None = None
    #: The check's own reason when it did not pass, e.g. "device 0: membw_gbs 12.3 GB/s < 40.1 GB/s".
    reason: str = ""
    duration_seconds: float = 0.0


@dataclass(frozen=True)
class NodeResult:
    """The operator's verdict on one node for one run, derived from the probe's output."""

    node: str
    run_id: str
    verdict: OverallVerdict
    reason: str
    failed_checks: tuple[str, ...] = ()
    #: check id -> outcome with the primary metric's worst-device value (fleet comparison, metrics).
    checks: Mapping[str, CheckOutcome] = field(default_factory=dict)
    profile: str = ""
    driver_version: str = ""
    #: `inventory.probeVersion` of the report (the probe build that measured).
    probe_version: str = ""
    #: The validated report, canonical JSON, and its SHA-256 (None when the output was unusable).
    report_json: str | None = None
    report_sha256: str | None = None
    #: The raw output's problem, when the output was unusable (kept for the evidence).
    raw_excerpt: str = ""
    duration_seconds: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    """Everything `plan()` looks at, gathered by the handler at one moment."""

    name: str
    uid: str
    generation: int
    annotations: Mapping[str, str]
    #: Nodes matching the pool selector (the handler lists with the selector).
    nodes: tuple[NodeInfo, ...]
    #: Node name -> extended resources requested there by pods that are not probe pods.
    busy: Mapping[str, frozenset[str]]
    pods: tuple[ProbePodInfo, ...]
    #: Collected results of finished probe pods, by pod name.
    results: Mapping[str, NodeResult]
    #: The operator's probe image per software stack (cuda, rocm, ascend, cpu), for specs that name none.
    probe_images: Mapping[str, str] = field(default_factory=dict)
    #: CardProfile objects in the cluster by name (built-in profiles are always known).
    custom_profiles: Mapping[str, CardProfileSpec] = field(default_factory=dict)
    #: Probe pods whose evidence is not in S3 yet: they are the outbox and must not be deleted.
    evidence_pending: frozenset[str] = frozenset()
    #: Evidence objects held in the durable outbox (in the cluster) until S3 takes them.
    evidence_outbox: int = 0

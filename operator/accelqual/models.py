"""Pydantic models of the custom resources: `Qualification` spec/status and `CardProfile`.

These models are the source of truth for the CRDs (`accelqual crds` generates the
OpenAPI schemas from them) and for reading and writing the objects: the operator
validates a spec with `QualificationSpec.model_validate` and writes status only
from `QualificationStatus`. Validation the CRD cannot express (cron syntax, check
ids, label selector syntax) is done here and reported as a condition.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from accelqual_probes.catalog import Suite
from accelqual_probes.profiles import CardProfileSpec
from accelqual_probes.schema import CHECK_ID_PATTERN, OverallVerdict
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from accelqual.constants import DEFAULT_FAILURE_TAINT_KEY, DEFAULT_GATE_TAINT_KEY, Phase

# Kubernetes' qualified-name rules for label keys/values and taint keys.
LABEL_KEY_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
INT_OR_PERCENT_PATTERN = r"^(\d+|\d+%)$"

LabelKey = Annotated[str, Field(max_length=316, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
#: A count or a percentage of the pool (`3`, `"25%"`), like Kubernetes' IntOrString.
IntOrPercent = Annotated[
    Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=INT_OR_PERCENT_PATTERN)],
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SelectorOperator(StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(_Model):
    key: LabelKey
    operator: SelectorOperator
    values: list[Annotated[str, Field(max_length=63)]] = []

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        needs_values = self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
        if needs_values and not self.values:
            raise ValueError(f"operator {self.operator.value} needs at least one value")
        if not needs_values and self.values:
            raise ValueError(f"operator {self.operator.value} takes no values")
        return self


class LabelSelector(_Model):
    """A Kubernetes label selector. An empty selector selects every node (like Kubernetes)."""

    match_labels: dict[LabelKey, LabelValue] = {}
    match_expressions: list[LabelSelectorRequirement] = []

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator is SelectorOperator.IN and labels.get(req.key) not in req.values:
                return False
            if req.operator is SelectorOperator.NOT_IN and present and labels[req.key] in req.values:
                return False
            if req.operator is SelectorOperator.EXISTS and not present:
                return False
            if req.operator is SelectorOperator.DOES_NOT_EXIST and present:
                return False
        return True

    def to_query(self) -> str:
        """The selector as a `labelSelector` query string for list/watch."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for req in self.match_expressions:
            if req.operator is SelectorOperator.IN:
                parts.append(f"{req.key} in ({','.join(req.values)})")
            elif req.operator is SelectorOperator.NOT_IN:
                parts.append(f"{req.key} notin ({','.join(req.values)})")
            elif req.operator is SelectorOperator.EXISTS:
                parts.append(req.key)
            else:
                parts.append(f"!{req.key}")
        return ",".join(parts)


class Trigger(StrEnum):
    ONCE = "Once"
    ON_JOIN = "OnJoin"
    SCHEDULE = "Schedule"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class TaintSpec(_Model):
    key: LabelKey
    value: LabelValue = ""
    effect: TaintEffect = TaintEffect.NO_SCHEDULE


class FailurePolicy(_Model):
    """What happens to a node that fails (and, with `autoRelease`, to one that passes again)."""

    taint: TaintSpec = TaintSpec(key=DEFAULT_FAILURE_TAINT_KEY, value="true")
    cordon: bool = False
    labels: dict[LabelKey, LabelValue] = {}


class OutlierAction(StrEnum):
    WARN = "warn"
    FAIL = "fail"


class FleetRelative(_Model):
    """Compare each node's performance metrics with its peers in the same run (median and MAD)."""

    enabled: bool = True
    #: A node more than this fraction below the pool median of a check's metric is an outlier.
    max_deviation: Annotated[float, Field(gt=0, lt=1)] = 0.08
    #: ...and also more than this many robust standard deviations (1.4826 x MAD) from the median,
    #: so that a pool with wide natural spread does not flag its ordinary members.
    min_robust_z: Annotated[float, Field(ge=0, le=100)] = 3.0
    action: OutlierAction = OutlierAction.FAIL
    #: Fewer reports than this and no peer comparison is made (statistics of 3 nodes say little).
    min_peers: Annotated[int, Field(ge=3, le=10000)] = 5


class Toleration(_Model):
    key: Annotated[str, Field(max_length=316)] | None = None
    operator: Annotated[str, Field(pattern=r"^(Exists|Equal)$")] | None = None
    value: Annotated[str, Field(max_length=63)] | None = None
    effect: TaintEffect | None = None
    toleration_seconds: int | None = None


class ProbeSpec(_Model):
    """How probe pods are built."""

    #: Default: the operator's image for the card's software stack (`--probe-image STACK=IMAGE`; stacks
    #: cuda, rocm, ascend, cpu), chosen from the node's profile.
    image: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    image_pull_policy: Annotated[str, Field(pattern=r"^(Always|IfNotPresent|Never)$")] = "IfNotPresent"
    #: Extended resource requested from each node; default: the profile's (e.g. nvidia.com/gpu).
    resource_name: Annotated[str, Field(max_length=253)] | None = None
    cpu: Annotated[str, Field(max_length=32, pattern=r"^\d+(\.\d+)?m?$")] = "2"
    memory: Annotated[str, Field(max_length=32, pattern=r"^\d+(\.\d+)?([EPTGMK]i?)?$")] = "8Gi"
    #: activeDeadlineSeconds of the pod: a probe still running then is killed and the node is inconclusive.
    timeout_seconds: Annotated[int, Field(ge=30, le=86400)] = 1800
    tolerations: list[Toleration] = []
    priority_class_name: Annotated[str, Field(max_length=253)] | None = None
    #: Extra groups of the probe process, e.g. the node's `video`/`render` gids that ROCm devices need
    #: when the probe runs as non-root.
    supplemental_groups: list[Annotated[int, Field(ge=0, le=4294967295)]] = Field(default=[], max_length=16)
    #: Extra arguments appended to `accelqual probe` (e.g. `--burnin-seconds 600`).
    extra_args: list[Annotated[str, Field(max_length=256)]] = Field(default=[], max_length=16)


class SecretRef(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: Annotated[str, Field(max_length=63)] | None = None


class ReportSpec(_Model):
    """Where the evidence goes: `s3://bucket/prefix/QUALIFICATION/RUN_ID/...`."""

    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")]
    prefix: Annotated[str, Field(max_length=512)] = "accelqual"
    region: Annotated[str, Field(max_length=64)] | None = None
    endpoint: Annotated[str, Field(max_length=512, pattern=r"^https?://")] | None = None
    credentials_secret: SecretRef | None = None


class QualificationSpec(_Model):
    """What to qualify (a node pool), with what (profile, suite) and under which policy."""

    node_selector: LabelSelector
    profile: Annotated[str, Field(max_length=63, pattern=r"^(auto|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$")] = "auto"
    suite: Suite = Suite.STANDARD
    checks: list[Annotated[str, Field(max_length=64, pattern=CHECK_ID_PATTERN)]] = Field(default=[], max_length=64)
    skip_checks: list[Annotated[str, Field(max_length=64, pattern=CHECK_ID_PATTERN)]] = Field(
        default=[], max_length=64
    )
    trigger: Trigger = Trigger.ONCE
    schedule: Annotated[str, Field(max_length=128)] | None = None
    max_concurrent: IntOrPercent = "25%"
    only_idle_nodes: bool = True
    on_failure: FailurePolicy = FailurePolicy()
    gate_taint: TaintSpec | None = TaintSpec(key=DEFAULT_GATE_TAINT_KEY)
    auto_release: bool = False
    failure_budget: IntOrPercent = "20%"
    dry_run: bool = False
    fleet_relative: FleetRelative = FleetRelative()
    probe: ProbeSpec = ProbeSpec()
    report: ReportSpec | None = None
    #: A node whose accelerators stay busy (or whose probe pod stays unscheduled) this long into a
    #: run is reported `skipped` instead of holding the run open forever.
    wait_seconds: Annotated[int, Field(ge=0, le=7 * 86400)] = 3600

    @field_validator("schedule")
    @classmethod
    def _cron_fields(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(@(hourly|daily|weekly|monthly|yearly|annually)|(\S+\s+){4}\S+)$",
                                              value.strip()):
            raise ValueError("schedule must be a 5-field cron expression or @hourly/@daily/...")
        return value

    @model_validator(mode="after")
    def _schedule_with_trigger(self) -> QualificationSpec:
        if self.trigger is Trigger.SCHEDULE and not self.schedule:
            raise ValueError("trigger Schedule needs a schedule (a cron expression)")
        return self


def resolve_count(value: int | str, pool_size: int, *, minimum: int) -> int:
    """A count or percentage of the pool as a node count; percentages round up, never below `minimum`."""
    if isinstance(value, int):
        return max(value, minimum)
    if value.endswith("%"):
        count = math.ceil(pool_size * int(value[:-1]) / 100)
    else:
        count = int(value)
    return max(count, minimum)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Model):
    type: Annotated[str, Field(max_length=64)]
    status: ConditionStatus
    reason: Annotated[str, Field(max_length=64)]
    message: Annotated[str, Field(max_length=1024)] = ""
    last_transition_time: datetime | None = None
    observed_generation: int | None = None


class RunSummary(_Model):
    total: Annotated[int, Field(ge=0)] = 0
    pending: Annotated[int, Field(ge=0)] = 0
    running: Annotated[int, Field(ge=0)] = 0
    passed: Annotated[int, Field(ge=0)] = 0
    failed: Annotated[int, Field(ge=0)] = 0
    inconclusive: Annotated[int, Field(ge=0)] = 0
    skipped: Annotated[int, Field(ge=0)] = 0


class FailingNode(_Model):
    node: Annotated[str, Field(max_length=253)]
    verdict: OverallVerdict
    failed_checks: list[Annotated[str, Field(max_length=64)]] = Field(default=[], max_length=8)
    reason: Annotated[str, Field(max_length=256)] = ""


#: The status lists at most this many failing nodes; the rest are counted in `failingNodesOmitted`.
MAX_FAILING_NODES = 20


class QualificationStatus(_Model):
    """Written by the operator only. Bounded whatever the pool size: per-node detail is on nodes and in S3."""

    phase: Phase = Phase.PENDING
    observed_generation: int | None = None
    run_id: Annotated[str, Field(max_length=32)] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_run_at: datetime | None = None
    summary: RunSummary = RunSummary()
    failing_nodes: list[FailingNode] = Field(default=[], max_length=MAX_FAILING_NODES)
    failing_nodes_omitted: Annotated[int, Field(ge=0)] = 0
    report_uri: Annotated[str | None, Field(alias="reportURI", max_length=1024)] = None
    report_sha256: Annotated[str | None, Field(alias="reportSHA256", pattern=r"^[0-9a-f]{64}$")] = None
    evidence_backlog: Annotated[int, Field(ge=0)] = 0
    #: After a human resumed a Halted run: failures up to this count are already accepted.
    failures_at_resume: Annotated[int, Field(ge=0)] = 0
    conditions: list[Condition] = Field(default=[], max_length=8)
    message: Annotated[str, Field(max_length=1024)] = ""


class CardProfile(_Model):
    """The `CardProfile` custom resource: `spec` is the probe side's `CardProfileSpec`."""

    spec: CardProfileSpec

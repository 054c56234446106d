"""Names shared by every layer: API group, label/annotation/taint keys, condition types and reasons.

Condition reasons are constants here so that tests, alerts and docs refer to the same
strings (the kubebuilder habit).
"""

from __future__ import annotations

from enum import StrEnum

GROUP = "accelqual.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
QUALIFICATIONS = "qualifications"
CARDPROFILES = "cardprofiles"

# Node marks (DESIGN.md 3.5). The verdict label is the one other tools select on.
LABEL_VERDICT = f"{GROUP}/verdict"
ANN_QUALIFICATION = f"{GROUP}/qualification"
ANN_RUN = f"{GROUP}/run"
ANN_CHECKED_AT = f"{GROUP}/checked-at"
ANN_FAILED_CHECKS = f"{GROUP}/failed-checks"
ANN_REASON = f"{GROUP}/reason"
ANN_REPORT_URI = f"{GROUP}/report-uri"
ANN_REPORT_SHA256 = f"{GROUP}/report-sha256"
ANN_PROFILE = f"{GROUP}/profile"
#: Set on a node by the operator when it added the failure taint, so that only taints we
#: placed are ever released (a taint with the same key placed by a human stays).
ANN_TAINTED_BY = f"{GROUP}/tainted-by"
#: Set when the operator cordoned a node itself, so that only cordons we placed are ever lifted.
ANN_CORDONED_BY = f"{GROUP}/cordoned-by"
#: A node label that pins the profile for that node, overriding detection.
LABEL_PROFILE = f"{GROUP}/profile"
#: A human sets this on a Halted Qualification to let it act again.
ANN_RESUME = f"{GROUP}/resume"

DEFAULT_FAILURE_TAINT_KEY = f"{GROUP}/failed"
DEFAULT_GATE_TAINT_KEY = f"{GROUP}/unqualified"

# Probe pod labels.
LABEL_APP_NAME = "app.kubernetes.io/name"
LABEL_APP_COMPONENT = "app.kubernetes.io/component"
LABEL_APP_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_APP_INSTANCE = "app.kubernetes.io/instance"
LABEL_POD_QUALIFICATION = f"{GROUP}/qualification"
LABEL_POD_RUN = f"{GROUP}/run"
LABEL_POD_NODE = f"{GROUP}/node"
APP_NAME = "accelqual"
PROBE_COMPONENT = "probe"
MANAGER = "accelqual-operator"

#: Node labels that name the card model, in order of preference (profile auto-selection).
PRODUCT_LABELS = (
    LABEL_PROFILE,
    "nvidia.com/gpu.product",
    "amd.com/gpu.product-name",
    "accelerator",
    "node.kubernetes.io/instance-type",
)


class ConditionType(StrEnum):
    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    HALTED = "Halted"


class Reason(StrEnum):
    """Condition reasons, one vocabulary for status, Events and alerts."""

    SPEC_VALID = "SpecValid"
    INVALID_SPEC = "InvalidSpec"
    UNKNOWN_PROFILE = "UnknownProfile"
    UNKNOWN_CHECK = "UnknownCheck"
    INVALID_SELECTOR = "InvalidSelector"
    INVALID_SCHEDULE = "InvalidSchedule"
    RUN_STARTED = "RunStarted"
    RUN_IN_PROGRESS = "RunInProgress"
    RUN_COMPLETED = "RunCompleted"
    WAITING = "WaitingForNextRun"
    NODES_FAILED = "NodesFailed"
    NODES_INCONCLUSIVE = "NodesInconclusive"
    ALL_PASSED = "AllPassed"
    EMPTY_POOL = "EmptyPool"
    FAILURE_BUDGET_EXCEEDED = "FailureBudgetExceeded"
    RESUMED = "Resumed"
    NOT_HALTED = "NotHalted"
    EVIDENCE_BACKLOG = "EvidenceBacklog"


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    HALTED = "Halted"
    INVALID = "Invalid"

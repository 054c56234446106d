"""Validation of a Qualification's spec beyond what the CRD schema can say.

The CRD rejects what Kubernetes would (types, enums, patterns, minimums). What reaches
the operator and is still wrong — an unknown profile or check id, a cron expression
that does not parse, a selector that selects nothing sensible — becomes `Ready=False`
with a precise reason, and no node is touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from accelqual_probes.catalog import unknown_ids
from accelqual_probes.profiles import CardProfileSpec
from pydantic import ValidationError

from accelqual.constants import ConditionType, Phase, Reason
from accelqual.models import QualificationSpec, QualificationStatus
from accelqual.planning import schedule
from accelqual.planning.conditions import set_condition
from accelqual.planning.profiles import known_profiles


@dataclass(frozen=True)
class SpecProblem:
    reason: Reason
    message: str


def validate_spec(
    raw: Mapping[str, Any], custom_profiles: Mapping[str, CardProfileSpec]
) -> QualificationSpec | SpecProblem:
    if not isinstance(raw, Mapping):  # a stale or missing CRD schema lets anything through
        return SpecProblem(Reason.INVALID_SPEC, f"spec: must be an object, not {type(raw).__name__}")
    try:
        spec = QualificationSpec.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        reason = Reason.INVALID_SELECTOR if where.startswith("nodeSelector") else Reason.INVALID_SPEC
        if where.startswith("schedule"):
            reason = Reason.INVALID_SCHEDULE
        more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
        return SpecProblem(reason, f"spec.{where}: {first['msg']}{more}"[:1024])
    if not spec.node_selector.match_labels and not spec.node_selector.match_expressions:
        # Kubernetes would read an empty selector as "every node"; for an operator that taints
        # nodes that is far more likely a mistake than an intent.
        return SpecProblem(Reason.INVALID_SELECTOR,
                           "spec.nodeSelector is empty; name the pool with matchLabels or matchExpressions")
    if spec.profile != "auto" and spec.profile not in known_profiles(custom_profiles):
        names = ", ".join(sorted(known_profiles(custom_profiles)))
        return SpecProblem(Reason.UNKNOWN_PROFILE,
                           f"spec.profile {spec.profile!r} is neither built in nor a CardProfile; known: {names}")
    unknown = unknown_ids([*spec.checks, *spec.skip_checks])
    if unknown:
        return SpecProblem(Reason.UNKNOWN_CHECK, f"unknown check ids: {', '.join(unknown[:8])} "
                                                 "(third-party checks must start with 'ext.')")
    if spec.schedule is not None and not schedule.is_valid(spec.schedule):
        return SpecProblem(Reason.INVALID_SCHEDULE, f"spec.schedule {spec.schedule!r} is not a valid cron expression")
    return spec


def invalid_status(
    status: QualificationStatus, problem: SpecProblem, generation: int, now: datetime
) -> QualificationStatus:
    """The status of a Qualification whose spec cannot be acted on; a run in progress stops acting."""
    st = status.model_copy(deep=True)
    st.phase = Phase.INVALID
    st.observed_generation = generation
    st.message = problem.message
    set_condition(st, ConditionType.READY, False, problem.reason, problem.message, now, generation)
    set_condition(st, ConditionType.PROGRESSING, False, problem.reason, "not acting on an invalid spec", now,
                  generation)
    return st

"""Status conditions: set one, keeping its transition time when its status did not change."""

from __future__ import annotations

from datetime import datetime

from accelqual.constants import ConditionType, Reason
from accelqual.models import Condition, ConditionStatus, QualificationStatus


def set_condition(
    status: QualificationStatus,
    type_: ConditionType,
    value: bool,
    reason: Reason,
    message: str,
    now: datetime,
    generation: int,
) -> None:
    new_status = ConditionStatus.TRUE if value else ConditionStatus.FALSE
    order = [t.value for t in ConditionType]
    kept: list[Condition] = []
    previous: Condition | None = None
    for cond in status.conditions:
        if cond.type == type_.value:
            previous = cond
        elif cond.type in order:  # the status is ours alone: conditions someone else added are dropped
            kept.append(cond)
    transition = previous.last_transition_time if previous and previous.status == new_status else now
    kept.append(Condition(type=type_.value, status=new_status, reason=reason.value, message=message[:1024],
                          last_transition_time=transition, observed_generation=generation))
    status.conditions = sorted(kept, key=lambda c: order.index(c.type) if c.type in order else len(order))


def get_condition(status: QualificationStatus, type_: ConditionType) -> Condition | None:
    return next((c for c in status.conditions if c.type == type_.value), None)

"""Cron arithmetic for `trigger: Schedule` (croniter is pure computation, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import croniter


def is_valid(expression: str) -> bool:
    return bool(croniter.is_valid(expression))


def next_after(expression: str, moment: datetime) -> datetime:
    """The first scheduled time strictly after `moment` (UTC)."""
    value = croniter(expression, moment.astimezone(UTC)).get_next(datetime)
    assert isinstance(value, datetime)
    return value.astimezone(UTC)

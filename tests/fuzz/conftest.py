"""Hypothesis profiles of the fuzz suites: `ci` (the default, sized for `make test`) and `fuzz` (`make fuzz`).

`ACCELQUAL_FUZZ_PROFILE=fuzz` runs 10,000 examples per target. Every fuzz test records how many
examples it ran (`fuzz-target` property, read by `tests.reliability.recorder` for docs/reliability.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings

PROFILE_ENV = "ACCELQUAL_FUZZ_PROFILE"
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("deep", max_examples=1_500, deadline=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("fuzz", max_examples=10_000, deadline=None, suppress_health_check=_SLOW_OK,
                          print_blob=True)
settings.load_profile(os.environ.get(PROFILE_ENV, "ci"))

FuzzRecorder = Callable[[str, int], None]


@pytest.fixture
def record_fuzz(record_property: Callable[[str, object], None]) -> FuzzRecorder:
    """Record a fuzz target's example count on the test (for the reliability doc)."""
    def record(target: str, examples: int) -> None:
        record_property("fuzz-target", {"target": target, "examples": examples,
                                        "profile": os.environ.get(PROFILE_ENV, "ci")})
    return record

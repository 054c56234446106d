"""The fuzz suites' hypothesis profiles and example recorder apply to the property tests here too."""

from __future__ import annotations

from tests.fuzz.conftest import record_fuzz

__all__ = ["record_fuzz"]

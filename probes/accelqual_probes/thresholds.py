"""Declarative pass criteria and the one pure function that evaluates them.

A profile states, per check, a `ThresholdRule` relative to a *basis*: the card's
nominal value (vendor datasheet) or, for profiles marked `relativeToReference`, a
reference measurement taken on the same machine in the same run. `resolve` turns a
rule into a concrete `Threshold`; `evaluate` compares measured values with it.
Nothing is ever `eval`-ed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from accelqual_probes.schema import FiniteFloat, Threshold, Verdict


class ThresholdRule(BaseModel):
    """A limit for one check: fractions of the basis and/or absolute bounds.

    `warnFraction` opens a band between `minFraction` and itself in which the check
    passes with a warning, so a degrading card is visible before it fails.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    min_fraction: Annotated[FiniteFloat, Field(ge=0, le=10)] | None = None
    warn_fraction: Annotated[FiniteFloat, Field(ge=0, le=10)] | None = None
    max_fraction: Annotated[FiniteFloat, Field(ge=0, le=100)] | None = None
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None

    def merged(self, override: ThresholdRule | None) -> ThresholdRule:
        """This rule with every field that `override` sets replaced."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True))


def resolve(metric: str, unit: str, rule: ThresholdRule, basis: float | None, basis_name: str) -> Threshold:
    """Concrete bounds for `metric` from `rule` and a basis value (nominal or reference)."""
    lows: list[float] = []
    highs: list[float] = []
    words: list[str] = []
    if basis is not None and rule.min_fraction is not None:
        lows.append(rule.min_fraction * basis)
        words.append(f">= {rule.min_fraction:g} x {basis_name} {basis:.4g} {unit}".rstrip())
    if basis is not None and rule.max_fraction is not None:
        highs.append(rule.max_fraction * basis)
        words.append(f"<= {rule.max_fraction:g} x {basis_name} {basis:.4g} {unit}".rstrip())
    if rule.min is not None:
        lows.append(rule.min)
        words.append(f">= {rule.min:g} {unit}".rstrip())
    if rule.max is not None:
        highs.append(rule.max)
        words.append(f"<= {rule.max:g} {unit}".rstrip())
    return Threshold(
        metric=metric,
        min=max(lows) if lows else None,
        max=min(highs) if highs else None,
        unit=unit,
        basis="; ".join(words),
    )


def warn_floor(rule: ThresholdRule, basis: float | None) -> float | None:
    """The value under which a passing measurement earns a warning, if the rule has a band."""
    if basis is None or rule.warn_fraction is None:
        return None
    return rule.warn_fraction * basis


def evaluate(
    values: Iterable[tuple[float, int | None]], threshold: Threshold, warn_below: float | None = None
) -> tuple[Verdict, str]:
    """Compare measured `(value, device)` pairs with `threshold`; the worst device decides.

    No values at all is an error, never a pass (fail closed).
    """
    pairs = list(values)
    if not pairs:
        return Verdict.ERROR, f"no measurement of {threshold.metric}"
    unit = f" {threshold.unit}" if threshold.unit else ""
    failures: list[str] = []
    for value, device in pairs:
        where = f"device {device}" if device is not None else "node"
        if threshold.min is not None and value < threshold.min:
            failures.append(f"{where}: {threshold.metric} {value:.4g}{unit} < {threshold.min:.4g}{unit}")
        elif threshold.max is not None and value > threshold.max:
            failures.append(f"{where}: {threshold.metric} {value:.4g}{unit} > {threshold.max:.4g}{unit}")
    if failures:
        return Verdict.FAIL, "; ".join(failures[:8]) + (f" (+{len(failures) - 8} more)" if len(failures) > 8 else "")
    if warn_below is not None:
        low = [(v, d) for v, d in pairs if v < warn_below]
        if low:
            worst, device = min(low)
            where = f"device {device}" if device is not None else "node"
            return Verdict.WARN, (f"{where}: {threshold.metric} {worst:.4g}{unit} "
                                  f"below warning level {warn_below:.4g}{unit}")
    worst_value = min(v for v, _ in pairs) if threshold.min is not None else max(v for v, _ in pairs)
    return Verdict.PASS, f"{threshold.metric} {worst_value:.4g}{unit} within limits ({threshold.basis})"


def consistent(values: Iterable[float], threshold: Threshold) -> bool:
    """Whether every value lies inside the threshold; the operator uses it to catch forged passes."""
    # min() and max() run in C: an 8-card node's report holds hundreds of values (all finite: the schema says so).
    values = values if isinstance(values, list) else list(values)
    if not values:
        return True
    return (threshold.min is None or min(values) >= threshold.min) and (
        threshold.max is None or max(values) <= threshold.max)

"""What a check hands back from its run, and the pure function that turns it into a verdict.

A check measures and states its limits (`Evidence.measure`, `Evidence.judge`,
`Evidence.finding`); `conclude` decides: any failed finding fails the check, an
errored one makes it an error, a warning warns, and a check that judged nothing is an
error, never a pass. Non-finite measurements (NaN from a corrupted device) fail the
judgement instead of slipping past a comparison.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from accelqual_probes import thresholds
from accelqual_probes.schema import (
    MAX_MEASUREMENTS,
    MAX_REASON,
    Measurement,
    Reading,
    Severity,
    Threshold,
    Verdict,
    group_readings,
)

#: How strongly each finding decides a check's verdict.
_SEVERITY = {Verdict.FAIL: 3, Verdict.ERROR: 2, Verdict.WARN: 1, Verdict.PASS: 0}


class NotApplicableError(Exception):
    """Raised by a check whose subject does not exist on this device: the check is skipped."""


class CheckCancelledError(Exception):
    """Raised inside a check that overran its timeout when it next looks at the clock."""


@dataclass(frozen=True)
class Finding:
    verdict: Verdict
    reason: str


@dataclass
class Evidence:
    """Measurements, applied thresholds and findings of one check run."""

    #: Each measured value, in order; the report holds them grouped per metric (`measurements`).
    readings: list[Reading] = field(default_factory=list)
    thresholds: list[Threshold] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def measure(self, metric: str, value: float, unit: str = "", device: int | None = None) -> None:
        """Record a value; a non-finite one is a failed finding (it cannot be stored or compared)."""
        if not math.isfinite(value):
            where = f" on device {device}" if device is not None else ""
            self.finding(Verdict.FAIL, f"{metric}{where} is {value} (not a finite number)")
            return
        if len(self.readings) < MAX_MEASUREMENTS:
            self.readings.append(Reading(metric, float(value), unit, device))

    @property
    def measurements(self) -> list[Measurement]:
        """The values as the report holds them: one `Measurement` per metric, unit and kind."""
        return group_readings(self.readings)

    def judge(self, threshold: Threshold, values: Iterable[tuple[float, int | None]],
              warn_below: float | None = None, label: str = "") -> Verdict:
        """Compare values with a threshold (thresholds.evaluate) and keep the finding.

        A violated `warn`-severity threshold warns instead of failing. Every judged metric
        must also be measured (`measure`): the operator re-checks passing checks against
        their thresholds and treats a threshold without measurements as an error.
        """
        pairs = list(values)
        bad = [(v, d) for v, d in pairs if not math.isfinite(v)]
        if (threshold.min is not None or threshold.max is not None) and len(bad) < len(pairs):
            # Only a threshold that was compared with a (finite, measured) value is reported.
            self.thresholds.append(threshold)
        if bad:
            verdict, reason = Verdict.FAIL, f"{threshold.metric} is not a finite number ({bad[0][0]})"
        elif pairs and threshold.min is None and threshold.max is None:
            # Evidence without a limit (fleet-compared metrics): recorded, judged by peers.
            unit = f" {threshold.unit}" if threshold.unit else ""
            shown = ", ".join(f"{v:.4g}" for v, _ in pairs[:4])
            verdict, reason = Verdict.PASS, f"{threshold.metric} {shown}{unit} (no limit in the profile)"
        else:
            verdict, reason = thresholds.evaluate(pairs, threshold, warn_below)
            if verdict is Verdict.FAIL and threshold.severity is Severity.WARN:
                verdict = Verdict.WARN
        self.finding(verdict, f"{label}: {reason}" if label else reason)
        return verdict

    def finding(self, verdict: Verdict, reason: str) -> None:
        self.findings.append(Finding(verdict, reason))

    def note(self, text: str) -> None:
        """Context for the reason that decides nothing (e.g. a dtype not tested and why)."""
        self.notes.append(text)


def conclude(evidence: Evidence) -> tuple[Verdict, str]:
    """The verdict of a check: its most severe finding decides; no finding at all is an error."""
    if not evidence.findings:
        return Verdict.ERROR, clip("; ".join(["check produced no verdict", *evidence.notes]))
    worst = max(evidence.findings, key=lambda f: _SEVERITY.get(f.verdict, 2)).verdict
    deciding = [f.reason for f in evidence.findings if f.verdict is worst]
    others = [f.reason for f in evidence.findings if f.verdict is not worst and f.verdict is not Verdict.PASS]
    if worst is Verdict.PASS:
        deciding = deciding[:3] + ([f"(+{len(deciding) - 3} more)"] if len(deciding) > 3 else [])
    return worst, clip("; ".join([*deciding, *others, *evidence.notes]))


def clip(text: str) -> str:
    """A reason cut to the schema's length limit."""
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."

"""The `ProbeReport`: the one result shape of a probe run (CLI output, pod output, S3 evidence).

Both sides use it: the probe writes it, the operator validates it strictly at the
boundary (`ProbeReport.parse_untrusted`) because a probe's output comes from a node
that may be broken or compromised. Every string and list is bounded and every number
must be finite, so a hostile report can neither bloat what the operator stores nor
smuggle NaN past a threshold comparison.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import from_json

SCHEMA_VERSION: Literal["accelqual.io/v2"] = "accelqual.io/v2"
#: Reports of the first version (one object per measured value) are still read, so that an operator
#: judges the probes of the release before it and `accelqual report` renders older evidence.
LEGACY_SCHEMA_VERSION = "accelqual.io/v1"
#: The compact verdict's own version: its shape has not changed.
VERDICT_SCHEMA_VERSION: Literal["accelqual.io/v1"] = "accelqual.io/v1"

#: Marks the line of a probe pod's stdout that carries the full report, so the operator
#: can find it among progress output and cannot be fooled by a report-shaped log line
#: printed earlier by a check (it takes the last marked line only).
REPORT_MARKER = "ACCELQUAL-REPORT "
#: Marks the compact verdict written to the pod's termination message (kubelet caps it at 4 KiB).
VERDICT_MARKER = "ACCELQUAL-VERDICT "

MAX_REPORT_BYTES = 1_048_576
MAX_VERDICT_BYTES = 4096
MAX_CHECKS = 256
#: Values one check records (`Evidence.measure` keeps the first this many).
MAX_MEASUREMENTS = 512
#: Measurements (one per metric, unit and kind) in one check: as many as values, so that whatever
#: `Evidence` keeps is a valid report.
MAX_SERIES = MAX_MEASUREMENTS
#: Cards on one node (a card's index is below it).
MAX_DEVICES = 1024
MAX_REASON = 1024
MAX_NAME = 253

CHECK_ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9][a-z0-9_-]*)*$"


class Verdict(StrEnum):
    """Outcome of one check."""

    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"
    ERROR = "error"


class OverallVerdict(StrEnum):
    """Outcome of a whole probe run (and of a node): `inconclusive` never lets a node in."""

    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Category(StrEnum):
    """The standard's categories of requirements."""

    GENERAL = "general"
    FUNCTION = "function"
    PERFORMANCE = "performance"
    COMPATIBILITY = "compatibility"
    RELIABILITY = "reliability"
    SECURITY = "security"
    TRAINING = "training"
    INFERENCE = "inference"


#: Checked by pydantic-core itself (a Python validator per float costs 3x at fleet scale).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
ShortText = Annotated[str, Field(max_length=MAX_REASON)]
Name = Annotated[str, Field(max_length=MAX_NAME)]


class _Model(BaseModel):
    """Base: camelCase on the wire, unknown fields rejected, frozen values."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Reading(NamedTuple):
    """One measured value: `metric` on card `device` (None: the node's)."""

    metric: str
    value: float
    unit: str = ""
    device: int | None = None


#: A card's index on its node.
DeviceIndex = Annotated[int, Field(ge=0, le=MAX_DEVICES - 1)]


@pydantic_dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class Measurement:
    """The measured values of one metric in one check: one per card, the card of `values[i]` being
    `devices[i]`, or the node's as a whole (`devices` None).

    Grouped per metric (schema v2) rather than one object per value (v1): the standard report of an
    8-card node holds about 500 values in about 75 of these, and pydantic-core validates it in less
    than half the time, from half the bytes. A slotted pydantic dataclass rather than a model: its
    fields are single words, so the models' camelCase aliases change nothing on the wire.
    """

    metric: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_.:/-]+$")]
    values: Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_DEVICES)]
    unit: Annotated[str, Field(max_length=32)] = ""
    devices: Annotated[list[DeviceIndex], Field(min_length=1, max_length=MAX_DEVICES)] | None = None

    def __post_init__(self) -> None:
        if self.devices is not None and len(self.devices) != len(self.values):
            raise ValueError(f"{self.metric}: {len(self.values)} values but {len(self.devices)} devices")

    def readings(self) -> Iterator[Reading]:
        """Each value with its card (None: the node's)."""
        if self.devices is None:
            return (Reading(self.metric, value, self.unit, None) for value in self.values)
        return (Reading(self.metric, value, self.unit, device)
                for value, device in zip(self.values, self.devices, strict=True))


def group_readings(readings: Iterable[Reading]) -> list[Measurement]:
    """`readings` as the report holds them: one `Measurement` per metric, unit and kind (per card or the
    node's), in the order each first appears."""
    series: dict[tuple[str, str, bool], tuple[list[float], list[int]]] = {}
    for r in readings:
        values, devices = series.setdefault((r.metric, r.unit, r.device is None), ([], []))
        values.append(r.value)
        if r.device is not None:
            devices.append(r.device)
    return [Measurement(metric=metric, unit=unit, values=values, devices=None if node else devices)
            for (metric, unit, node), (values, devices) in series.items()]


class Severity(StrEnum):
    """What a violated threshold means: the check fails, or it only warns (e.g. noise on a shared host)."""

    FAIL = "fail"
    WARN = "warn"


class Threshold(_Model):
    """A declarative limit on one metric: `min <= value <= max`; `basis` says where it came from.

    Contract with the operator: every threshold's `metric` has at least one measurement in
    the same check, and a check that reports `pass` or `warn` has no measurement outside a
    `fail`-severity threshold (the operator re-checks both and fails the node otherwise).
    """

    metric: Annotated[str, Field(max_length=64)]
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None
    unit: Annotated[str, Field(max_length=32)] = ""
    basis: ShortText = ""
    severity: Severity = Severity.FAIL


class CheckResult(_Model):
    """The result of one check, in the same shape for every check."""

    id: Annotated[str, Field(max_length=64, pattern=CHECK_ID_PATTERN)]
    category: Category
    verdict: Verdict
    reason: ShortText = ""
    measurements: Annotated[list[Measurement], Field(max_length=MAX_SERIES)] = []
    thresholds: Annotated[list[Threshold], Field(max_length=64)] = []
    duration_seconds: Annotated[FiniteFloat, Field(ge=0)] = 0.0

    def readings(self) -> Iterator[Reading]:
        """Every measured value of the check, with its metric, unit and card."""
        for m in self.measurements:
            yield from m.readings()

    def values_of(self, metric: str) -> list[float]:
        """All values of `metric` (every card's and the node's)."""
        return [v for m in self.measurements if m.metric == metric for v in m.values]


class DeviceInfo(_Model):
    index: Annotated[int, Field(ge=0, le=1023)]
    name: Name
    memory_bytes: Annotated[int, Field(ge=0)] = 0
    serial: Name | None = None
    uuid: Name | None = None
    bus_id: Name | None = None


class Inventory(_Model):
    """What the probe found on the machine at hand."""

    hostname: Name = ""
    device_type: Annotated[str, Field(max_length=16)]
    vendor: Name = ""
    model: Name = ""
    count: Annotated[int, Field(ge=0, le=1024)] = 0
    devices: Annotated[list[DeviceInfo], Field(max_length=1024)] = []
    driver_version: Name | None = None
    runtime_version: Name | None = None
    framework_version: Name | None = None
    probe_version: Name | None = None
    python_version: Name | None = None
    kernel: Name | None = None


class ProbeReport(_Model):
    """The full report of one probe run on one node."""

    schema_version: Literal["accelqual.io/v2"] = SCHEMA_VERSION
    node: Name | None = None
    profile: Name
    suite: Annotated[str, Field(max_length=32)]
    verdict: OverallVerdict
    reason: ShortText = ""
    started_at: datetime
    finished_at: datetime
    duration_seconds: Annotated[FiniteFloat, Field(ge=0)]
    inventory: Inventory
    checks: Annotated[list[CheckResult], Field(max_length=MAX_CHECKS)]
    injected_faults: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=32)] = []

    @classmethod
    def parse_untrusted(cls, raw: str | bytes) -> ProbeReport:
        """Validate a report that came from outside; raises `ReportError` with a one-line reason."""
        if len(raw) > MAX_REPORT_BYTES:
            raise ReportError(f"report is {len(raw)} bytes, over the {MAX_REPORT_BYTES}-byte limit")
        head = raw.lstrip()[:1]
        if head not in ("{", b"{"):
            raise ReportError("report is not a JSON object" if head in ("[", b"[", '"', b'"') or
                              head[:1].isdigit() else "report is not valid JSON")
        try:
            # pydantic-core parses and validates in one pass (nesting depth is bounded there).
            report = cls.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] == "json_invalid":
                raise ReportError(f"report is not valid JSON: {first['msg'][:200]}") from None
            wrong_version = any(tuple(e["loc"][:1]) == ("schemaVersion",) for e in exc.errors())
            legacy = _upgraded_v1(raw) if wrong_version else None
            if legacy is not None:
                try:
                    return cls.model_validate(legacy)
                except ValidationError as legacy_exc:
                    raise ReportError(f"report does not match the schema ({LEGACY_SCHEMA_VERSION}, read as "
                                      f"{SCHEMA_VERSION}): {_summarize(legacy_exc)}") from None
            marker = b'"schemaVersion"' if isinstance(raw, bytes) else '"schemaVersion"'
            if wrong_version or marker not in raw:  # type: ignore[operator]
                raise ReportError(f"report schemaVersion is not {SCHEMA_VERSION!r}") from None
            raise ReportError(f"report does not match the schema: {_summarize(exc)}") from None
        if "schema_version" not in report.model_fields_set:
            raise ReportError(f"report schemaVersion is not {SCHEMA_VERSION!r}")
        return report

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), separators=(",", ":"), sort_keys=True)


def _upgraded_v1(raw: str | bytes) -> dict[str, Any] | None:
    """A report of `LEGACY_SCHEMA_VERSION` in the current shape (each check's values grouped per metric),
    or None if `raw` is not one. Entries that are not v1 measurements are left for validation to refuse."""
    try:
        doc = from_json(raw)  # pydantic-core's parser: nesting depth is bounded, unlike json.loads
    except (ValueError, TypeError):  # TypeError: a lone surrogate in the text
        return None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != LEGACY_SCHEMA_VERSION:
        return None
    checks = doc.get("checks")
    for check in checks if isinstance(checks, list) else []:
        entries = check.get("measurements") if isinstance(check, dict) else None
        if isinstance(entries, list) and all(isinstance(e, dict) and "value" in e for e in entries):
            series: dict[tuple[Any, Any, bool], dict[str, Any]] = {}
            for e in entries:
                device = e.get("device")
                key = (e.get("metric"), e.get("unit", ""), device is None)
                if not all(isinstance(k, str) for k in key[:2]):
                    break  # left as it is: validation says what is wrong
                entry = series.setdefault(key, {"metric": key[0], "unit": key[1], "values": [],
                                                **({} if device is None else {"devices": []})})
                entry["values"].append(e["value"])
                if device is not None:
                    entry["devices"].append(device)
            else:
                check["measurements"] = list(series.values())
    return {**doc, "schemaVersion": SCHEMA_VERSION}


class CompactVerdict(_Model):
    """What fits in a termination message: verdict and the ids of failed/errored checks."""

    schema_version: Literal["accelqual.io/v1"] = VERDICT_SCHEMA_VERSION
    verdict: OverallVerdict
    failed: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] = []
    errored: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)] = []
    reason: Annotated[str, Field(max_length=512)] = ""

    @classmethod
    def of(cls, report: ProbeReport) -> CompactVerdict:
        failed = [c.id for c in report.checks if c.verdict is Verdict.FAIL][:64]
        errored = [c.id for c in report.checks if c.verdict is Verdict.ERROR][:64]
        return cls(verdict=report.verdict, failed=failed, errored=errored, reason=report.reason[:512])


def termination_message(report: ProbeReport) -> str:
    """`VERDICT_MARKER` + the compact verdict as JSON, trimmed to fit `MAX_VERDICT_BYTES`.

    The kubelet truncates termination messages at 4 KiB; a truncated JSON document would
    be unreadable, so the reason is shortened first and then the id lists, never the verdict.
    """
    compact = CompactVerdict.of(report)
    while True:
        line = VERDICT_MARKER + json.dumps(compact.to_json_dict(), separators=(",", ":"), sort_keys=True)
        if len(line.encode("utf-8")) <= MAX_VERDICT_BYTES:
            return line
        if compact.reason:
            compact = compact.model_copy(update={"reason": compact.reason[: len(compact.reason) // 2]})
        elif len(compact.errored) >= len(compact.failed) and compact.errored:
            compact = compact.model_copy(update={"errored": compact.errored[:-1]})
        elif compact.failed:
            compact = compact.model_copy(update={"failed": compact.failed[:-1]})
        else:
            return line


class ReportError(ValueError):
    """A probe's output could not be accepted; the message is one line, fit for a status condition."""


def overall_verdict(checks: list[CheckResult]) -> tuple[OverallVerdict, str]:
    """Fail closed: any failed check fails the run; any errored check makes it inconclusive."""
    failed = [c.id for c in checks if c.verdict is Verdict.FAIL]
    if failed:
        return OverallVerdict.FAIL, "failed: " + ", ".join(failed)
    errored = [c.id for c in checks if c.verdict is Verdict.ERROR]
    if errored:
        return OverallVerdict.INCONCLUSIVE, "errored: " + ", ".join(errored)
    if not any(c.verdict in (Verdict.PASS, Verdict.WARN) for c in checks):
        return OverallVerdict.INCONCLUSIVE, "no check produced evidence"
    warned = [c.id for c in checks if c.verdict is Verdict.WARN]
    return OverallVerdict.PASS, ("passed with warnings: " + ", ".join(warned)) if warned else "all checks passed"


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _summarize(exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(root)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"[:300]

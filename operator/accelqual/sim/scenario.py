"""Rehearsal scenario files (`accelqual simulate --scenario FILE.yaml`): their schema, validation and loading.

A scenario describes a fleet's shape and a day in its life: groups of simulated nodes
(labels, card profile, injected faults, driver, gate taint, when they join, when real work
makes them busy, when they are deleted), the Qualifications applied to them, and timed
events (operator restarts, S3 outages, API error bursts, a human resuming a halted run, spec
and label changes). An optional `expect:` section states the outcome the rehearsal must
show; `accelqual.sim.rehearsal` runs the scenario against the real operator and checks it.

Every field is validated here, before anything starts: a mistake in the file is one line
on stderr and exit status 2, naming the field (`nodes[2].faults[0]: unknown fault ...`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from accelqual_probes.profiles import BUILTIN
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from accelqual.constants import DEFAULT_GATE_TAINT_KEY, Phase
from accelqual.models import LabelKey, LabelValue, TaintSpec
from accelqual.planning.validation import SpecProblem, validate_spec
from accelqual.sim.modelled import BEHAVIOURS

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#: The hardware faults modelled probes know (`name` or `name=value`), see `sim.modelled`.
FAULTS = ("slow-compute", "slow-memory", "memory-shortfall", "bad-dtype", "corrupt", "missing-device",
          "residual-memory")
VERDICTS = ("pass", "fail", "inconclusive", "none")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message is one line naming the problem."""


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `"90s"`, `"15m"`, `"6h"`, `"1d"` or `"1h30m"`."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 15m, 6h, 1h30m")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _UNITS[u] for n, u in parts)
    raise ValueError(f"{value!r} is not a duration (use seconds or a string like 90s, 15m, 6h, 1d, 1h30m)")


def _check_faults(value: list[str]) -> list[str]:
    for fault in value:
        if fault.partition("=")[0] not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; known: {', '.join(FAULTS)} (name or name=value)")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(min_length=1, max_length=40, pattern=_DNS_LABEL)]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Count(_Model):
    """An expected number: exact, or a range (`{min: 1, max: 4}`); a plain integer means exactly."""

    exactly: int | None = None
    min: int | None = None
    max: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_int(cls, value: Any) -> Any:
        return {"exactly": value} if isinstance(value, int) and not isinstance(value, bool) else value

    def accepts(self, value: int) -> bool:
        if self.exactly is not None and value != self.exactly:
            return False
        if self.min is not None and value < self.min:
            return False
        return self.max is None or value <= self.max

    def describe(self) -> str:
        if self.exactly is not None:
            return str(self.exactly)
        low = "" if self.min is None else f">= {self.min}"
        high = "" if self.max is None else f"<= {self.max}"
        return " and ".join(p for p in (low, high) if p) or "any"


class BusyWindow(_Model):
    """Real work holds the accelerators of (the first `count` nodes of) a group from `from` until `until`."""

    from_: Duration = Field(alias="from")
    until: Duration | None = None
    count: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> BusyWindow:
        if self.until is not None and self.until <= self.from_:
            raise ValueError("until must be after from")
        return self


class NodeGroup(_Model):
    """`count` simulated nodes named `NAME-000`, `NAME-001`, ... with the same shape."""

    name: Name
    count: Annotated[int, Field(ge=1, le=5000)]
    labels: dict[LabelKey, LabelValue] = {}
    #: The card (a built-in CardProfile); the node is labelled with it and its probes are modelled on it.
    profile: str = "h100-sxm"
    #: Extended resource the cards are advertised as, and how many each node has.
    resource: Annotated[str, Field(max_length=253, pattern=r"^[a-z0-9.-]+/[a-z0-9._-]+$")] = "nvidia.com/gpu"
    accelerators: Annotated[int, Field(ge=1, le=64)] = 8
    #: Driver version the probes report (what a halted run names as the common factor).
    driver: Annotated[str, Field(min_length=1, max_length=64)] = "550.54.15"
    #: Hardware faults every node of the group has, e.g. `slow-memory=0.3`, `bad-dtype=bf16`.
    faults: list[str] = []
    #: Scripted probe output instead of a modelled report (`crash`, `hang`, `garbage`, ...).
    behaviour: str = "pass"
    #: Join with the gate taint (`true`: the default `accelqual.io/unqualified:NoSchedule`, or a taint).
    gate_taint: bool | TaintSpec = False
    #: Taints placed by others (a maintenance taint, another health checker's).
    taints: list[TaintSpec] = []
    #: Join cordoned (by someone else: the operator must leave the cordon alone).
    unschedulable: bool = False
    join_at: Duration = 0.0
    #: Stagger: node i joins at `joinAt + i * joinEvery`.
    join_every: Duration = 0.0
    busy: list[BusyWindow] = []
    delete_at: Duration | None = None

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        if value not in BUILTIN:
            raise ValueError(f"unknown profile {value!r}; built in: {', '.join(sorted(BUILTIN))}")
        return value

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, value: list[str]) -> list[str]:
        return _check_faults(value)

    @field_validator("behaviour")
    @classmethod
    def _known_behaviour(cls, value: str) -> str:
        if value not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {value!r}; known: {', '.join(BEHAVIOURS)}")
        return value

    def node_names(self) -> list[str]:
        return [f"{self.name}-{i:03d}" for i in range(self.count)]

    def gate(self) -> TaintSpec | None:
        if self.gate_taint is True:
            return TaintSpec(key=DEFAULT_GATE_TAINT_KEY)
        return self.gate_taint or None


class QualificationEntry(_Model):
    """A Qualification applied at `at`; `spec` is exactly what `kubectl apply` would send."""

    name: Name
    at: Duration = 0.0
    spec: dict[str, Any]
    #: Store evidence in the simulation's S3 (the `report` section is filled in; do not write one).
    report: bool = True

    @model_validator(mode="after")
    def _valid_spec(self) -> QualificationEntry:
        if "report" in self.spec:
            raise ValueError("spec.report is provided by the simulation (its local S3); "
                             "set `report: false` on the entry to run without evidence")
        checked = validate_spec(self.spec, {})
        if isinstance(checked, SpecProblem):
            raise ValueError(checked.message)
        return self


class _Event(_Model):
    at: Duration


class RestartOperator(_Event):
    action: Literal["restartOperator"]
    #: The operator stays down this long (schedules missed meanwhile are run once when it is back).
    down_for: Duration = 0.0


class S3Outage(_Event):
    action: Literal["s3Outage"]
    duration: Duration


class ApiErrors(_Event):
    """The API server fails matching requests with `status` for `duration` (every client sees it)."""

    action: Literal["apiErrors"]
    duration: Duration
    status: Annotated[int, Field(ge=400, le=599)] = 503
    resource: str | None = None
    verb: Literal["get", "list", "watch", "create", "update", "patch", "delete"] | None = None
    retry_after: Annotated[float, Field(ge=0)] | None = None


class Resume(_Event):
    """A human: `kubectl annotate aq NAME accelqual.io/resume=true`."""

    action: Literal["resume"]
    qualification: Name


class UpdateQualification(_Event):
    """A spec change (a merge patch of the spec)."""

    action: Literal["updateQualification"]
    qualification: Name
    spec: dict[str, Any]


class Relabel(_Event):
    """Change node labels (`null` removes one); `nodes` are node or group names."""

    action: Literal["label"]
    nodes: list[str] = Field(min_length=1)
    labels: dict[LabelKey, LabelValue | None]


class DeleteNodes(_Event):
    action: Literal["deleteNodes"]
    nodes: list[str] = Field(min_length=1)


class SetFaults(_Event):
    """The hardware changes: a card is repaired (`faults: []`), breaks, or the driver is upgraded."""

    action: Literal["setFaults"]
    nodes: list[str] = Field(min_length=1)
    faults: list[str]
    driver: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @field_validator("faults")
    @classmethod
    def _known_faults(cls, value: list[str]) -> list[str]:
        return _check_faults(value)


Event = Annotated[RestartOperator | S3Outage | ApiErrors | Resume | UpdateQualification | Relabel | DeleteNodes
                  | SetFaults, Field(discriminator="action")]


class TaintExpect(_Model):
    """Nodes carrying a taint at the end: exactly these (node or group names), and/or how many."""

    key: LabelKey
    nodes: list[str] | None = None
    count: Count | None = None


class ConditionExpect(_Model):
    qualification: Name
    type: Literal["Ready", "Progressing", "Degraded", "Halted"]
    status: Literal["True", "False"] | None = None
    reason: str | None = None
    message_contains: list[str] = []


class EventExpect(_Model):
    reason: str
    count: Count = Count(min=1)


class Expect(_Model):
    """The outcome the rehearsal must show; every item is checked and reported."""

    #: Final phase per Qualification.
    phases: dict[str, Phase] = {}
    #: Number of runs seen per Qualification.
    runs: dict[str, Count] = {}
    #: Nodes per verdict label at the end (`none`: no verdict label).
    verdicts: dict[Literal["pass", "fail", "inconclusive", "none"], Count] = {}
    tainted: list[TaintExpect] = []
    #: Nodes (or groups) never marked: no verdict label, no taint added or removed by the operator.
    untouched: list[str] = []
    conditions: list[ConditionExpect] = []
    events: list[EventExpect] = []
    #: Nodes reported skipped, summed over each Qualification's runs.
    skipped: dict[str, Count] = {}
    #: Probe pods under test at once (seen at the API server) never exceed each Qualification's maxConcurrent.
    max_concurrent_respected: bool = True
    #: Largest number of one Qualification's probe pods under test at once (pending or running): how far
    #: the operator fills its `maxConcurrent` budget.
    max_active: dict[str, Count] = {}
    #: Largest number of one Qualification's probes seen running at once. This also depends on when the
    #: simulated kubelet starts each pod: at a time scale of 600, a 15-minute probe lasts 1.5 s of real time.
    max_running: dict[str, Count] = {}
    #: Probe containers started in the whole rehearsal (no twins after a restart, no re-probing).
    probes_started: Count | None = None
    #: Exactly these nodes (or groups) are cordoned at the end.
    cordoned: list[str] | None = None


class Timing(_Model):
    #: Simulated wall-clock time when the scenario starts (UTC).
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC)
    #: Simulated time the scenario lasts at most (it ends earlier once nothing is left to happen).
    duration: Duration
    #: Simulated seconds per real second.
    time_scale: Annotated[float, Field(gt=0, le=5000)] = 600.0
    #: How long a modelled probe takes (simulated), and by how much that varies (fraction).
    probe_duration: Duration = 900.0
    probe_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.2
    #: Relative noise of modelled measurements (healthy cards differ this much).
    noise: Annotated[float, Field(ge=0, le=0.2)] = 0.01
    seed: int = 1

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start needs a timezone, e.g. 2026-03-02T00:00:00Z")
        return value.astimezone(UTC)


class Scenario(_Model):
    name: Name
    description: str = ""
    timing: Timing
    nodes: list[NodeGroup] = Field(min_length=1)
    qualifications: list[QualificationEntry] = Field(min_length=1)
    events: list[Event] = []
    expect: Expect | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        groups = [g.name for g in self.nodes]
        if len(set(groups)) != len(groups):
            raise ValueError("node group names must be unique")
        names = {n for g in self.nodes for n in g.node_names()}
        quals = [q.name for q in self.qualifications]
        if len(set(quals)) != len(quals):
            raise ValueError("qualification names must be unique")
        for i, event in enumerate(self.events):
            if isinstance(event, Resume | UpdateQualification) and event.qualification not in quals:
                raise ValueError(f"events[{i}]: no qualification named {event.qualification!r}")
            if isinstance(event, Relabel | DeleteNodes | SetFaults):
                unknown = [n for n in event.nodes if n not in names and n not in groups]
                if unknown:
                    raise ValueError(f"events[{i}]: no node or group named {unknown[0]!r}")
        if self.expect is not None:
            known = set(quals)
            for field_name in ("phases", "runs", "skipped", "max_active", "max_running"):
                for q in getattr(self.expect, field_name):
                    if q not in known:
                        raise ValueError(f"expect.{to_camel(field_name)}: no qualification named {q!r}")
            for c in self.expect.conditions:
                if c.qualification not in known:
                    raise ValueError(f"expect.conditions: no qualification named {c.qualification!r}")
            refs = [*self.expect.untouched, *(n for t in self.expect.tainted for n in t.nodes or []),
                    *(self.expect.cordoned or [])]
            unknown = [n for n in refs if n not in names and n not in groups]
            if unknown:
                raise ValueError(f"expect: no node or group named {unknown[0]!r}")
        return self

    def expand(self, refs: list[str]) -> list[str]:
        """Node names for a list of node and group names."""
        groups = {g.name: g for g in self.nodes}
        out: list[str] = []
        for ref in refs:
            out.extend(groups[ref].node_names() if ref in groups else [ref])
        return out


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; `ScenarioError` with a one-line message if it is not usable."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{where}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError(f"{where}: not valid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: a scenario is a mapping with name, timing, nodes and qualifications")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{where}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ""
    for part in first["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return f"{loc}: {message}{more}" if loc else f"{message}{more}"

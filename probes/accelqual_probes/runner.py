"""A probe run: validate the request, open the device, pick the profile, run the checks, build the report.

Everything that can be wrong with a request (unknown check ids, unknown or absent
device, malformed profile) is found before the first check runs and raised as one
`ProbeUsageError` line; from then on every outcome, crash or timeout included, ends in
a `ProbeReport` whose overall verdict comes from `schema.overall_verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from accelqual_probes import catalog, devices, lifecycle
from accelqual_probes.catalog import Suite
from accelqual_probes.devices.base import DeviceBackend, DeviceUnavailableError
from accelqual_probes.faults import FaultPlan
from accelqual_probes.profiles import CardProfileSpec, ProfileError
from accelqual_probes.registry import REGISTRY, CheckContext, CheckDef, CheckRegistry, RunSettings, Sizing
from accelqual_probes.schema import CheckResult, Inventory, ProbeReport, Verdict, overall_verdict
from accelqual_probes.selection import load_profile_argument, resolve_profile


class ProbeUsageError(ValueError):
    """The request cannot be run as asked; the message is one line for stderr (exit 2)."""


@dataclass(frozen=True)
class ProbeRequest:
    device: str = "auto"
    profile: str | None = None
    profile_json: str | None = None
    suite: Suite = Suite.STANDARD
    checks: list[str] | None = None
    skip_checks: list[str] | None = None
    faults: FaultPlan = field(default_factory=FaultPlan)
    timeout_scale: float = 1.0
    burnin_seconds: float = 60.0
    node: str | None = None
    expect_devices: int | None = None


class RunObserver(Protocol):
    """Progress display: told about the plan and every check as it starts and ends."""

    def run_started(self, profile: str, inventory: Inventory, check_ids: list[str]) -> None: ...

    def check_started(self, check_id: str) -> None: ...

    def check_finished(self, result: CheckResult) -> None: ...


@dataclass
class PreparedRun:
    """A validated request with its device open; `execute` runs it, `close` releases the device."""

    request: ProbeRequest
    registry: CheckRegistry
    check_ids: list[str]
    backend: DeviceBackend
    profile_name: str
    profile: CardProfileSpec
    inventory: Inventory
    settings: RunSettings
    plugin_errors: list[str]

    def close(self) -> None:
        self.backend.close()


def load_registry() -> tuple[CheckRegistry, list[str]]:
    """The default registry with the built-in checks and the installed plugins."""
    REGISTRY.load_builtins()
    errors = REGISTRY.load_entry_points()
    return REGISTRY, list(errors)


def select_checks(request: ProbeRequest, registry: CheckRegistry) -> list[str]:
    """The check ids to run, in order; unknown ids are a usage error."""
    asked = [*(request.checks or []), *(request.skip_checks or [])]
    unknown = catalog.unknown_ids(asked) + [
        i for i in asked if i.startswith(catalog.EXTENSION_PREFIX) and i not in registry]
    if unknown:
        raise ProbeUsageError(f"unknown check id(s): {', '.join(dict.fromkeys(unknown))} "
                              "(see --list-checks)")
    chosen = catalog.select(request.suite, request.checks, request.skip_checks)
    if not chosen:
        raise ProbeUsageError("no check left to run after --skip-checks")
    return chosen


def prepare(request: ProbeRequest) -> PreparedRun:
    """Validate the request and open the device; raises `ProbeUsageError` on any bad input."""
    if request.timeout_scale <= 0:
        raise ProbeUsageError("--timeout-scale must be positive")
    if request.burnin_seconds < 0:
        raise ProbeUsageError("--burnin-seconds must not be negative")
    registry, plugin_errors = load_registry()
    check_ids = select_checks(request, registry)
    try:
        chosen = load_profile_argument(request.profile, request.profile_json)
    except ProfileError as exc:
        raise ProbeUsageError(str(exc)) from None
    try:
        plain = devices.open_backend(request.device)
    except DeviceUnavailableError as exc:
        raise ProbeUsageError(f"device {request.device}: {exc}") from None
    try:
        # The node's expectation defaults to what was detected, before any injected fault.
        detected = plain.device_count()
        profile_name, profile = resolve_profile(chosen, plain.kind, plain.device_name(0) if detected else "")
        backend = devices.with_faults(plain, request.faults)
        inventory = backend.inventory()
    except ProfileError as exc:
        plain.close()
        raise ProbeUsageError(str(exc)) from None
    settings = RunSettings(expect_devices=request.expect_devices if request.expect_devices is not None else detected,
                           burnin_seconds=request.burnin_seconds, node=request.node)
    return PreparedRun(request, registry, check_ids, backend, profile_name, profile, inventory, settings,
                       plugin_errors)


def execute(run: PreparedRun, observer: RunObserver | None = None) -> ProbeReport:
    """Run every selected check through its lifecycle and build the report."""
    request = run.request
    started = datetime.now(UTC)
    if observer is not None:
        observer.run_started(run.profile_name, run.inventory, run.check_ids)
    sizing = Sizing(device_kind=run.backend.kind, accelerator=run.backend.accelerator, suite=request.suite,
                    burnin_seconds=request.burnin_seconds)
    results: list[CheckResult] = []
    for check_id in run.check_ids:
        definition = run.registry.get(check_id)
        if observer is not None:
            observer.check_started(check_id)
        result = _run_one(run, definition, check_id, sizing) if definition is not None else _missing(check_id)
        results.append(result)
        if observer is not None:
            observer.check_finished(result)
    finished = datetime.now(UTC)
    verdict, reason = overall_verdict(results)
    return ProbeReport(
        node=request.node, profile=run.profile_name, suite=request.suite.value, verdict=verdict, reason=reason[:1024],
        started_at=started, finished_at=finished, duration_seconds=(finished - started).total_seconds(),
        inventory=run.inventory, checks=results, injected_faults=request.faults.labels()[:32],
    )


def _run_one(run: PreparedRun, definition: CheckDef, check_id: str, sizing: Sizing) -> CheckResult:
    ctx = CheckContext(check_id=check_id, spec=definition.catalog_spec(), device=run.backend,
                       profile_name=run.profile_name, profile=run.profile, suite=run.request.suite,
                       inventory=run.inventory, settings=run.settings)
    timeout = definition.timeout(run.request.burnin_seconds, run.request.timeout_scale)
    return lifecycle.run_check(definition, ctx, sizing, timeout)


def _missing(check_id: str) -> CheckResult:
    """A catalog check without an implementation is an error (never silently absent)."""
    spec = catalog.BY_ID[check_id]
    return CheckResult(id=check_id, category=spec.category, verdict=Verdict.ERROR,
                       reason="no implementation of this check is registered")


def run_probe(request: ProbeRequest, observer: RunObserver | None = None) -> ProbeReport:
    """Prepare, execute and close: one probe run."""
    run = prepare(request)
    try:
        return execute(run, observer)
    finally:
        run.close()

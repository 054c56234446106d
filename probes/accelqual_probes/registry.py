"""The check registry: one instance, filled by the `@check` decorator.

Built-in checks are registered by importing the modules `builtin` lists; third-party
checks arrive through the `accelqual.checks` entry-point group and must use ids
beginning with `ext.` (catalog.EXTENSION_PREFIX), so a plugin can neither shadow a
built-in nor be mistaken for one. Every check declares a typed pydantic params model;
the context it runs with (`CheckContext`) carries the device, profile and settings.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict

from accelqual_probes import catalog
from accelqual_probes.catalog import CheckSpec, Suite
from accelqual_probes.devices.base import DeviceBackend
from accelqual_probes.evidence import CheckCancelledError, Evidence
from accelqual_probes.profiles import CardProfileSpec
from accelqual_probes.schema import CHECK_ID_PATTERN, Category, Inventory, Threshold
from accelqual_probes.thresholds import ThresholdRule, warn_floor

ENTRY_POINT_GROUP = "accelqual.checks"
DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Sizing:
    """What a check's parameters may depend on: where it runs and how long it may take."""

    device_kind: str
    accelerator: bool
    suite: Suite
    burnin_seconds: float = 60.0

    @property
    def quick(self) -> bool:
        return self.suite is Suite.QUICK


class CheckParams(BaseModel):
    """Base of every check's parameters: typed, validated, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def for_run(cls, sizing: Sizing) -> Self:
        """Parameters for this device and suite; checks override to size their work."""
        return cls()


@dataclass(frozen=True)
class RunSettings:
    """Run-wide settings a check may consult."""

    expect_devices: int
    burnin_seconds: float = 60.0
    node: str | None = None


@dataclass
class CheckContext:
    """Everything a check sees while it runs."""

    check_id: str
    spec: CheckSpec
    device: DeviceBackend
    profile_name: str
    profile: CardProfileSpec
    suite: Suite
    inventory: Inventory
    settings: RunSettings
    cancelled: threading.Event = field(default_factory=threading.Event)

    def checkpoint(self) -> None:
        """Long loops call this: a check that overran its timeout stops at the next call."""
        if self.cancelled.is_set():
            raise CheckCancelledError(self.check_id)

    @property
    def devices(self) -> list[int]:
        return self.device.devices()

    @property
    def relative(self) -> bool:
        """Whether performance limits refer to in-run reference measurements (cpu-reference)."""
        return self.profile.relative_to_reference

    def rule(self) -> ThresholdRule:
        return self.profile.rule(self.check_id)

    def threshold(self, basis: float | None = None, basis_name: str = "") -> Threshold:
        """The profile's threshold for this check's primary metric (nominal basis unless given)."""
        return self.profile.threshold(self.check_id, basis, basis_name)

    def warn_below(self, basis: float | None = None) -> float | None:
        if basis is None:
            basis, _ = self.profile.basis(self.spec)
        return warn_floor(self.rule(), basis)


P = TypeVar("P", bound=CheckParams)
CheckFunction = Callable[[CheckContext, P], Evidence]


@dataclass(frozen=True)
class CheckDef:
    """A registered check: its id, category, params model, run function and timeout."""

    id: str
    category: Category
    params: type[CheckParams]
    run: Callable[[CheckContext, Any], Evidence]
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: Extra seconds the timeout grows by per second of `burnin_seconds` (burn-in checks).
    timeout_per_burnin_s: float = 0.0
    #: Whether the check needs at least one visible device (inventory-like checks do not).
    needs_device: bool = True
    source: str = "builtin"
    spec: CheckSpec | None = None

    def timeout(self, burnin_seconds: float, scale: float) -> float:
        return (self.timeout_s + self.timeout_per_burnin_s * burnin_seconds) * scale

    def catalog_spec(self) -> CheckSpec:
        """The catalog entry, or one synthesised for an extension check."""
        if self.spec is not None:
            return self.spec
        return catalog.BY_ID.get(self.id) or CheckSpec(self.id, self.category, self.id, "extension check")


class RegistryError(ValueError):
    """A check could not be registered (bad id, duplicate, missing category); one line."""


class CheckRegistry:
    """Checks by id. The module-level `REGISTRY` is the one the runner uses."""

    def __init__(self) -> None:
        self._defs: dict[str, CheckDef] = {}
        self._source = "builtin"
        self._builtins_loaded = False
        self._entry_points_loaded = False
        self.plugin_errors: list[str] = []
        self._lock = threading.RLock()

    def check(self, check_id: str, *, params: type[P], category: Category | None = None,
              timeout_s: float = DEFAULT_TIMEOUT_S, timeout_per_burnin_s: float = 0.0,
              needs_device: bool = True) -> Callable[[CheckFunction[P]], CheckFunction[P]]:
        """Decorator: register `fn(ctx, params) -> Evidence` as the check `check_id`."""

        def register(fn: CheckFunction[P]) -> CheckFunction[P]:
            spec = catalog.BY_ID.get(check_id)
            resolved = category or (spec.category if spec else None)
            if resolved is None:
                raise RegistryError(f"check {check_id!r} is not in the catalog and declares no category")
            self.add(CheckDef(id=check_id, category=resolved, params=params, run=fn, timeout_s=timeout_s,
                              timeout_per_burnin_s=timeout_per_burnin_s, needs_device=needs_device,
                              source=self._source))
            return fn

        return register

    def add(self, definition: CheckDef) -> None:
        with self._lock:
            check_id = definition.id
            if not re.match(CHECK_ID_PATTERN, check_id) or len(check_id) > 64:
                raise RegistryError(f"check id {check_id!r} is not a valid id")
            if self._source != "builtin" and not check_id.startswith(catalog.EXTENSION_PREFIX):
                raise RegistryError(f"plugin {self._source!r}: check id {check_id!r} must start with "
                                    f"{catalog.EXTENSION_PREFIX!r}")
            if self._source == "builtin" and check_id not in catalog.BY_ID \
                    and not check_id.startswith(catalog.EXTENSION_PREFIX):
                raise RegistryError(f"built-in check {check_id!r} has no catalog entry")
            if check_id in self._defs:
                raise RegistryError(f"check {check_id!r} is registered twice ({self._defs[check_id].source} "
                                    f"and {definition.source})")
            spec = catalog.BY_ID.get(check_id)
            if spec is not None and spec.category is not definition.category:
                raise RegistryError(f"check {check_id!r} is {spec.category.value} in the catalog, "
                                    f"not {definition.category.value}")
            self._defs[check_id] = definition

    def get(self, check_id: str) -> CheckDef | None:
        return self._defs.get(check_id)

    def __contains__(self, check_id: object) -> bool:
        return check_id in self._defs

    def __iter__(self) -> Iterator[CheckDef]:
        return iter(list(self._defs.values()))

    def ids(self) -> list[str]:
        return list(self._defs)

    def load_builtins(self) -> None:
        """Import the built-in check modules (listed explicitly in `accelqual_probes.builtin`)."""
        with self._lock:
            if self._builtins_loaded:
                return
            self._builtins_loaded = True
        importlib.import_module("accelqual_probes.builtin")

    def load_entry_points(self) -> list[str]:
        """Load third-party checks of the `accelqual.checks` group; returns one line per failure.

        An entry point may name a module (its `@check` decorators register on import) or a
        callable taking the registry. A broken plugin is reported, not fatal: its checks
        are then unknown ids, and asking for them is an error.
        """
        with self._lock:
            if self._entry_points_loaded:
                return self.plugin_errors
            self._entry_points_loaded = True
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            with self._lock:
                self._source = entry_point.name
                try:
                    loaded = entry_point.load()
                    if callable(loaded) and not isinstance(loaded, ModuleType):
                        loaded(self)
                except Exception as exc:
                    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    self.plugin_errors.append(f"check plugin {entry_point.name!r} ({entry_point.value}): {first}")
                finally:
                    self._source = "builtin"
        return self.plugin_errors


REGISTRY = CheckRegistry()
#: `@check("perf.gemm.bf16", params=GemmParams)`: register on the default registry.
check = REGISTRY.check

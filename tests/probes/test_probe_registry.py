"""The check registry and the check lifecycle: registration rules, skip/error/timeout mapping, plugins."""

from __future__ import annotations

import importlib
import textwrap
import threading
import time
from pathlib import Path

import pytest
from accelqual_probes import builtin, catalog, lifecycle
from accelqual_probes.catalog import Suite
from accelqual_probes.devices.cpu import CpuBackend
from accelqual_probes.evidence import Evidence, NotApplicableError
from accelqual_probes.profiles import BUILTIN
from accelqual_probes.registry import (
    REGISTRY,
    CheckContext,
    CheckDef,
    CheckParams,
    CheckRegistry,
    RegistryError,
    RunSettings,
    Sizing,
)
from accelqual_probes.schema import Category, CheckResult, Verdict

from tests.probes.probe_helpers import RunCli

SIZING = Sizing(device_kind="cpu", accelerator=False, suite=Suite.QUICK)


class LevelParams(CheckParams):
    level: int = 3


def context(check_id: str, definition: CheckDef) -> CheckContext:
    backend = CpuBackend()
    return CheckContext(check_id=check_id, spec=definition.catalog_spec(), device=backend,
                        profile_name="cpu-reference", profile=BUILTIN["cpu-reference"], suite=Suite.QUICK,
                        inventory=backend.inventory(), settings=RunSettings(expect_devices=1))


def run(definition: CheckDef, timeout: float = 10.0) -> tuple[CheckContext, CheckResult]:
    ctx = context(definition.id, definition)
    return ctx, lifecycle.run_check(definition, ctx, SIZING, timeout)


def test_every_catalog_check_has_a_builtin_implementation() -> None:
    REGISTRY.load_builtins()
    assert sorted(REGISTRY.ids()) == sorted(catalog.BY_ID)
    assert {d.source for d in REGISTRY if d.id in catalog.BY_ID} == {"builtin"}


def test_builtin_module_lists_every_check_module() -> None:
    listed = {m.__name__.rsplit(".", 1)[-1] for m in builtin.MODULES}
    folder = Path(builtin.__file__).parent / "checks"
    with_checks = {p.stem for p in folder.glob("*.py") if "@check(" in p.read_text()}
    assert listed == with_checks


def test_decorator_registers_typed_check_with_catalog_category() -> None:
    registry = CheckRegistry()

    @registry.check("ext.demo.level", params=LevelParams, category=Category.FUNCTION, timeout_s=5)
    def level(ctx: CheckContext, params: LevelParams) -> Evidence:
        evidence = Evidence()
        evidence.measure("level", params.level)
        evidence.finding(Verdict.PASS, "ok")
        return evidence

    definition = registry.get("ext.demo.level")
    assert definition is not None
    assert definition.params is LevelParams and definition.timeout_s == 5
    assert definition.category is Category.FUNCTION


def test_registry_rejects_bad_ids_duplicates_and_missing_categories() -> None:
    registry = CheckRegistry()

    def noop(ctx: CheckContext, params: CheckParams) -> Evidence:
        return Evidence()

    registry.check("ext.demo.once", params=CheckParams, category=Category.GENERAL)(noop)
    with pytest.raises(RegistryError, match="registered twice"):
        registry.check("ext.demo.once", params=CheckParams, category=Category.GENERAL)(noop)
    with pytest.raises(RegistryError, match="no catalog entry"):
        registry.check("made.up", params=CheckParams, category=Category.GENERAL)(noop)
    with pytest.raises(RegistryError, match="declares no category"):
        registry.check("ext.demo.nocat", params=CheckParams)(noop)
    with pytest.raises(RegistryError, match="not a valid id"):
        registry.check("ext.Bad Id", params=CheckParams, category=Category.GENERAL)(noop)
    with pytest.raises(RegistryError, match="performance in the catalog"):
        registry.check("perf.launch", params=CheckParams, category=Category.GENERAL)(noop)


def _definition(check_id: str, fn: object, params: type[CheckParams] = CheckParams) -> CheckDef:
    return CheckDef(id=check_id, category=Category.RELIABILITY, params=params, run=fn)  # type: ignore[arg-type]


def test_check_that_does_not_apply_is_skipped_with_its_reason() -> None:
    def not_here(ctx: CheckContext, params: CheckParams) -> Evidence:
        raise NotApplicableError("no such unit on this device")

    _, result = run(_definition("ext.demo.skip", not_here))
    assert result.verdict is Verdict.SKIP
    assert result.reason == "no such unit on this device"


def test_accelerator_only_check_is_skipped_on_cpu() -> None:
    definition = REGISTRY.get("rel.ecc")
    assert definition is not None
    _, result = run(definition)
    assert result.verdict is Verdict.SKIP
    assert "needs an accelerator" in result.reason


def test_crashing_check_is_an_error_naming_the_exception() -> None:
    def crash(ctx: CheckContext, params: CheckParams) -> Evidence:
        raise ZeroDivisionError("division by zero in the kernel")

    _, result = run(_definition("ext.demo.crash", crash))
    assert result.verdict is Verdict.ERROR
    assert "ZeroDivisionError" in result.reason and "division by zero" in result.reason


def test_check_without_findings_is_an_error_not_a_pass() -> None:
    def silent(ctx: CheckContext, params: CheckParams) -> Evidence:
        evidence = Evidence()
        evidence.note("measured nothing")
        return evidence

    _, result = run(_definition("ext.demo.silent", silent))
    assert result.verdict is Verdict.ERROR
    assert "no verdict" in result.reason


def test_hung_check_times_out_as_error_and_is_abandoned() -> None:
    release = threading.Event()

    def hang(ctx: CheckContext, params: CheckParams) -> Evidence:
        release.wait()
        return Evidence()

    started = time.perf_counter()
    ctx, result = run(_definition("ext.demo.hang", hang), timeout=0.3)
    elapsed = time.perf_counter() - started
    try:
        assert result.verdict is Verdict.ERROR
        assert "timed out" in result.reason
        assert 0.3 <= elapsed < 2.0
        assert ctx.cancelled.is_set()
        assert any(t.name == "check:ext.demo.hang" for t in lifecycle.abandoned_threads())
    finally:
        release.set()


def test_overrunning_check_stops_at_its_next_checkpoint() -> None:
    stopped = threading.Event()

    def spin(ctx: CheckContext, params: CheckParams) -> Evidence:
        try:
            while True:
                ctx.checkpoint()
                time.sleep(0.01)
        finally:
            stopped.set()

    _, result = run(_definition("ext.demo.spin", spin), timeout=0.2)
    assert result.verdict is Verdict.ERROR
    assert stopped.wait(2.0), "the cancelled check kept running"


def test_invalid_parameters_are_an_error() -> None:
    class Strict(CheckParams):
        count: int = 1

        @classmethod
        def for_run(cls, sizing: Sizing) -> Strict:
            return cls.model_validate({"count": "many"})

    def never(ctx: CheckContext, params: Strict) -> Evidence:
        raise AssertionError("must not run")

    _, result = run(_definition("ext.demo.params", never, Strict))
    assert result.verdict is Verdict.ERROR
    assert "invalid parameters" in result.reason


PLUGIN = textwrap.dedent('''
    from accelqual_probes.evidence import Evidence
    from accelqual_probes.registry import CheckParams
    from accelqual_probes.schema import Category, CheckResult, Verdict


    class LevelParams(CheckParams):
        level: int = 7


    def level(ctx, params):
        evidence = Evidence()
        evidence.measure("level", params.level, "", 0)
        evidence.finding(Verdict.PASS, f"level {params.level}")
        return evidence


    def register(registry):
        registry.check("ext.fake.level", params=LevelParams, category=Category.FUNCTION)(level)


    def register_unprefixed(registry):
        registry.check("fake.level", params=LevelParams, category=Category.FUNCTION)(level)
''')


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution `accelqual-fake-plugin` declaring three `accelqual.checks` entry points."""
    (tmp_path / "accelqual_fake_plugin.py").write_text(PLUGIN)
    info = tmp_path / "accelqual_fake_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: accelqual-fake-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[accelqual.checks]\n"
        "fake = accelqual_fake_plugin:register\n"
        "unprefixed = accelqual_fake_plugin:register_unprefixed\n"
        "broken = accelqual_fake_plugin_missing:register\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def test_entry_point_plugins_register_ext_checks_and_bad_ones_are_reported(fake_distribution: Path) -> None:
    registry = CheckRegistry()
    errors = registry.load_entry_points()
    assert "ext.fake.level" in registry
    assert registry.get("ext.fake.level").source == "fake"  # type: ignore[union-attr]
    assert "fake.level" not in registry
    assert any("unprefixed" in e and "must start with 'ext.'" in e for e in errors)
    assert any("broken" in e and "accelqual_fake_plugin_missing" in e for e in errors)


def test_plugin_check_runs_through_the_cli(fake_distribution: Path, monkeypatch: pytest.MonkeyPatch,
                                           run_cli: RunCli) -> None:
    # A private copy of the default registry, so the plugin does not outlive the test.
    REGISTRY.load_builtins()
    monkeypatch.setattr(REGISTRY, "_defs", dict(REGISTRY._defs))
    monkeypatch.setattr(REGISTRY, "_entry_points_loaded", False)
    monkeypatch.setattr(REGISTRY, "plugin_errors", [])
    result = run_cli("--device", "cpu", "--checks", "gen.inventory,ext.fake.level")
    assert result.code == 0, result.stderr
    check = result.check("ext.fake.level")
    assert check.verdict is Verdict.PASS and check.category is Category.FUNCTION
    assert check.measurements[0].values == [7]
    assert "check plugin 'broken'" in result.stderr

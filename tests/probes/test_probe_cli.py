"""The `accelqual probe` command line: exit codes, one-line errors, output placement, profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from accelqual_probes import catalog
from accelqual_probes.schema import ProbeReport, Verdict

from tests.probes.probe_helpers import RunCli


def assert_one_line_error(stderr: str, *words: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {stderr!r}"
    assert lines[0].startswith("accelqual probe: error: ")
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


@pytest.mark.parametrize(("args", "words"), [
    (["--checks", "perf.gemm.fp33"], ["unknown check id", "perf.gemm.fp33"]),
    (["--skip-checks", "gen.nothing"], ["unknown check id", "gen.nothing"]),
    (["--checks", "ext.not.installed"], ["unknown check id", "ext.not.installed"]),
    (["--device", "tpu"], ["--device", "tpu"]),
    (["--device", "cuda"], ["device cuda"]),
    (["--device", "npu"], ["device npu"]),
    (["--inject", "slow-compute=3"], ["--inject", "slow-compute=3"]),
    (["--inject", "warp-drive"], ["--inject", "unknown fault"]),
    (["--suite", "huge"], ["--suite"]),
    (["--timeout-scale", "-1"], ["--timeout-scale"]),
    (["--burnin-seconds", "soon"], ["--burnin-seconds"]),
    (["--profile", "h100-sxm"], ["h100-sxm is for cuda devices", "on cpu"]),
    (["--profile", "no-such-card"], ["unknown profile 'no-such-card'", "cpu-reference"]),
    (["--unknown-flag"], ["unrecognized arguments"]),
])
def test_bad_requests_exit_2_with_one_line(run_cli: RunCli, args: list[str], words: list[str]) -> None:
    defaults = [*([] if "--device" in args else ["--device", "cpu"]),
                *([] if "--checks" in args else ["--checks", "compat.stack"])]
    result = run_cli(*defaults, *args, with_json=False)
    assert result.code == 2
    assert_one_line_error(result.stderr, *words)
    assert result.stdout == ""


@pytest.mark.parametrize(("content", "words"), [
    ("name: [unclosed", ["is not valid YAML"]),
    ("- just\n- a list\n", ["is not a mapping"]),
    ("name: Bad_Name\nspec: {displayName: x, vendor: y, deviceType: cpu}\n", ["invalid at name"]),
    ("name: lab-cpu\nspec: {displayName: x, vendor: y, deviceType: cpu, memoryGB: -4}\n", ["invalid at spec.memoryGB"]),
    ("name: lab-cpu\nspec: {displayName: x, vendor: y, deviceType: cpu,\n"
     "  thresholds: {perf.launch: {max: 1, maxi: 2}}}\n", ["invalid at spec.thresholds"]),
])
def test_malformed_profile_files_exit_2(run_cli: RunCli, tmp_path: Path, content: str, words: list[str]) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(content)
    result = run_cli("--device", "cpu", "--checks", "compat.stack", "--profile", str(path), with_json=False)
    assert result.code == 2
    assert_one_line_error(result.stderr, str(path), *words)


def test_missing_profile_file_exits_2(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("--device", "cpu", "--profile", str(tmp_path / "nope.yaml"), with_json=False)
    assert result.code == 2
    assert_one_line_error(result.stderr, "cannot read profile")


def test_profile_file_in_cardprofile_form_is_used(run_cli: RunCli, tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("apiVersion: accelqual.io/v1alpha1\nkind: CardProfile\nmetadata: {name: lab-cpu}\n"
                    "spec:\n  displayName: Lab CPU\n  vendor: any\n  deviceType: cpu\n  relativeToReference: true\n"
                    "  thresholds:\n    perf.launch: {max: 0.001}\n")
    result = run_cli("--device", "cpu", "--checks", "perf.launch", "--profile", str(path))
    assert result.code == 1
    assert result.report is not None and result.report.profile == "lab-cpu"
    assert result.check("perf.launch").thresholds[0].max == 0.001


def test_profile_json_from_the_environment_is_used(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {"displayName": "Pod CPU", "vendor": "any", "deviceType": "cpu", "relativeToReference": True,
            "stack": {"minFramework": "99.0"}}
    monkeypatch.setenv("ACCELQUAL_PROFILE_JSON", json.dumps({"name": "pod-cpu", "spec": spec}))
    result = run_cli("--device", "cpu", "--checks", "compat.stack")
    assert result.code == 1
    assert result.report is not None and result.report.profile == "pod-cpu"
    assert "older than the required 99.0" in result.check("compat.stack").reason


@pytest.mark.parametrize(("raw", "words"), [
    ("{not json", ["ACCELQUAL_PROFILE_JSON is not valid JSON"]),
    ("[1, 2]", ["ACCELQUAL_PROFILE_JSON is not a JSON object"]),
    ('{"name": "x", "spec": {"vendor": "v", "deviceType": "cpu"}}', ["invalid at spec.displayName"]),
])
def test_bad_profile_json_exits_2(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, raw: str, words: list[str]) -> None:
    monkeypatch.setenv("ACCELQUAL_PROFILE_JSON", raw)
    result = run_cli("--device", "cpu", "--checks", "compat.stack", with_json=False)
    assert result.code == 2
    assert_one_line_error(result.stderr, *words)


def _profile_json(name: str, **spec: object) -> str:
    base: dict[str, object] = {"displayName": "Pod CPU", "vendor": "any", "deviceType": "cpu",
                               "relativeToReference": True}
    return json.dumps({"name": name, "spec": {**base, **spec}})


def test_operator_form_profile_name_plus_its_json_uses_the_json(run_cli: RunCli,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # How the operator passes a custom CardProfile: --profile NAME and the JSON of NAME.
    monkeypatch.setenv("ACCELQUAL_PROFILE_JSON", _profile_json("lab-cpu", thresholds={"perf.launch": {"max": 1e-6}}))
    result = run_cli("--device", "cpu", "--checks", "perf.launch", "--profile", "lab-cpu")
    assert result.code == 1
    assert result.report is not None and result.report.profile == "lab-cpu"


def test_custom_profile_may_override_a_builtin_of_the_same_name(run_cli: RunCli,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELQUAL_PROFILE_JSON",
                       _profile_json("cpu-reference", thresholds={"perf.launch": {"max": 1e-6}}))
    result = run_cli("--device", "cpu", "--checks", "perf.launch", "--profile", "cpu-reference")
    assert result.code == 1
    assert result.check("perf.launch").thresholds[0].max == 1e-6


def test_explicit_other_profile_wins_over_the_environment(run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELQUAL_PROFILE_JSON", _profile_json("lab-cpu", thresholds={"perf.launch": {"max": 1e-6}}))
    result = run_cli("--device", "cpu", "--checks", "perf.launch", "--profile", "cpu-reference")
    assert result.code == 0
    assert result.report is not None and result.report.profile == "cpu-reference"


def test_bad_expected_device_count_in_the_environment_exits_2(run_cli: RunCli,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELQUAL_EXPECT_DEVICES", "eight")
    result = run_cli("--device", "cpu", "--checks", "gen.inventory", with_json=False)
    assert result.code == 2
    assert_one_line_error(result.stderr, "ACCELQUAL_EXPECT_DEVICES")


def test_exit_codes_follow_the_verdict(run_cli: RunCli) -> None:
    assert run_cli("--device", "cpu", "--checks", "compat.stack,gen.inventory").code == 0
    assert run_cli("--device", "cpu", "--checks", "gen.inventory", "--expect-devices", "4").code == 1
    # Nothing but skipped checks is no evidence: inconclusive.
    inconclusive = run_cli("--device", "cpu", "--checks", "rel.ecc,perf.allreduce")
    assert inconclusive.code == 2
    assert inconclusive.report is not None and inconclusive.report.reason == "no check produced evidence"


def test_auto_device_and_profile_pick_the_cpu_reference_here(run_cli: RunCli) -> None:
    result = run_cli("--checks", "gen.inventory")
    assert result.code == 0
    assert result.report is not None
    assert result.report.inventory.device_type == "cpu" and result.report.profile == "cpu-reference"
    assert result.report.inventory.count == 1 and result.report.inventory.devices[0].memory_bytes > 0


def test_json_to_stdout_moves_the_display_to_stderr(run_cli: RunCli) -> None:
    result = run_cli("--device", "cpu", "--checks", "compat.stack", "--json", "-")
    assert result.code == 0
    report = ProbeReport.parse_untrusted(result.stdout)
    assert report.checks[0].id == "compat.stack"
    assert "verdict" in result.stderr and "compat.stack" in result.stderr


def test_terminal_output_shows_a_result_table(run_cli: RunCli) -> None:
    result = run_cli("--device", "cpu", "--checks", "compat.stack,gen.inventory")
    assert "compat.stack" in result.stdout and "gen.inventory" in result.stdout
    assert "verdict pass" in result.stdout


def test_unwritable_json_path_is_inconclusive(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("--device", "cpu", "--checks", "compat.stack", "--json", str(tmp_path / "no" / "dir.json"))
    assert result.code == 2
    assert "cannot write" in result.stderr


def test_list_checks_names_every_registered_check(run_cli: RunCli) -> None:
    result = run_cli("--list-checks", with_json=False)
    assert result.code == 0
    listed = {line.split()[0] for line in result.stdout.splitlines()}
    assert listed == {c.id for c in catalog.CHECKS}


def test_help_exits_0(run_cli: RunCli) -> None:
    result = run_cli("--help", with_json=False)
    assert result.code == 0
    assert "--inject" in result.stdout and "slow-compute=F" in result.stdout


def test_skip_checks_removes_checks_from_the_suite(run_cli: RunCli) -> None:
    skipped = [i for i in catalog.suite_checks(catalog.Suite.QUICK) if i != "compat.stack"]
    result = run_cli("--device", "cpu", "--suite", "quick", "--skip-checks", ",".join(skipped))
    assert result.report is not None and [c.id for c in result.report.checks] == ["compat.stack"]
    assert result.check("compat.stack").verdict is Verdict.PASS


def test_the_accelqual_console_script_dispatches_to_the_probe(capsys: pytest.CaptureFixture[str]) -> None:
    from accelqual.cli import main as accelqual_main

    assert accelqual_main(["probe", "--device", "cpu", "--checks", "compat.stack", "--json", "-"]) == 0
    assert ProbeReport.parse_untrusted(capsys.readouterr().out).checks[0].verdict is Verdict.PASS

"""Profile selection (`--profile NAME|auto|PATH`, ACCELQUAL_PROFILE_JSON) and loading errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from accelqual_probes.profiles import BUILTIN, NamedProfile, ProfileError
from accelqual_probes.selection import load_profile_argument, parse_profile_json, resolve_profile


def test_auto_on_a_cpu_falls_back_to_the_cpu_reference() -> None:
    assert resolve_profile(None, "cpu", "AMD EPYC 7B13") == ("cpu-reference", BUILTIN["cpu-reference"])


@pytest.mark.parametrize(("device_name", "profile"), [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"),
    ("NVIDIA A100-SXM4-80GB", "a100-80gb-sxm"),
    ("NVIDIA H200", "h200-sxm"),
    ("AMD Instinct MI300X", "mi300x"),
])
def test_auto_picks_the_builtin_profile_matching_the_device(device_name: str, profile: str) -> None:
    assert resolve_profile(None, "cuda", device_name)[0] == profile


def test_auto_on_an_unknown_accelerator_is_an_error() -> None:
    with pytest.raises(ProfileError, match="no built-in profile matches cuda device 'NVIDIA L4'"):
        resolve_profile(None, "cuda", "NVIDIA L4")


def test_chosen_profile_must_be_for_the_device_kind() -> None:
    chosen = NamedProfile(name="h100-sxm", spec=BUILTIN["h100-sxm"])
    with pytest.raises(ProfileError, match="for cuda devices, but this run is on cpu"):
        resolve_profile(chosen, "cpu", "AMD EPYC")


def test_argument_forms(tmp_path: Path) -> None:
    assert load_profile_argument(None, None) is None
    assert load_profile_argument("auto", None) is None
    named = load_profile_argument("mi300x", None)
    assert named is not None and named.name == "mi300x"
    path = tmp_path / "p.json"
    path.write_text('{"name": "lab", "spec": {"displayName": "Lab", "vendor": "v", "deviceType": "cpu"}}')
    loaded = load_profile_argument(str(path), '{"ignored": true}')  # a file wins over the environment
    assert loaded is not None and loaded.name == "lab"
    from_env = load_profile_argument("auto", '{"name": "envp", "spec": {"displayName": "E", "vendor": "v", '
                                             '"deviceType": "cpu"}}')
    assert from_env is not None and from_env.name == "envp"


def test_profile_json_rejects_unknown_fields_precisely() -> None:
    with pytest.raises(ProfileError, match=re.escape("invalid at spec.peakTflops.fp4")):
        parse_profile_json('{"name": "x", "spec": {"displayName": "x", "vendor": "v", "deviceType": "cuda", '
                           '"peakTflops": {"fp4": 1}}}')

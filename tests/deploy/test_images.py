"""The Dockerfiles in images/: hadolint-clean, the project's rules, and the command line pods run.

No image is built here (no Docker engine on these machines). What can be checked without one:
hadolint (from .tools/bin) finds nothing; every image ends as the non-root user probe pods
run as; the ENTRYPOINT is exactly the program the operator's pods and the chart pass
arguments to, and those arguments parse with that program's own argparse; the pins in the
Dockerfiles and images/requirements-probe.txt are pyproject.toml's; and `accelqual probe`
runs with nothing but those requirements (the operator's dependencies blocked).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from accelqual.models import QualificationSpec
from accelqual.operator_main import parse as parse_operator_args
from accelqual.planning.podspec import PROBE_ENTRYPOINT, PROBE_UID, ProbeTarget, build_probe_pod
from accelqual_probes.cli import build_parser

from tests.deploy.manifests import NAMESPACE, ROOT, helm_template, one

IMAGES = ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*.Dockerfile"))
PROBE_DOCKERFILES = [p for p in DOCKERFILES if p.name.startswith("probe-")]
OPERATOR_DOCKERFILE = IMAGES / "operator.Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: What the operator needs and the probe must not: blocked when the probe CLI runs below.
OPERATOR_ONLY_MODULES = ("kopf", "kubernetes", "boto3", "botocore", "s3transfer", "prometheus_client", "croniter",
                         "aiohttp", "kmock", "moto", "jsonschema", "plotly")


@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    """The instructions of a Dockerfile by stage (continuation lines joined, comments dropped)."""

    args: dict[str, str]  # ARGs before the first FROM, with their defaults
    stages: list[Stage]

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
        args: dict[str, str] = {}
        stages: list[Stage] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            word, rest = word.upper(), " ".join(rest.split())
            if word == "FROM":
                stages.append(Stage(rest.split()[0]))
            elif not stages and word == "ARG":
                name, _, default = rest.partition("=")
                args[name] = default
            elif stages:
                stages[-1].instructions.append((word, rest))
        return cls(args, stages)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def last(self, word: str) -> str:
        return [rest for w, rest in self.final.instructions if w == word][-1]

    def all(self, word: str) -> list[str]:
        return [rest for w, rest in self.final.instructions if w == word]

    def stage_arg(self, name: str) -> str:
        return next(rest.partition("=")[2] for w, rest in self.final.instructions
                    if w == "ARG" and rest.partition("=")[0] == name)

    def base_image(self) -> str:
        base = self.final.base
        match = re.fullmatch(r"\$\{(\w+)\}", base)
        return self.args[match.group(1)] if match else base


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for requirement in requirements:
        name, _, version = requirement.partition("==")
        pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


PYPROJECT_PINS = _pins([*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["probe"]])
PROBE_REQUIREMENTS = [line.strip() for line in (IMAGES / "requirements-probe.txt").read_text().splitlines()
                      if line.strip() and not line.startswith("#")]


def test_there_is_an_operator_image_and_a_probe_image_per_stack() -> None:
    assert {p.name for p in DOCKERFILES} == {"operator.Dockerfile", "probe-cpu.Dockerfile", "probe-cuda.Dockerfile",
                                             "probe-rocm.Dockerfile", "probe-ascend.Dockerfile"}


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(hadolint: Path, path: Path) -> None:
    done = subprocess.run([str(hadolint), "--no-color", "--failure-threshold", "style", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)

    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_image_runs_as_the_non_root_probe_user_with_a_pinned_base(path: Path) -> None:
    dockerfile = Dockerfile.parse(path)

    assert dockerfile.last("USER") == f"{PROBE_UID}:{PROBE_UID}"
    assert any(f"useradd --uid {PROBE_UID} --gid {PROBE_UID}" in run for run in dockerfile.all("RUN"))
    for stage in dockerfile.stages:
        image = stage.base
        match = re.fullmatch(r"\$\{(\w+)\}", image)
        image = dockerfile.args[match.group(1)] if match else image
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{image}: name an explicit tag"
        assert not image.endswith(":latest")


@pytest.mark.parametrize("path", PROBE_DOCKERFILES, ids=lambda p: p.name)
def test_probe_image_entrypoint_is_the_program_pods_pass_arguments_to(path: Path) -> None:
    dockerfile = Dockerfile.parse(path)

    assert json.loads(dockerfile.last("ENTRYPOINT")) == list(PROBE_ENTRYPOINT)
    assert dockerfile.all("CMD") == []  # pods pass all arguments; a CMD would be silently replaced


@pytest.mark.parametrize("path", PROBE_DOCKERFILES, ids=lambda p: p.name)
def test_probe_image_installs_pinned_torch_the_probe_requirements_and_the_wheel_without_deps(path: Path) -> None:
    dockerfile = Dockerfile.parse(path)
    install = " ".join(dockerfile.all("RUN"))

    assert dockerfile.stage_arg("TORCH_VERSION") == PYPROJECT_PINS["torch"]
    assert '"torch==${TORCH_VERSION}"' in install
    assert "-r /tmp/requirements-probe.txt" in install
    assert "--no-deps /wheels/accelqual-*.whl" in install


def test_probe_requirements_are_pyprojects_pins() -> None:
    pins = _pins(PROBE_REQUIREMENTS)

    assert pins == {name: PYPROJECT_PINS[name] for name in pins}
    assert "torch" not in pins  # each image installs its own accelerator build


def test_operator_image_installs_the_operator_without_torch() -> None:
    dockerfile = Dockerfile.parse(OPERATOR_DOCKERFILE)
    install = " ".join(dockerfile.all("RUN"))

    assert json.loads(dockerfile.last("ENTRYPOINT")) == ["accelqual", "operator"]
    assert "/wheels/accelqual-*.whl" in install and "[probe]" not in install and "torch" not in install
    assert "--no-deps" not in install  # the operator's own dependencies, as pinned in pyproject.toml
    assert dockerfile.base_image().startswith("python:3.11")


def _probe_pod(spec: QualificationSpec, target: ProbeTarget) -> list[str]:
    pod = build_probe_pod(qualification="q", qualification_uid="u", run="r", namespace=NAMESPACE, spec=spec,
                          target=target, tolerate=[])
    container = pod["spec"]["containers"][0]
    assert "command" not in container  # the image's ENTRYPOINT runs
    return [str(a) for a in container["args"]]


@pytest.mark.parametrize("spec_extra", [
    {},
    {"suite": "quick", "checks": ["perf.gemm.bf16", "perf.membw"]},
    {"suite": "full", "skipChecks": ["rel.burnin"], "probe": {"extraArgs": ["--burnin-seconds", "600"]}},
], ids=["defaults", "checks", "skip-and-extra"])
@pytest.mark.parametrize("path", PROBE_DOCKERFILES, ids=lambda p: p.name)
def test_entrypoint_plus_rendered_pod_args_is_a_valid_probe_command_line(path: Path, spec_extra: dict[str, object]
                                                                         ) -> None:
    spec = QualificationSpec.model_validate({"nodeSelector": {"matchLabels": {"pool": "a"}}, **spec_extra})
    target = ProbeTarget(node="gpu-1", image="ghcr.io/accelqual/probe-cuda:0.1.0", profile="h100-sxm",
                         profile_json=None, resource_name="nvidia.com/gpu",
                         resource_count=8, checks=tuple(spec.checks), expected_devices=8)
    argv = json.loads(Dockerfile.parse(path).last("ENTRYPOINT")) + _probe_pod(spec, target)

    assert argv[:2] == ["accelqual", "probe"]
    parsed = build_parser().parse_args(argv[2:])
    assert parsed.pod is True
    assert parsed.suite == spec.suite.value
    assert parsed.profile == "h100-sxm"
    assert parsed.expect_devices == 8
    assert parsed.termination_log == "/dev/termination-log"
    assert (parsed.checks or []) == list(spec.checks)
    assert (parsed.skip_checks or []) == list(spec.skip_checks)


def test_operator_entrypoint_plus_chart_args_is_a_valid_operator_command_line(helm: Path) -> None:
    entrypoint = json.loads(Dockerfile.parse(OPERATOR_DOCKERFILE).last("ENTRYPOINT"))
    deployment = one(helm_template(helm, set_values=["replicaCount=2"]), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]

    assert "command" not in container
    assert entrypoint[:2] == ["accelqual", "operator"]
    parsed = parse_operator_args(entrypoint[2:] + container["args"])
    assert parsed.peering == "accelqual"


def test_probe_cli_runs_with_only_the_probe_requirements() -> None:
    blocker = (
        "import sys, importlib.abc\n"
        f"BLOCKED = {OPERATOR_ONLY_MODULES!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'{name} is not in the probe image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from accelqual.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    command = [sys.executable, "-c", blocker, "probe", "--device", "cpu", "--suite", "quick",
               "--checks", "gen.inventory", "--json", "-"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, f"{shlex.join(command[3:])}: {done.stderr[-2000:]}"
    assert json.loads(done.stdout)["checks"][0]["id"] == "gen.inventory"

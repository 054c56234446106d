"""Every sample in examples/ is valid as written: for the API server (strict schema) and for the operator.

Manifests (examples/*.yaml) are validated like the rendered chart (tests/deploy/manifests.py),
then Qualifications go through the operator's own spec validation (the one that sets
Ready=False) and CardProfiles through the probe's profile model. Helm values files
(examples/helm/) are checked by tests/deploy/test_chart.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from accelqual.models import QualificationSpec
from accelqual.planning.validation import SpecProblem, validate_spec
from accelqual_probes.profiles import CardProfileSpec

from tests.deploy.manifests import EXAMPLES, load_yaml_documents, problems

MANIFESTS = sorted(EXAMPLES.glob("*.yaml"))


def _custom_profiles() -> dict[str, CardProfileSpec]:
    return {doc["metadata"]["name"]: CardProfileSpec.model_validate(doc["spec"])
            for path in MANIFESTS for doc in load_yaml_documents(path) if doc.get("kind") == "CardProfile"}


def test_the_examples_cover_every_documented_flow() -> None:
    names = {p.name for p in MANIFESTS}
    triggers = {doc["spec"].get("trigger", "Once") for p in MANIFESTS for doc in load_yaml_documents(p)
                if doc.get("kind") == "Qualification"}

    assert {"qualification.yaml", "onboarding-gate.yaml", "scheduled-recheck.yaml", "dry-run.yaml",
            "cardprofile.yaml"} <= names
    assert triggers == {"Once", "OnJoin", "Schedule"}
    assert list((EXAMPLES / "helm").glob("*.yaml")), "Helm values examples are missing"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_example_is_commented_and_validates_strictly(path: Path) -> None:
    docs = load_yaml_documents(path)

    assert path.read_text(encoding="utf-8").startswith("#"), "each example starts with a comment saying what it is"
    assert docs
    assert [p for doc in docs for p in problems(doc)] == []


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_example_is_accepted_by_the_operator(path: Path) -> None:
    for doc in load_yaml_documents(path):
        if doc["kind"] == "Qualification":
            checked = validate_spec(doc["spec"], _custom_profiles())
            assert not isinstance(checked, SpecProblem), checked
            assert isinstance(checked, QualificationSpec)
        elif doc["kind"] == "CardProfile":
            CardProfileSpec.model_validate(doc["spec"])
        else:
            pytest.fail(f"unexpected kind {doc['kind']} in {path.name}")


def test_the_first_example_selects_the_pool_simulate_serve_offers() -> None:
    from accelqual.sim.serve import PRODUCT, PRODUCT_LABEL

    first = load_yaml_documents(EXAMPLES / "qualification.yaml")[0]

    assert first["spec"]["nodeSelector"] == {"matchLabels": {PRODUCT_LABEL: PRODUCT}}

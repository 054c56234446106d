"""The Helm chart: lint, render with every values file, validate every object, and the settings that matter.

Rendered objects are validated strictly (tests/deploy/manifests.py): built-in kinds by
kubernetes-validate for Kubernetes 1.33, custom resources against their CRDs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from accelqual.crdgen import all_crds, render
from accelqual.operator_main import parse as parse_operator_args

from tests.deploy.manifests import (
    CHART,
    EXAMPLES,
    NAMESPACE,
    ROOT,
    RenderError,
    all_problems,
    by_kind,
    helm_template,
    load_yaml_documents,
    one,
)

VALUES_EXAMPLES = sorted((EXAMPLES / "helm").glob("*.yaml"))
OUR_CRDS = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_chart_passes_helm_lint_with_default_and_example_values(helm: Path) -> None:
    for values in [None, *VALUES_EXAMPLES]:
        args = [str(helm), "lint", str(CHART), "--strict", "--kube-version", "1.33.0"]
        args += ["--values", str(values)] if values else []
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"helm lint {values or '(defaults)'}:\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("values", [None, *VALUES_EXAMPLES], ids=["defaults", *_ids(VALUES_EXAMPLES)])
def test_every_rendered_object_validates_strictly(helm: Path, values: Path | None) -> None:
    docs = helm_template(helm, *([values] if values else []))

    assert {"Deployment", "ServiceAccount", "ClusterRole", "Role", "NetworkPolicy"} <= {d["kind"] for d in docs}
    assert all_problems(docs) == []


def test_the_chart_crds_are_the_generated_ones_plus_kopf_peering() -> None:
    chart_crds = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))

    assert chart_crds == sorted([*OUR_CRDS, "clusterkopfpeerings.kopf.dev.yaml"])
    for crd in all_crds():
        name = f"{crd['metadata']['name']}.yaml"
        assert (CHART / "crds" / name).read_text(encoding="utf-8") == render(crd), (
            f"helm/accelqual/crds/{name} drifted from the models: run `make crds` and commit")


def test_the_crds_helm_installs_validate_as_custom_resource_definitions(helm: Path) -> None:
    done = subprocess.run([str(helm), "template", "accelqual", str(CHART), "--include-crds", "-n", NAMESPACE],
                          capture_output=True, text=True, timeout=120, check=True)
    crds = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "CustomResourceDefinition"]

    assert {c["metadata"]["name"] for c in crds} == {
        "qualifications.accelqual.io", "cardprofiles.accelqual.io", "clusterkopfpeerings.kopf.dev"}
    assert all_problems(crds) == []


def test_values_schema_refuses_unknown_keys_and_wrong_types(helm: Path) -> None:
    for bad in ("replicaCount=0", "operator.logFormat=xml", "imageTypo.tag=1", "peering.name=Not_DNS",
                "operator.ioBatchMs=1001", "operator.reconcileWaitFactor=201", "operator.reconcileWaitFactor=-1"):
        with pytest.raises(RenderError, match="values don't meet the specifications of the schema"):
            helm_template(helm, set_values=[bad])


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing of a values file over the chart's values (maps merge, the rest replaces)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_chart_and_example_values_match_the_values_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    for path in [None, *VALUES_EXAMPLES]:
        values = _merged(defaults, yaml.safe_load(path.read_text(encoding="utf-8"))) if path else defaults
        assert [e.message for e in validator.iter_errors(values)] == [], path.name if path else "values.yaml"


def _deployment(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = one(docs, "Deployment")
    return deployment, deployment["spec"]["template"]["spec"]


def test_operator_runs_non_root_read_only_without_capabilities(helm: Path) -> None:
    _, pod = _deployment(helm_template(helm))
    container = pod["containers"][0]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"].keys() >= {"cpu", "memory"}
    assert container["resources"]["limits"]["memory"]


def test_liveness_and_readiness_use_kopfs_health_endpoint(helm: Path) -> None:
    _, pod = _deployment(helm_template(helm))
    container = pod["containers"][0]
    args = parse_operator_args(container["args"])
    health = next(p for p in container["ports"] if p["name"] == "health")

    assert args.liveness == f"http://0.0.0.0:{health['containerPort']}/healthz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_operator_args_are_valid_accelqual_operator_flags(helm: Path) -> None:
    _, pod = _deployment(helm_template(helm, set_values=["operator.probeNamespace=gpu-probes"]))
    args = parse_operator_args(pod["containers"][0]["args"])

    assert args.namespace == "gpu-probes"
    assert args.secret_namespace == NAMESPACE
    assert args.event_namespace == "default"
    assert args.metrics_port == 8000
    assert args.log_format == "json"
    assert args.peering is None
    assert args.io_batch_ms == 50
    assert args.reconcile_wait_factor == 20


def test_io_batching_is_a_value_of_the_chart(helm: Path) -> None:
    _, pod = _deployment(helm_template(helm, set_values=["operator.ioBatchMs=0"]))

    assert parse_operator_args(pod["containers"][0]["args"]).io_batch_ms == 0


def test_the_reconcile_wait_factor_is_a_value_of_the_chart(helm: Path) -> None:
    _, pod = _deployment(helm_template(helm, set_values=["operator.reconcileWaitFactor=5"]))

    assert parse_operator_args(pod["containers"][0]["args"]).reconcile_wait_factor == 5


def test_one_replica_is_standalone_and_stops_before_it_starts_again(helm: Path) -> None:
    docs = helm_template(helm)
    deployment, _ = _deployment(docs)

    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert by_kind(docs, "ClusterKopfPeering") == []


def test_several_replicas_share_a_kopf_peering_and_roll_without_overlap_in_action(helm: Path) -> None:
    docs = helm_template(helm, set_values=["replicaCount=3", "peering.name=aq-peers"])
    deployment, pod = _deployment(docs)
    args = parse_operator_args(pod["containers"][0]["args"])

    assert deployment["spec"]["replicas"] == 3
    assert args.peering == "aq-peers"
    assert args.peering_priority is None  # each replica derives its own from its start time
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == "aq-peers"
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"


def test_metrics_service_selects_the_operator_pods_only(helm: Path) -> None:
    docs = helm_template(helm)
    deployment, pod = _deployment(docs)
    service = one(docs, "Service")
    port = next(p for p in pod["containers"][0]["ports"] if p["name"] == "metrics")

    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "operator"
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert parse_operator_args(pod["containers"][0]["args"]).metrics_port == port["containerPort"]


def test_monitoring_objects_are_opt_in(helm: Path) -> None:
    kinds = {d["kind"] for d in helm_template(helm)}

    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    assert not any(d["metadata"]["name"].endswith("-dashboard") for d in helm_template(helm))


def test_prometheus_rule_and_dashboard_carry_the_shipped_files(helm: Path) -> None:
    docs = helm_template(helm, set_values=["metrics.serviceMonitor.enabled=true", "prometheusRule.enabled=true",
                                           "grafanaDashboard.enabled=true"])
    rules = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text(encoding="utf-8")) or {}
    dashboard = (CHART / "files" / "dashboard.json").read_text(encoding="utf-8")

    assert one(docs, "PrometheusRule")["spec"]["groups"] == (rules.get("groups") or [])
    config_map = one(docs, "ConfigMap", "accelqual-dashboard")
    assert json.loads(config_map["data"]["accelqual.json"]) == json.loads(dashboard)
    assert one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"


def test_probe_images_per_vendor_follow_the_values(helm: Path) -> None:
    docs = helm_template(helm, set_values=["probeImages.rocm.tag=6.4-test"])
    images = one(docs, "ConfigMap", "accelqual-probe-images")["data"]

    assert set(images) == {"cuda", "rocm", "cpu", "ascend"}
    assert images["cuda"] == "ghcr.io/accelqual/probe-cuda:0.1.0"
    assert images["rocm"] == "ghcr.io/accelqual/probe-rocm:6.4-test"


def test_example_qualifications_use_the_charts_probe_images(helm: Path) -> None:
    images = set(one(helm_template(helm), "ConfigMap", "accelqual-probe-images")["data"].values())
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            if doc.get("kind") == "Qualification" and "image" in (doc["spec"].get("probe") or {}):
                assert doc["spec"]["probe"]["image"] in images, path.name


def test_operator_image_is_pinned_by_digest_when_given(helm: Path) -> None:
    digest = "sha256:" + "a" * 64
    _, pod = _deployment(helm_template(helm, set_values=[f"image.digest={digest}"]))

    assert pod["containers"][0]["image"] == f"ghcr.io/accelqual/operator@{digest}"


def test_notes_name_the_probe_images_the_peering_and_the_crd_upgrade_step(helm: Path, tmp_path: Path) -> None:
    done = subprocess.run([str(helm), "install", "accelqual", str(CHART), "-n", NAMESPACE, "--dry-run=client",
                           "--set", "replicaCount=2"], capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")})
    notes = done.stdout.split("NOTES:", 1)[-1]

    assert done.returncode == 0, done.stderr
    assert 'kopf peering "accelqual"' in notes
    for vendor in ("cuda", "rocm", "cpu", "ascend"):
        assert f"ghcr.io/accelqual/probe-{vendor}:0.1.0" in notes
    assert "kubectl apply --server-side --force-conflicts -f helm/accelqual/crds/" in notes

"""Least privilege: the chart grants exactly the documented rules, and the real operator needs no more.

The documented set (docs/install.md, "What the operator may do") is written out below. A
second test runs the real operator through a whole qualification (probe pods, report
Secret, evidence upload, a failed node tainted, Events, kopf peering) against the emulated
API server and checks every call it made against the rendered RBAC, as the API server's
authorizer would: a new API call in the operator without a rule fails here. The probe pods
it creates, and the manifest `planning.podspec` renders, carry no credentials of any kind.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attrs
import pytest
from accelqual.models import QualificationSpec
from accelqual.planning.podspec import ProbeTarget, build_probe_pod
from accelqual.sim.cluster import NAMESPACE, SimulatedCluster
from accelqual.sim.emulator import ClusterEmulator
from accelqual.sim.modelled import ModelledProbeRunner
from accelqual.sim.server import EmulatorServer
from accelqual.sim.simulate import QUALIFICATION, fleet, qualification
from kmock import Request

from tests.deploy.manifests import by_kind, helm_template, one

EVENTS_NAMESPACE = "default"
PEERING = "accelqual"
OPERATOR_TOKEN = "Bearer accelqual-emulator"  # what EmulatorServer.write_kubeconfig puts in the kubeconfig

# (namespace or "*" for the ClusterRole, apiGroup, resource, resourceNames) -> verbs
Rules = dict[tuple[str, str, str, tuple[str, ...]], frozenset[str]]


def _verbs(*verbs: str) -> frozenset[str]:
    return frozenset(verbs)


DOCUMENTED: Rules = {
    ("*", "", "nodes", ()): _verbs("get", "list", "watch", "patch"),
    ("*", "", "pods", ()): _verbs("list", "watch"),
    ("*", "accelqual.io", "qualifications", ()): _verbs("list", "watch", "patch"),
    ("*", "accelqual.io", "qualifications/status", ()): _verbs("patch"),
    ("*", "accelqual.io", "cardprofiles", ()): _verbs("list", "watch"),
    ("*", "apiextensions.k8s.io", "customresourcedefinitions", ()): _verbs("list", "watch"),
    (NAMESPACE, "", "pods", ()): _verbs("create", "delete"),
    (NAMESPACE, "", "pods/log", ()): _verbs("get"),
    (NAMESPACE, "", "configmaps", ()): _verbs("get", "list", "create", "update", "patch", "delete"),
    (NAMESPACE, "", "secrets", ("accelqual-s3",)): _verbs("get"),
    (EVENTS_NAMESPACE, "", "events", ()): _verbs("create"),
}
DOCUMENTED_PEERING: Rules = {
    ("*", "kopf.dev", "clusterkopfpeerings", ()): _verbs("list", "watch"),
    ("*", "kopf.dev", "clusterkopfpeerings", (PEERING,)): _verbs("patch"),
}


def granted(docs: Iterable[Mapping[str, Any]]) -> Rules:
    """The rules of every ClusterRole and Role the chart renders, one entry per resource."""
    rules: Rules = {}
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        scope = "*" if doc["kind"] == "ClusterRole" else doc["metadata"]["namespace"]
        for rule in doc.get("rules") or []:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    key = (scope, group, resource, tuple(rule.get("resourceNames") or ()))
                    rules[key] = rules.get(key, frozenset()) | frozenset(rule["verbs"])
    return rules


def test_rbac_is_exactly_the_documented_least_privilege_set(helm: Path) -> None:
    assert granted(helm_template(helm)) == DOCUMENTED
    assert granted(helm_template(helm, set_values=["replicaCount=2"])) == DOCUMENTED | DOCUMENTED_PEERING


def test_rbac_has_no_wildcards_no_cluster_wide_secrets_and_no_pod_exec(helm: Path) -> None:
    docs = helm_template(helm, set_values=["replicaCount=2"])
    rules = granted(docs)

    for scope, group, resource, _ in rules:
        assert "*" not in (group, resource), (scope, group, resource)
        assert resource not in ("pods/exec", "pods/attach", "pods/portforward", "nodes/proxy", "serviceaccounts/token")
    assert all("*" not in verbs for verbs in rules.values())
    assert not any(scope == "*" and resource == "secrets" for scope, _, resource, _ in rules)
    assert not any(verbs & {"escalate", "bind", "impersonate", "deletecollection"} for verbs in rules.values())


def test_no_secret_access_at_all_without_report_secrets(helm: Path) -> None:
    rules = granted(helm_template(helm, set_values=["reportCredentialsSecrets=null"]))

    assert not any(resource == "secrets" for _, _, resource, _ in rules)


def test_every_role_is_bound_to_the_operators_service_account_only(helm: Path) -> None:
    docs = helm_template(helm, set_values=["replicaCount=2"])
    account = one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
             for d in docs if d["kind"] in ("ClusterRole", "Role")}
    bindings = by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding")

    assert {(b["roleRef"]["kind"], b["metadata"].get("namespace"), b["roleRef"]["name"]) for b in bindings} == roles
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    assert one(docs, "ServiceAccount")["automountServiceAccountToken"] is False


# --- the operator's actual calls -------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    verb: str
    group: str
    resource: str  # with "/subresource"
    namespace: str | None
    name: str | None


@attrs.define(kw_only=True)
class AuditedEmulator(ClusterEmulator):
    """Records the resource requests made with the operator's token (the kubelet and the test use another)."""

    calls: set[Call] = attrs.field(init=False, factory=set)
    #: The bodies of the operator's pod creations (probe pods are deleted once their evidence is kept).
    created_pods: list[dict[str, Any]] = attrs.field(init=False, factory=list)

    async def _serve(self, request: Request, verb: str) -> Any:
        if request.headers.get("Authorization") == OPERATOR_TOKEN and request.resource is not None:
            sub = f"/{request.subresource}" if request.subresource else ""
            self.calls.add(Call(verb, request.resource.group or "", f"{request.resource.plural}{sub}",
                                request.namespace, request.name))
            if verb == "create" and f"{request.resource.plural}{sub}" == "pods" and isinstance(request.data, dict):
                self.created_pods.append(request.data)
        return await super()._serve(request, verb)


def allowed(call: Call, rules: Rules) -> bool:
    """Kubernetes RBAC: a ClusterRole rule anywhere, a Role rule in its namespace; resourceNames by name."""
    for (scope, group, resource, names), verbs in rules.items():
        if scope != "*" and scope != call.namespace:
            continue
        if group == call.group and resource == call.resource and call.verb in verbs \
                and (not names or call.name in names):
            return True
    return False


@pytest.fixture(scope="module")
def audited_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AuditedEmulator, SimulatedCluster]]:
    """One qualification of 4 nodes (1 faulty) by the real operator, with peering and S3 evidence."""
    emulator = AuditedEmulator()
    cluster = SimulatedCluster(runner=ModelledProbeRunner(duration=0.3), kubelet_interval=0.05)
    cluster.server = EmulatorServer(emulator)
    with cluster:
        emulator.create("clusterkopfpeerings", {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
                                                "metadata": {"name": PEERING}})
        nodes, _ = fleet(4, 1, 7)
        cluster.add_nodes(nodes)
        kubeconfig = cluster.server.write_kubeconfig(tmp_path_factory.mktemp("operator") / "kubeconfig")
        cluster.start_operator(server=None, kubeconfig=str(kubeconfig), peering=PEERING, priority=1)
        cluster.apply(qualification(cluster.report_spec()))
        done = cluster.wait_for_phase(QUALIFICATION, timeout=120)
        assert done["status"]["phase"] == "Completed", done["status"]
        time.sleep(0.5)  # the last Events and status patches of the run
        yield emulator, cluster


AuditedRun = tuple[AuditedEmulator, SimulatedCluster]


def test_every_call_of_a_real_run_is_allowed_by_the_chart(helm: Path, audited_run: AuditedRun) -> None:
    emulator, _ = audited_run
    rules = granted(helm_template(helm, set_values=["replicaCount=2", f"peering.name={PEERING}"]))
    calls = set(emulator.calls)

    assert {c.resource for c in calls} >= {"nodes", "pods", "pods/log", "qualifications/status", "secrets",
                                           "events", "clusterkopfpeerings"}, "the run did not exercise the operator"
    assert sorted(str(c) for c in calls if not allowed(c, rules)) == []


def _assert_credential_free(pod: Mapping[str, Any]) -> None:
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec.get("serviceAccountName", "default") == "default"
    assert all("emptyDir" in v for v in spec.get("volumes") or []), spec.get("volumes")
    for container in spec["containers"] + spec.get("initContainers", []):
        assert "envFrom" not in container
        for env in container.get("env") or []:
            assert not env["name"].startswith("AWS_"), env
            assert "secretKeyRef" not in (env.get("valueFrom") or {}), env
            assert "configMapKeyRef" not in (env.get("valueFrom") or {}), env
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_probe_pods_the_operator_created_carry_no_token_and_no_s3_credentials(audited_run: AuditedRun) -> None:
    emulator, _ = audited_run

    assert len({p["metadata"]["name"] for p in emulator.created_pods}) == 4
    for pod in emulator.created_pods:
        _assert_credential_free(pod)


def test_rendered_probe_pod_of_a_qualification_with_report_credentials_has_none_of_them() -> None:
    spec = QualificationSpec.model_validate({
        "nodeSelector": {"matchLabels": {"pool": "a"}},
        "report": {"bucket": "evidence", "credentialsSecret": {"name": "accelqual-s3", "namespace": NAMESPACE}},
    })
    target = ProbeTarget(node="gpu-1", image="ghcr.io/accelqual/probe-cuda:0.1.0", profile="h100-sxm",
                         profile_json=None, resource_name="nvidia.com/gpu",
                         resource_count=8, checks=(), expected_devices=8)
    pod = build_probe_pod(qualification="q", qualification_uid="uid-1", run="r1", namespace=NAMESPACE, spec=spec,
                          target=target, tolerate=[])

    _assert_credential_free(pod)
    assert "accelqual-s3" not in str(pod)


def test_network_policy_isolates_exactly_the_probe_pods(helm: Path) -> None:
    docs = helm_template(helm)
    policy = one(docs, "NetworkPolicy")
    spec = QualificationSpec.model_validate({"nodeSelector": {"matchLabels": {"pool": "a"}}})
    target = ProbeTarget(node="n", image="ghcr.io/accelqual/probe-cuda:0.1.0", profile="auto", profile_json=None,
                         resource_name=None, resource_count=0,
                         checks=(), expected_devices=None)
    probe = build_probe_pod(qualification="q", qualification_uid="u", run="r", namespace=NAMESPACE, spec=spec,
                            target=target, tolerate=[])
    operator_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]

    assert policy["metadata"]["namespace"] == probe["metadata"]["namespace"]
    assert selector.items() <= probe["metadata"]["labels"].items()
    assert not selector.items() <= operator_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]  # no rule: nothing allowed

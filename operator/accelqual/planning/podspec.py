"""The probe pod manifest (DESIGN.md 3.3), built by a pure function and golden-tested.

Least privilege: no service-account token, no S3 credentials, no API access, non-root,
read-only root filesystem, all capabilities dropped. The pod goes through the scheduler
(required node affinity on the node's name, requesting all of the node's accelerators),
so it waits for free accelerators instead of overcommitting a node that runs real work.
User-controlled strings reach the container only as separate argv items or env values,
never through a shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from accelqual_probes.profiles import CardProfileSpec

from accelqual.constants import (
    ANN_QUALIFICATION,
    API_VERSION,
    APP_NAME,
    LABEL_APP_COMPONENT,
    LABEL_APP_INSTANCE,
    LABEL_APP_MANAGED_BY,
    LABEL_APP_NAME,
    LABEL_POD_NODE,
    LABEL_POD_QUALIFICATION,
    LABEL_POD_RUN,
    MANAGER,
    PROBE_COMPONENT,
)
from accelqual.models import QualificationSpec
from accelqual.planning.naming import label_value, probe_pod_name

#: The probe images' ENTRYPOINT is `accelqual probe`; pods pass arguments only, so the image
#: decides how the probe is started and the operator cannot drift from it.
PROBE_ENTRYPOINT = ("accelqual", "probe")
PROBE_UID = 65532
TERMINATION_LOG = "/dev/termination-log"


@dataclass(frozen=True)
class ProbeTarget:
    """Where and with what one probe runs: resolved per node by planning."""

    node: str
    image: str
    #: Profile name passed to `--profile` (`auto` lets the probe detect the card).
    profile: str
    #: A custom CardProfile's `{"name", "spec"}` JSON, passed in the environment.
    profile_json: str | None
    resource_name: str | None
    #: How many of `resource_name` the node has (all are requested).
    resource_count: int
    checks: tuple[str, ...]
    expected_devices: int | None


#: Probe images per software stack when the operator is given none (`accelqual operator --probe-image`).
DEFAULT_PROBE_IMAGES: dict[str, str] = {
    "cuda": "ghcr.io/accelqual/probe-cuda:0.1.0",
    "rocm": "ghcr.io/accelqual/probe-rocm:0.1.0",
    "ascend": "ghcr.io/accelqual/probe-ascend:0.1.0",
    "cpu": "ghcr.io/accelqual/probe-cpu:0.1.0",
}


def stack_of(profile: CardProfileSpec | None) -> str:
    """The software stack a card needs in its probe image: cuda, rocm, ascend, cpu (or the torch device type).

    A card with no known profile (`auto` without a product label) gets the CUDA image, the most common
    stack; name `probe.image` or label the nodes when that is wrong.
    """
    if profile is None:
        return "cuda"
    if profile.device_type == "cuda":
        return "rocm" if profile.vendor.lower() in ("amd", "advanced micro devices") else "cuda"
    if profile.device_type == "npu":
        return "ascend"
    return profile.device_type


def probe_image(spec: QualificationSpec, profile: CardProfileSpec | None, images: Mapping[str, str]) -> str:
    """The image of one node's probe: the spec's, else the operator's for the card's stack, else the default."""
    if spec.probe.image:
        return spec.probe.image
    stack = stack_of(profile)
    return images.get(stack) or DEFAULT_PROBE_IMAGES.get(stack) or images.get("cuda") or DEFAULT_PROBE_IMAGES["cuda"]


def probe_args(spec: QualificationSpec, target: ProbeTarget) -> list[str]:
    """Arguments appended to the image's `accelqual probe` entrypoint."""
    args = ["--pod", "--device", "auto", "--profile", target.profile, "--suite", spec.suite.value,
            "--termination-log", TERMINATION_LOG]
    if target.checks:
        args += ["--checks", ",".join(target.checks)]
    if spec.skip_checks:
        args += ["--skip-checks", ",".join(spec.skip_checks)]
    if target.expected_devices is not None:
        args += ["--expect-devices", str(target.expected_devices)]
    return args + list(spec.probe.extra_args)


def build_probe_pod(
    *,
    qualification: str,
    qualification_uid: str,
    run: str,
    namespace: str,
    spec: QualificationSpec,
    target: ProbeTarget,
    tolerate: list[dict[str, str]],
) -> dict[str, Any]:
    """The complete pod manifest for one node of one run."""
    name = probe_pod_name(qualification, run, target.node)
    labels = {
        LABEL_APP_NAME: APP_NAME,
        LABEL_APP_COMPONENT: PROBE_COMPONENT,
        LABEL_APP_MANAGED_BY: MANAGER,
        LABEL_APP_INSTANCE: label_value(qualification),
        LABEL_POD_QUALIFICATION: label_value(qualification),
        LABEL_POD_RUN: run,
        LABEL_POD_NODE: label_value(target.node),
    }
    requests: dict[str, str] = {"cpu": spec.probe.cpu, "memory": spec.probe.memory}
    limits: dict[str, str] = {"memory": spec.probe.memory}
    if target.resource_name and target.resource_count > 0:
        # Extended resources must have requests == limits.
        requests[target.resource_name] = str(target.resource_count)
        limits[target.resource_name] = str(target.resource_count)
    env: list[dict[str, Any]] = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "HOME", "value": "/tmp"},
    ]
    if target.profile_json is not None:
        env.append({"name": "ACCELQUAL_PROFILE_JSON", "value": target.profile_json})
    tolerations: list[dict[str, Any]] = [dict(t) for t in tolerate]
    tolerations += [t.to_json_dict() for t in spec.probe.tolerations]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": spec.probe.timeout_seconds,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 10,
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [target.node]}]}
                    ]
                }
            }
        },
        "tolerations": tolerations,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": PROBE_UID,
            "runAsGroup": PROBE_UID,
            "fsGroup": PROBE_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
            **({"supplementalGroups": list(spec.probe.supplemental_groups)} if spec.probe.supplemental_groups
               else {}),
        },
        "containers": [
            {
                "name": "probe",
                "image": target.image,
                "imagePullPolicy": spec.probe.image_pull_policy,
                "args": probe_args(spec, target),
                "env": env,
                "resources": {"requests": requests, "limits": limits},
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "File",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "privileged": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "shm", "mountPath": "/dev/shm"},
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
            # Collectives (NCCL/RCCL/HCCL) need more shared memory than the runtime's 64 MiB default.
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}},
        ],
    }
    if spec.probe.priority_class_name:
        pod_spec["priorityClassName"] = spec.probe.priority_class_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {ANN_QUALIFICATION: qualification, LABEL_POD_NODE: target.node},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Qualification",
                    "name": qualification,
                    "uid": qualification_uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": pod_spec,
    }

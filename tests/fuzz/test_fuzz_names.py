"""Fuzzing names at Kubernetes' limits: whatever names the API server accepts for nodes and Qualifications
(253-character subdomains, 63-character label values), every name and label the operator derives from them
is one the API server accepts too (pod names of at most 63 characters, label-safe values, Event and
ConfigMap names); and the API server (the emulator, like Kubernetes) refuses what is not a name."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from accelqual.handlers.outbox import segment_name
from accelqual.models import QualificationSpec, QualificationStatus
from accelqual.planning.actions import CreatePod, MarkNode, PostEvent
from accelqual.planning.naming import event_name, evidence_key, label_value, probe_pod_name, run_id
from accelqual.planning.plan import plan
from accelqual.planning.snapshot import NodeInfo, Snapshot
from accelqual.sim.emu_errors import ApiError
from accelqual.sim.emulator import ClusterEmulator
from accelqual_probes.schema import REPORT_MARKER
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import FuzzRecorder
from tests.fuzz.handler_path import judge, plan_for, probe_pod
from tests.fuzz.strategies import dns_subdomains, label_values, tricky_text
from tests.support.reports import pod_output, report

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
HONEST = report("template").to_json_dict()
TERMINATION = pod_output(report("template"))[1]
RUNS = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC)).map(run_id)


def is_subdomain(name: str) -> bool:
    return len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    return len(value) <= 63 and LABEL_VALUE.fullmatch(value) is not None


def test_derived_names_of_names_at_the_limits_are_valid(record_fuzz: FuzzRecorder) -> None:
    seen = Counter[str]()

    @given(qualification=dns_subdomains(), node=dns_subdomains(), run=RUNS, reason=st.sampled_from(
        ["QualificationFailed", "RunStarted", "FleetOutlier"]), key=st.text(max_size=300), number=st.integers(0, 999))
    def fuzz(qualification: str, node: str, run: str, reason: str, key: str, number: int) -> None:
        seen["examples"] += 1
        assert is_subdomain(qualification) and is_subdomain(node)
        pod = probe_pod_name(qualification, run, node)
        assert len(pod) <= 63 and DNS_LABEL.fullmatch(pod), pod
        assert pod == probe_pod_name(qualification, run, node)  # a restarted operator finds it
        assert pod != probe_pod_name(qualification, run + "-1", node)
        assert is_label_value(run)
        for target in (qualification, node):
            assert is_label_value(label_value(target))
            event = event_name(target, reason, key)
            assert is_subdomain(event), event
        assert is_subdomain(segment_name(qualification, number)), segment_name(qualification, number)
        assert len(evidence_key("accelqual", qualification, run, node).encode()) <= 1024  # S3's key limit

    fuzz()
    record_fuzz("names at Kubernetes' limits: pod, Event, outbox ConfigMap names, S3 keys", seen["examples"])


def test_any_text_becomes_a_valid_label_value(record_fuzz: FuzzRecorder) -> None:
    seen = Counter[str]()

    @given(text=st.one_of(st.text(max_size=300), tricky_text(300), label_values(), dns_subdomains()))
    def fuzz(text: str) -> None:
        seen["examples"] += 1
        value = label_value(text)
        assert is_label_value(value), value
        if is_label_value(text):
            assert value == text  # readable when it can be
        else:
            assert value != label_value(text + "x") or len(text) > 10_000  # distinct inputs stay apart

    fuzz()
    record_fuzz("label values from any text (unicode, control characters, 300 characters)", seen["examples"])


def test_pools_of_nodes_at_the_limits_plan_valid_pods_and_marks(record_fuzz: FuzzRecorder) -> None:
    seen = Counter[str]()

    @given(qualification=dns_subdomains(), nodes=st.lists(dns_subdomains(), min_size=1, max_size=4, unique=True),
           pool=label_values().filter(bool), label_key=st.sampled_from(["pool", "example.com/pool"]))
    def fuzz(qualification: str, nodes: list[str], pool: str, label_key: str) -> None:
        seen["examples"] += 1
        spec = QualificationSpec.model_validate({"nodeSelector": {"matchLabels": {label_key: pool}}, "suite": "quick",
                                                 "maxConcurrent": "100%"})
        infos = tuple(NodeInfo(name=n, labels={label_key: pool, "accelqual.io/profile": "cpu-reference"},
                               resource_version="1", uid=f"u-{i}", created_at=NOW - timedelta(days=1))
                      for i, n in enumerate(nodes))
        snap = Snapshot(name=qualification, uid="uid", generation=1, annotations={}, nodes=infos, busy={}, pods=(),
                        results={})
        decided = plan(spec, snap, QualificationStatus(), NOW, namespace="accelqual-system")
        pods = [a for a in decided.actions if isinstance(a, CreatePod)]
        assert {p.node for p in pods} == set(nodes)
        for action in pods:
            meta = action.manifest["metadata"]
            assert len(meta["name"]) <= 63 and DNS_LABEL.fullmatch(meta["name"])
            assert all(is_label_value(v) for v in meta["labels"].values()), meta["labels"]
            assert meta["annotations"]["accelqual.io/node"] == action.node  # the full name, where labels cut it
            affinity = action.manifest["spec"]["affinity"]["nodeAffinity"]
            term = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            assert term["matchFields"][0]["values"] == [action.node]
        for event in (a for a in decided.actions if isinstance(a, PostEvent)):
            assert is_subdomain(event_name(event.name, event.reason, event.key))
        # The same pool, each node finished with a report: every mark is a valid label and annotation set.
        judged = []
        for name in nodes:
            pod = probe_pod(name)
            log = f"{REPORT_MARKER}{json.dumps({**HONEST, 'node': name})}\n"
            judged.append((pod, judge(pod, log, TERMINATION)[0]))
        for mark in (a for a in plan_for(judged).actions if isinstance(a, MarkNode)):
            assert all(v is None or is_label_value(v) for v in mark.labels.values())

    fuzz()
    record_fuzz("pools of nodes named at the limits through plan() (pods, Events, marks)", seen["examples"])


@pytest.fixture(scope="module")
def emulator() -> ClusterEmulator:
    return ClusterEmulator()


def test_the_api_server_refuses_names_and_labels_kubernetes_refuses(emulator: ClusterEmulator,
                                                                     record_fuzz: FuzzRecorder) -> None:
    seen = Counter[str]()

    @given(name=st.one_of(st.text(min_size=1, max_size=300), tricky_text(80).filter(bool), dns_subdomains()),
           value=st.one_of(st.text(max_size=80), label_values()))
    def fuzz(name: str, value: str) -> None:
        seen["examples"] += 1
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"pool": value}}}
        if is_subdomain(name) and is_label_value(value):
            emulator.create("nodes", body)
            emulator.delete("nodes", None, name)
            return
        with pytest.raises(ApiError) as refused:
            emulator.create("nodes", body)
        assert refused.value.status == 422, refused.value

    fuzz()
    record_fuzz("node names and labels the API server must refuse (unicode, 254+ characters)", seen["examples"])

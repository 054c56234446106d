"""Fuzzing Qualification specs: validation never crashes and names the wrong field; valid specs plan safely.

Specs come from the JSON schema of `QualificationSpec` (the one the CRD is generated from), from
random JSON, and from a complete valid spec with one field replaced by a value of the wrong kind.
A valid spec goes through `plan()` against a small pool and a status drawn from the status schema.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from accelqual.constants import Reason
from accelqual.models import QualificationSpec, QualificationStatus
from accelqual.planning.actions import CreatePod, MarkNode, PostEvent
from accelqual.planning.plan import plan
from accelqual.planning.snapshot import NodeInfo, Snapshot
from accelqual.planning.validation import SpecProblem, invalid_status, validate_spec
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.fuzz.conftest import FuzzRecorder
from tests.fuzz.handler_path import MAX_STATUS_BYTES
from tests.fuzz.strategies import json_schema, json_values

SPEC_SCHEMA = QualificationSpec.model_json_schema(by_alias=True)
STATUS_SCHEMA = QualificationStatus.model_json_schema(by_alias=True)
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
#: A spec that sets every field (so that any path can be made wrong).
COMPLETE: dict[str, Any] = {
    "nodeSelector": {"matchLabels": {"pool": "a"},
                     "matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]},
    "profile": "auto", "suite": "quick", "checks": ["perf.membw"], "skipChecks": ["rel.memtest"],
    "trigger": "Schedule", "schedule": "0 */6 * * *", "maxConcurrent": "25%", "onlyIdleNodes": True,
    "onFailure": {"taint": {"key": "accelqual.io/failed", "value": "true", "effect": "NoSchedule"}, "cordon": False,
                  "labels": {"team": "hw"}},
    "gateTaint": {"key": "accelqual.io/unqualified", "effect": "NoSchedule"}, "autoRelease": False,
    "failureBudget": 2, "dryRun": False,
    "fleetRelative": {"enabled": True, "maxDeviation": 0.08, "minRobustZ": 3.0, "action": "fail", "minPeers": 5},
    "probe": {"image": "ghcr.io/accelqual/probe-cuda:0.1.0", "imagePullPolicy": "IfNotPresent",
              "resourceName": "nvidia.com/gpu", "cpu": "2", "memory": "8Gi", "timeoutSeconds": 1800,
              "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
              "priorityClassName": "high", "extraArgs": ["--burnin-seconds", "600"]},
    "report": {"bucket": "evidence", "prefix": "runs", "region": "us-east-1", "endpoint": "https://s3.example",
               "credentialsSecret": {"name": "s3", "namespace": "accelqual-system"}},
    "waitSeconds": 3600,
}


def _leaf_paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, Mapping) and value:
        for key, sub in value.items():
            yield (*prefix, key)
            yield from _leaf_paths(sub, (*prefix, key))


PATHS = sorted(p for p in _leaf_paths(COMPLETE) if not (len(p) > 1 and p[-2] in ("matchLabels", "labels")))


def _problem_checked(problem: SpecProblem) -> None:
    assert isinstance(problem.reason, Reason)
    assert problem.message and len(problem.message) <= 1024
    assert problem.message.startswith(("spec.", "spec:", "unknown check ids")), problem.message
    status = invalid_status(QualificationStatus(), problem, 3, NOW)
    QualificationStatus.model_validate(status.model_dump(mode="json", by_alias=True))


def _pool(spec: QualificationSpec, count: int) -> tuple[NodeInfo, ...]:
    labels = {**spec.node_selector.match_labels, "accelqual.io/profile": "cpu-reference"}
    for req in spec.node_selector.match_expressions:
        if req.operator.value == "In":
            labels[req.key] = req.values[0]
        elif req.operator.value == "Exists":
            labels[req.key] = "x"
    return tuple(NodeInfo(name=f"node-{i}", labels=labels, resource_version=str(i + 1), uid=f"u{i}",
                          allocatable={"nvidia.com/gpu": "8"}, created_at=NOW - timedelta(days=1))
                 for i in range(count))


def _plan_checked(spec: QualificationSpec, status: QualificationStatus, nodes: int) -> None:
    snap = Snapshot(name="fuzz", uid="uid", generation=2, annotations={}, nodes=_pool(spec, nodes), busy={},
                    pods=(), results={})
    decided = plan(spec, snap, status, NOW, namespace="accelqual-system")
    dumped = decided.status.model_dump(mode="json", by_alias=True)
    assert len(json.dumps(dumped)) <= MAX_STATUS_BYTES
    assert QualificationStatus.model_validate(dumped) == decided.status
    assert decided.requeue_after > 0
    for action in decided.actions:
        if isinstance(action, CreatePod):
            meta = action.manifest["metadata"]
            assert len(meta["name"]) <= 63 and DNS_LABEL.fullmatch(meta["name"])
            assert all(LABEL_VALUE.fullmatch(v) and len(v) <= 63 for v in meta["labels"].values())
            container = action.manifest["spec"]["containers"][0]
            assert "command" not in container
            assert all(isinstance(a, str) for a in container["args"])
        elif isinstance(action, PostEvent):
            assert len(action.message) <= 1024
        elif isinstance(action, MarkNode):
            raise AssertionError("no node finished, so none is marked")


def test_random_json_as_a_spec_is_refused_precisely_never_crashes(record_fuzz: FuzzRecorder) -> None:
    seen = Counter[str]()
    keys = st.sampled_from(sorted(SPEC_SCHEMA["properties"])) | st.text(max_size=12)

    @given(raw=st.one_of(json_values(), st.dictionaries(keys, json_values(12), max_size=10)))
    def fuzz(raw: Any) -> None:
        seen["examples"] += 1
        checked = validate_spec(raw, {})
        if isinstance(checked, SpecProblem):
            _problem_checked(checked)
        else:
            _plan_checked(checked, QualificationStatus(), 2)

    fuzz()
    record_fuzz("Qualification specs: random JSON", seen["examples"])


def test_schema_shaped_specs_validate_and_plan_without_crashing(record_fuzz: FuzzRecorder) -> None:
    seen = Counter[str]()

    @given(raw=json_schema(SPEC_SCHEMA), status=json_schema(STATUS_SCHEMA), nodes=st.integers(0, 4))
    def fuzz(raw: dict[str, Any], status: dict[str, Any], nodes: int) -> None:
        seen["examples"] += 1
        checked = validate_spec(raw, {})
        if isinstance(checked, SpecProblem):
            _problem_checked(checked)
            return
        try:
            current = QualificationStatus.model_validate(status)
        except ValueError:
            assume(False)
            return
        _plan_checked(checked, current, nodes)

    fuzz()
    record_fuzz("Qualification specs and statuses from the CRD's schema, through plan()", seen["examples"])


def test_a_field_of_the_wrong_kind_is_named_in_the_condition(record_fuzz: FuzzRecorder) -> None:
    assert not isinstance(validate_spec(COMPLETE, {}), SpecProblem)
    seen = Counter[str]()

    @given(path=st.sampled_from(PATHS), wrong=st.one_of(st.lists(json_values(3), max_size=3),
                                                        st.dictionaries(st.text(max_size=5), json_values(3),
                                                                        min_size=1, max_size=3)))
    def fuzz(path: tuple[str, ...], wrong: Any) -> None:
        seen["examples"] += 1
        raw = json.loads(json.dumps(COMPLETE))
        target = raw
        for key in path[:-1]:
            target = target[key]
        expects_list = isinstance(target[path[-1]], list)
        assume(not (expects_list and isinstance(wrong, list)))
        target[path[-1]] = wrong
        checked = validate_spec(raw, {})
        assert isinstance(checked, SpecProblem), f"{'.'.join(path)} = {wrong!r} was accepted"
        _problem_checked(checked)
        assert checked.message.startswith(f"spec.{'.'.join(path)}"), (path, checked.message)
        expected = {"nodeSelector": Reason.INVALID_SELECTOR, "schedule": Reason.INVALID_SCHEDULE}.get(
            path[0], Reason.INVALID_SPEC)
        assert checked.reason is expected, (path, checked.reason)

    fuzz()
    record_fuzz("Qualification specs with one field of the wrong kind (precise condition)", seen["examples"])

"""What the operator makes of a probe pod's output, from `evaluate_pod` to the writes it would send.

`judge()` is `handlers.reconcile`'s collection step without the API server (the result, the
evidence object and its digest); `plan_for()` puts judged pods into a running Qualification
and calls `plan()`; `check_writes()` asserts that everything the plan would write — status,
node labels and annotations, Events, the run summary and its Markdown — is bounded in size,
valid for the API server and free of control, format (bidi) and surrogate characters.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

from accelqual.adapters.evidence import sha256_hex
from accelqual.constants import Phase
from accelqual.handlers.reconcile import _evidence_body
from accelqual.models import QualificationSpec, QualificationStatus
from accelqual.planning.actions import CreatePod, MarkNode, PostEvent, UploadSummary
from accelqual.planning.naming import probe_pod_name
from accelqual.planning.plan import Plan, plan
from accelqual.planning.results import evaluate_pod
from accelqual.planning.snapshot import NodeInfo, NodeResult, PodPhase, ProbePodInfo, Snapshot
from accelqual.reporting.markdown import render_summary_markdown
from accelqual_probes.catalog import Suite, select
from accelqual_probes.profiles import BUILTIN, CardProfileSpec

from tests.support.reports import T0

QUALIFICATION = "fuzz"
RUN = "20261129-120000"
EXPECTED = tuple(select(Suite.QUICK))
PROFILE = BUILTIN["cpu-reference"]
SPEC = QualificationSpec.model_validate({
    "nodeSelector": {"matchLabels": {"pool": "a"}}, "suite": "quick", "failureBudget": "100%",
    "fleetRelative": {"enabled": False}, "report": {"bucket": "evidence", "prefix": "runs"}})
LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
MAX_STATUS_BYTES = 16 * 1024
MAX_ANNOTATION_BYTES = 4096
#: Characters the operator must never pass on from a node's output: controls, format characters (bidi
#: overrides, zero-width), surrogates, private use, unassigned, line and paragraph separators.
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def clean(text: str, *, newlines: bool = False) -> bool:
    return not any(unicodedata.category(ch) in FORBIDDEN_CATEGORIES and not (newlines and ch == "\n")
                   for ch in text)


def probe_pod(node: str = "node-0", *, exit_code: int | None = 0, reason: str = "",
              phase: PodPhase = PodPhase.SUCCEEDED) -> ProbePodInfo:
    return ProbePodInfo(name=probe_pod_name(QUALIFICATION, RUN, node), node=node, run_id=RUN, phase=phase,
                        uid=f"uid-{node}", reason=reason, exit_code=exit_code, created_at=T0, started_at=T0)


def judge(pod: ProbePodInfo, log: str, termination: str | None, *,
          profile: CardProfileSpec | None = PROFILE) -> tuple[NodeResult, bytes]:
    """The result and the evidence object, as the reconciler collects them."""
    truncated = len(log.encode("utf-8", errors="replace")) >= 1_048_576 + 65536
    result = evaluate_pod(pod, log, termination, expected_checks=EXPECTED, profile=profile, log_truncated=truncated)
    body = _evidence_body(QUALIFICATION, pod, result)
    if result.report_sha256 is None:
        result = replace(result, report_sha256=sha256_hex(body))
    assert sha256_hex(body) == result.report_sha256, "the evidence's digest is what marks and summary name"
    return result, body


def plan_for(judged: Iterable[tuple[ProbePodInfo, NodeResult]]) -> Plan:
    """The plan of a running Qualification whose pool is exactly the judged pods' nodes."""
    pods, results, nodes = [], {}, []
    for pod, result in judged:
        pods.append(pod)
        results[pod.name] = result
        nodes.append(NodeInfo(name=pod.node, labels={"pool": "a", "accelqual.io/profile": "cpu-reference"},
                              resource_version="7", uid=f"uid-{pod.node}", created_at=T0 - timedelta(days=1)))
    status = QualificationStatus(phase=Phase.RUNNING, observed_generation=1, run_id=RUN, started_at=T0)
    snap = Snapshot(name=QUALIFICATION, uid="q-uid", generation=1, annotations={}, nodes=tuple(nodes), busy={},
                    pods=tuple(pods), results=results)
    return plan(SPEC, snap, status, T0 + timedelta(minutes=5), namespace="accelqual-system")


def check_writes(decided: Plan) -> None:
    """Everything the plan would write is bounded, valid and clean."""
    status = decided.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    encoded = json.dumps(status)
    assert len(encoded) <= MAX_STATUS_BYTES, f"status is {len(encoded)} bytes"
    assert QualificationStatus.model_validate(status).model_dump(mode="json", by_alias=True, exclude_none=True) \
        == status, "the status does not round-trip through its schema"
    for text in _strings(status):
        assert clean(text), f"status carries unclean text {text!r}"
    for action in decided.actions:
        if isinstance(action, MarkNode):
            for key, value in action.labels.items():
                assert value is None or _is_label_value(value), f"label {key}={value!r} is not a label value"
            values = [v for v in action.annotations.values() if v is not None]
            assert sum(len(k) + len(v) for k, v in action.annotations.items() if v is not None) \
                <= MAX_ANNOTATION_BYTES
            for value in values:
                assert len(value) <= 1024 and clean(value), f"annotation value {value!r}"
        elif isinstance(action, PostEvent):
            assert len(action.message) <= 1024 and clean(action.message), f"Event message {action.message!r}"
        elif isinstance(action, UploadSummary):
            document = json.dumps(action.document, sort_keys=True).encode()
            markdown = render_summary_markdown(dict(action.document))
            markdown.encode("utf-8")  # strict: what the delivery uploads
            assert clean(markdown, newlines=True), "report.md carries unclean text"
            assert document
        elif isinstance(action, CreatePod):
            raise AssertionError("a running plan whose nodes all finished creates no pod")


def _is_label_value(value: str) -> bool:
    return len(value) <= 63 and re.fullmatch(LABEL_VALUE, value) is not None


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)

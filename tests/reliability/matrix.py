"""The fault matrix as data: one row per scenario, read by the parametrized test and by the doc renderer.

A row says what is injected and what must come out of it, in words (for docs/reliability.md)
and as data the harness (`tests.reliability.harness`) acts on: the pool (one token per node:
`ok`, a hardware fault the probe must catch, or a scripted probe behaviour), spec overrides,
and the faults with the moment each fires. Every row is checked against the same invariants:
the run completes or halts with a reason; every collected result reaches the status, the node
marks and S3 exactly once; no node is tainted or released wrongly; no duplicate pods remain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: When a fault fires: before the Qualification is applied, once a probe runs, once the first
#: node has a verdict in the status, or once the run reached its final phase.
Moment = Literal["start", "probe-running", "first-result", "final"]

#: Node tokens: what each node's probe does, and the verdict the operator must reach on it.
HARDWARE_FAULTS = {"slow-memory": "slow-memory=0.25", "slow-compute": "slow-compute=0.3",
                   "residual-memory": "residual-memory", "missing-device": "missing-device"}
HOSTILE = ("garbage", "huge", "forged", "other-node", "crash", "silent")
KILLED = ("hang", "oom", "evicted")


def expected_verdict(token: str) -> str:
    """The verdict a node with this token must get: only an honest, healthy node passes."""
    if token == "ok":
        return "pass"
    if token in HARDWARE_FAULTS:
        return "fail"
    if token in HOSTILE or token in KILLED:
        return "inconclusive"
    raise ValueError(f"unknown node token {token!r}")


@dataclass(frozen=True)
class ApiFaults:
    """Emulated API server faults (`FaultRule` keyword arguments), added at `when`."""

    rules: tuple[Mapping[str, Any], ...]
    when: Moment = "start"


@dataclass(frozen=True)
class Crash:
    """Kill the operator at the `nth` pass of crash point `point`, then start a fresh one."""

    point: str
    nth: int = 1


@dataclass(frozen=True)
class S3Outage:
    """S3 unreachable from `when` until the run reached its final phase (then it comes back)."""

    when: Moment = "start"


@dataclass(frozen=True)
class DeleteNode:
    """Delete node number `node` from the cluster while its probe runs."""

    node: int


@dataclass(frozen=True)
class Evict:
    """The kubelet evicts node `node`'s probe pod while it runs (memory pressure)."""

    node: int


@dataclass(frozen=True)
class ClockStep:
    """Step the operator's clock by `seconds` (negative: backwards) at `when`."""

    seconds: float
    when: Moment = "probe-running"


@dataclass(frozen=True)
class RivalController:
    """Another controller keeps writing every node of the pool (its own taint and annotation) during the run."""

    taint_key: str = "example.com/maintenance-window"


Fault = ApiFaults | Crash | S3Outage | DeleteNode | Evict | ClockStep | RivalController


@dataclass(frozen=True)
class Scenario:
    id: str
    injected: str
    expected: str
    #: One token per node `rel-0`, `rel-1`, ... (see `expected_verdict`).
    nodes: tuple[str, ...]
    faults: tuple[Fault, ...] = ()
    #: Overrides of the Qualification spec (see `harness.BASE_SPEC`).
    spec: Mapping[str, Any] = field(default_factory=dict)
    #: The final phase the run must reach.
    phase: Literal["Completed", "Halted"] = "Completed"
    #: The simulated kubelet's clock runs this much faster (activeDeadlineSeconds in seconds, not minutes).
    kubelet_speed: float = 1.0
    #: How long each modelled probe runs (long enough for a fault to fire while probes run).
    probe_seconds: float = 0.4


_POOL = ("ok", "ok", "slow-memory", "ok")

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "baseline", "nothing but the pool's one faulty card (slow memory), as in most rows: the reference run",
        "Completed: 3 pass, 1 fail tainted; every report, the summary and report.md in S3 once",
        _POOL),
    Scenario(
        "api-5xx-bursts",
        "HTTP 500/503 bursts on pod create, pod log, node patch, status patch, Event create and ConfigMap list",
        "Completed with the baseline's verdicts: every call retried or re-planned, nothing done twice",
        _POOL,
        (ApiFaults(({"method": "POST", "resource": "pods", "status": 500, "count": 3},
                    {"resource": "pods", "subresource": "log", "status": 503, "count": 3},
                    {"method": "PATCH", "resource": "nodes", "status": 500, "count": 3},
                    {"method": "PATCH", "resource": "qualifications", "subresource": "status", "status": 500,
                     "count": 3},
                    {"method": "POST", "resource": "events", "status": 503, "count": 2},
                    {"action": "list", "resource": "configmaps", "status": 500, "count": 2})),)),
    Scenario(
        "api-429-retry-after", "HTTP 429 with Retry-After: 1 on pod create, pod log and node patch",
        "Completed with the baseline's verdicts after waiting as told",
        _POOL,
        (ApiFaults(({"method": "POST", "resource": "pods", "status": 429, "retry_after": 1, "count": 2},
                    {"resource": "pods", "subresource": "log", "status": 429, "retry_after": 1, "count": 2},
                    {"method": "PATCH", "resource": "nodes", "status": 429, "retry_after": 1, "count": 2})),)),
    Scenario(
        "api-409-conflicts", "HTTP 409 Conflict on node patches (stale resourceVersion) and on status patches",
        "Completed: each mark re-read and re-applied, never written over a newer node",
        _POOL,
        (ApiFaults(({"method": "PATCH", "resource": "nodes", "status": 409, "count": 4},
                    {"method": "PATCH", "resource": "qualifications", "subresource": "status", "status": 409,
                     "count": 2})),)),
    Scenario(
        "rival-controller", "another controller taints and annotates every node of the pool throughout the run",
        "Completed: our marks retried on real conflicts; the rival's taint stays on every node",
        _POOL, (RivalController(),)),
    Scenario(
        "watch-streams-cut",
        "node, pod and Qualification watch streams cut after a few events, or halfway through one, repeatedly",
        "Completed: watches resume from their resourceVersion, no decision lost",
        _POOL,
        (ApiFaults(({"resource": "pods", "cut_watch_after": 2, "status": None, "count": 4},
                    {"resource": "pods", "cut_watch_after": 3, "cut_mid_event": True, "status": None, "count": 3},
                    {"resource": "nodes", "cut_watch_after": 2, "status": None, "count": 2},
                    {"resource": "nodes", "cut_watch_after": 2, "cut_mid_event": True, "status": None, "count": 2},
                    {"resource": "qualifications", "cut_watch_after": 1, "status": None, "count": 2},
                    {"resource": "qualifications", "cut_watch_after": 1, "cut_mid_event": True, "status": None,
                     "count": 2})),)),
    Scenario(
        "api-slow", "0.4 s added to pod, node and status requests",
        "Completed with the baseline's verdicts, only later",
        _POOL,
        (ApiFaults(({"resource": "pods", "status": None, "delay_s": 0.4, "count": 25},
                    {"method": "PATCH", "resource": "nodes", "status": None, "delay_s": 0.4, "count": 8},
                    {"method": "PATCH", "resource": "qualifications", "status": None, "delay_s": 0.4,
                     "count": 8})),)),
    Scenario(
        "crash-after-pod-create", "operator killed right after its 2nd probe pod create; restarted with empty memory",
        "Completed: the new operator finds the pods (no twins), each node probed once",
        _POOL, (Crash("pod-created", 2),)),
    Scenario(
        "crash-after-result-collection", "operator killed right after reading the first probe result",
        "Completed: the result is read again from the kept pod; nothing lost",
        _POOL, (Crash("result-collected", 1),)),
    Scenario(
        "crash-after-evidence-upload", "operator killed right after S3 stored the 2nd evidence object",
        "Completed: S3 already has it (conditional create), never written twice",
        _POOL, (Crash("evidence-stored", 2),)),
    Scenario(
        "crash-between-taint-and-status", "operator killed after tainting a failed node, before the status patch",
        "Completed: the mark stands (not re-applied), the status catches up",
        ("ok", "slow-memory", "residual-memory", "ok"), (Crash("node-marked", 1),),
        spec={"fleetRelative": {"enabled": True, "action": "fail"}}),
    Scenario(
        "crash-after-summary-upload", "operator killed after the run summary is in S3, before the status names it",
        "Completed: the stored summary is kept and named; summary.json and report.md written once",
        _POOL, (Crash("summary-delivered", 1),)),
    Scenario(
        "s3-outage", "S3 unreachable for the whole run, back after it completed",
        "Completed with an evidence backlog in the outbox; drained once S3 is back; nothing lost",
        _POOL, (S3Outage(),)),
    Scenario(
        "s3-outage-and-crash", "S3 unreachable and the operator killed after queuing the summary in the outbox",
        "Completed: the outbox survives the restart and drains; each object once in S3",
        _POOL, (S3Outage(), Crash("summary-delivered", 1))),
    Scenario(
        "node-deleted", "a node deleted while its probe runs",
        "Completed without it: its pod deleted, no verdict or taint for a node that left",
        ("ok", "ok", "hang", "slow-memory"), (DeleteNode(2),)),
    Scenario(
        "probe-evicted", "one probe pod evicted while running; another evicted as it printed a passing report",
        "Completed: both nodes inconclusive, never passed or tainted",
        ("ok", "hang", "evicted", "slow-memory"), (Evict(1),)),
    Scenario(
        "probe-oom-killed", "one probe OOM-killed (exit 137) after printing a passing report",
        "Completed: the node is inconclusive, not passed, not tainted",
        ("ok", "oom", "ok", "slow-memory")),
    Scenario(
        "probe-hang", "one probe never finishes; the kubelet kills it at activeDeadlineSeconds",
        "Completed: the node is inconclusive (deadline), not tainted",
        ("ok", "hang", "ok", "slow-memory"), spec={"probe": {"timeoutSeconds": 30}}, kubelet_speed=20.0),
    Scenario(
        "clock-step-forward", "the operator's clock stepped 2 hours forward while probes run",
        "Completed: no probe given up on, no node skipped or tainted for the step",
        ("ok", "ok", "slow-memory", "ok"), (ClockStep(7200.0),), probe_seconds=2.0),
    Scenario(
        "clock-step-backward", "the operator's clock stepped 1 hour backward while probes run",
        "Completed with the baseline's verdicts",
        ("ok", "ok", "slow-memory", "ok"), (ClockStep(-3600.0),), probe_seconds=2.0),
    Scenario(
        "hostile-probe-output",
        "probes printing garbage, 10 MiB, a forged pass, another node's report, a crash trace, nothing",
        "Completed: all six inconclusive, never a pass; status and annotations stay small",
        ("garbage", "huge", "forged", "other-node", "crash", "silent", "ok")),
    Scenario(
        "failure-budget-halt", "a bad driver: 4 of 5 nodes fail, failure budget 1",
        "Halted with reason FailureBudgetExceeded: only 1 node tainted, no pass of a failed node",
        ("slow-compute", "slow-compute", "ok", "slow-compute", "slow-compute"), spec={"failureBudget": 1},
        phase="Halted"),
)

"""Prometheus metrics, all in one place, prefix `accelqual_`; help text says what a value means.

Each operator owns a `CollectorRegistry` (several operators can live in one test process).
Cardinality is bounded: per-node series exist only for nodes of a Qualification's
current run and are removed when a new run starts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from accelqual_probes.catalog import BY_ID
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from accelqual.models import QualificationStatus
from accelqual.planning.actions import MarkNode
from accelqual.planning.snapshot import NodeResult

PHASES = ("Pending", "Running", "Completed", "Halted", "Invalid")
VERDICTS = ("pass", "fail", "inconclusive")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.phase = Gauge("accelqual_qualification_phase", "1 for the current phase of each Qualification, "
                           "0 for the others", ["qualification", "phase"], registry=r)
        self.nodes = Gauge("accelqual_run_nodes", "Nodes of the current run of a Qualification by state "
                           "(total, pending, running, passed, failed, inconclusive, skipped)",
                           ["qualification", "state"], registry=r)
        self.runs = Counter("accelqual_runs_started_total", "Qualification runs started", ["qualification"],
                            registry=r)
        self.halts = Counter("accelqual_failure_budget_halts_total", "Runs halted because their failures "
                             "exceeded the failure budget", ["qualification"], registry=r)
        self.node_verdict = Gauge("accelqual_node_verdict", "1 for the verdict of a node in the current run of a "
                                  "Qualification (pass, fail, inconclusive)", ["qualification", "node", "verdict"],
                                  registry=r)
        self.check_value = Gauge("accelqual_check_value", "Primary measured value of a check on a node in the "
                                 "current run (worst device), in the check's unit", ["qualification", "node",
                                                                                      "check", "unit"], registry=r)
        self.check_duration = Gauge("accelqual_node_probe_duration_seconds", "Wall time of the probe run on a "
                                    "node in the current run", ["qualification", "node"], registry=r)
        self.taints = Counter("accelqual_taint_actions_total", "Taints added or removed on nodes by the operator",
                              ["qualification", "action", "key"], registry=r)
        self.errors = Counter("accelqual_reconcile_errors_total", "Failed API or storage operations during "
                              "reconciliation, by operation", ["qualification", "operation"], registry=r)
        self.backlog = Gauge("accelqual_evidence_backlog", "Reports waiting in the outbox for upload to S3",
                             registry=r)
        self.last_run_finished = Gauge("accelqual_run_finished_timestamp_seconds", "Unix time the last run of a "
                                       "Qualification completed", ["qualification"], registry=r)
        self.run_started = Gauge("accelqual_run_started_timestamp_seconds", "Unix time the current run of a "
                                 "Qualification started", ["qualification"], registry=r)
        self._lock = threading.Lock()
        self._runs: dict[str, str | None] = {}
        self._halted: dict[str, bool] = {}
        self._series: dict[str, set[tuple[str, ...]]] = {}

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def observe_status(self, name: str, status: QualificationStatus) -> None:
        with self._lock:
            for phase in PHASES:
                self.phase.labels(name, phase).set(1.0 if status.phase.value == phase else 0.0)
            s = status.summary
            for state, value in (("total", s.total), ("pending", s.pending), ("running", s.running),
                                 ("passed", s.passed), ("failed", s.failed), ("inconclusive", s.inconclusive),
                                 ("skipped", s.skipped)):
                self.nodes.labels(name, state).set(value)
            if self._runs.get(name) != status.run_id and status.run_id is not None:
                if name in self._runs:
                    self._drop_series(name)
                self._runs[name] = status.run_id
                self.runs.labels(name).inc()
            if status.started_at is not None:
                self.run_started.labels(name).set(status.started_at.timestamp())
            if status.finished_at is not None:
                self.last_run_finished.labels(name).set(status.finished_at.timestamp())
            halted = status.phase.value == "Halted"
            if halted and not self._halted.get(name):
                self.halts.labels(name).inc()
            self._halted[name] = halted

    def observe_result(self, name: str, result: NodeResult) -> None:
        with self._lock:
            if self._runs.get(name) not in (None, result.run_id):
                return  # a straggler of an older run: its series were dropped with that run
            series = self._series.setdefault(name, set())
            for verdict in VERDICTS:
                self.node_verdict.labels(name, result.node, verdict).set(
                    1.0 if result.verdict.value == verdict else 0.0)
            series.add(("verdict", result.node))
            for check_id, outcome in result.checks.items():
                if outcome.value is None:
                    continue
                unit = BY_ID[check_id].unit if check_id in BY_ID else ""
                self.check_value.labels(name, result.node, check_id, unit).set(outcome.value)
                series.add(("check", result.node, check_id, unit))
            self.check_duration.labels(name, result.node).set(result.duration_seconds)
            series.add(("duration", result.node))

    def _drop_series(self, name: str) -> None:
        for key in self._series.pop(name, set()):
            try:
                if key[0] == "verdict":
                    for verdict in VERDICTS:
                        self.node_verdict.remove(name, key[1], verdict)
                elif key[0] == "check":
                    self.check_value.remove(name, *key[1:])
                else:
                    self.check_duration.remove(name, key[1])
            except KeyError:
                pass

    def node_marked(self, name: str, mark: MarkNode) -> None:
        for taint in mark.add_taints:
            self.taints.labels(name, "add", taint.key).inc()
        for taint in mark.remove_taints:
            self.taints.labels(name, "remove", taint.key).inc()

    def reconcile_error(self, name: str, operation: str) -> None:
        self.errors.labels(name, operation).inc()

    def evidence_backlog(self, count: int) -> None:
        self.backlog.set(count)

    def forget(self, names: Iterable[str]) -> None:
        with self._lock:
            for name in names:
                self._drop_series(name)
                for phase in PHASES:
                    try:
                        self.phase.remove(name, phase)
                    except KeyError:
                        pass

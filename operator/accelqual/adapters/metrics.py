"""Prometheus metrics, all in one place, prefix `accelqual_`; help text says what a value means.

The reconciler feeds this module (statuses it wrote, results it collected, marks it
applied, evidence it moved); `accelqual operator --metrics-port` serves it, and the
shipped alerts (`helm/accelqual/files/alerts.yaml`) and dashboard query it, so a
metric renamed here must be renamed there (a test checks the dashboard).

Each operator owns a `CollectorRegistry` (several operators can live in one test process).
Cardinality is bounded: per-node series exist only for the nodes of a Qualification's
current run and are removed when a new run starts or the Qualification goes away; every
other label is a Qualification, a check id, a phase, a verdict or a taint key.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from accelqual_probes.catalog import BY_ID
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from accelqual import __version__
from accelqual.models import QualificationStatus
from accelqual.planning.actions import MarkNode
from accelqual.planning.fleet import FLEET_COMPARED
from accelqual.planning.snapshot import NodeResult

PHASES = ("Pending", "Running", "Completed", "Halted", "Invalid")
VERDICTS = ("pass", "fail", "inconclusive")
STATES = ("total", "pending", "running", "passed", "failed", "inconclusive", "skipped")
#: Check durations span a launch-latency probe (well under a second) to a burn-in (an hour).
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
#: Check verdicts counted by accelqual_check_failed_nodes.
_FAILING = frozenset({"fail", "error"})
#: The unit of each check whose per-node value is exported (those compared across the pool).
_COMPARED_UNITS = {check_id: BY_ID[check_id].unit for check_id in FLEET_COMPARED}
#: The `le` labels of DURATION_BUCKETS, then +Inf, as the client library writes them.
_BUCKET_BOUNDS = (*(str(float(b)) for b in DURATION_BUCKETS), "+Inf")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._lock = threading.Lock()
        self.info = Gauge("accelqual_build_info", "Always 1 while the operator runs; `version` is the operator's "
                          "version. Absent means the operator is down or not scraped", ["version"], registry=r)
        self.info.labels(__version__).set(1)
        # --- runs -------------------------------------------------------------------------
        self.phase = Gauge("accelqual_qualification_phase", "1 for the current phase of each Qualification "
                           "(Pending, Running, Completed, Halted, Invalid), 0 for the others",
                           ["qualification", "phase"], registry=r)
        self.nodes = Gauge("accelqual_run_nodes", "Nodes of the current run of a Qualification by state: total, "
                           "pending (not started), running, passed, failed, inconclusive, skipped",
                           ["qualification", "state"], registry=r)
        self.runs = Counter("accelqual_runs_started_total", "Qualification runs started (seen by this operator "
                            "process)", ["qualification"], registry=r)
        self.runs_finished = Counter("accelqual_runs_finished_total", "Qualification runs that ended, by the phase "
                                     "they ended in (Completed, or Halted by the failure budget)",
                                     ["qualification", "phase"], registry=r)
        self.halts = Counter("accelqual_failure_budget_halts_total", "Runs halted because their failures "
                             "exceeded the failure budget (the run stops tainting until resumed)",
                             ["qualification"], registry=r)
        self.run_started = Gauge("accelqual_run_started_timestamp_seconds", "Unix time the current run of a "
                                 "Qualification started", ["qualification"], registry=r)
        self.last_run_finished = Gauge("accelqual_run_finished_timestamp_seconds", "Unix time the last run of a "
                                       "Qualification completed", ["qualification"], registry=r)
        self.progress = Gauge("accelqual_run_progress_timestamp_seconds", "Unix time the current run of a "
                              "Qualification last made progress (started, or a node got a verdict); a Running "
                              "run whose value is old is stalled", ["qualification"], registry=r)
        # --- nodes and checks of the current run --------------------------------------------
        # Per-node series live in plain dicts and become samples only when scraped (`_NodeSeries`):
        # `labels()` of a labelled Gauge costs tens of microseconds, and a 5,000-node run sets some
        # 80,000 of them, more CPU than the rest of a node's handling.
        self._node_series = _NodeSeries(self._lock)
        r.register(self._node_series)
        self.check_failed = Gauge("accelqual_check_failed_nodes", "Nodes of the current run on which a check "
                                  "failed or errored", ["qualification", "check"], registry=r)
        # --- actions and errors -------------------------------------------------------------
        self.taints = Counter("accelqual_taint_actions_total", "Taints added or removed on nodes by the operator",
                              ["qualification", "action", "key"], registry=r)
        self.errors = Counter("accelqual_reconcile_errors_total", "Failed API or storage operations during "
                              "reconciliation, by operation (retried on the next reconcile)",
                              ["qualification", "operation"], registry=r)
        # --- evidence -----------------------------------------------------------------------
        self.backlog = Gauge("accelqual_evidence_backlog", "Evidence objects (node reports, run summaries, human "
                             "reports) of a Qualification not yet in S3: in the outbox ConfigMaps or still to be "
                             "written there", ["qualification"], registry=r)
        self.outbox_bytes = Gauge("accelqual_evidence_outbox_bytes", "Compressed bytes of evidence held in the "
                                  "outbox ConfigMaps of a Qualification while S3 is unavailable", ["qualification"],
                                  registry=r)
        self.uploads = Counter("accelqual_evidence_uploads_total", "Evidence uploads to S3 by result (ok, failed)",
                               ["result"], registry=r)
        self._runs: dict[str, str | None] = {}
        self._phases: dict[str, str] = {}
        self._done: dict[str, int] = {}
        self._failed_checks: dict[str, dict[str, set[str]]] = {}
        self._server: WSGIServer | None = None
        self.port: int | None = None

    # --- serving --------------------------------------------------------------------------

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve /metrics on `port` (0: a free port); returns the port bound."""
        server, _ = start_http_server(port, addr=addr, registry=self.registry)
        self._server = server
        self.port = int(server.server_port)
        return self.port

    def stop_serving(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --- observations -----------------------------------------------------------------------

    def observe_status(self, name: str, status: QualificationStatus, now: datetime | None = None) -> None:
        with self._lock:
            phase = status.phase.value
            for candidate in PHASES:
                self.phase.labels(name, candidate).set(1.0 if phase == candidate else 0.0)
            s = status.summary
            for state, value in zip(STATES, (s.total, s.pending, s.running, s.passed, s.failed, s.inconclusive,
                                             s.skipped), strict=True):
                self.nodes.labels(name, state).set(value)
            if self._runs.get(name) != status.run_id and status.run_id is not None:
                if name in self._runs:
                    self._drop_series(name)
                self._runs[name] = status.run_id
                self._done.pop(name, None)
                self.runs.labels(name).inc()
            if status.started_at is not None:
                self.run_started.labels(name).set(status.started_at.timestamp())
            if status.finished_at is not None:
                self.last_run_finished.labels(name).set(status.finished_at.timestamp())
            done = s.passed + s.failed + s.inconclusive + s.skipped
            if status.run_id is not None and self._done.get(name) != done:
                self._done[name] = done
                moment = now if now is not None and done else status.started_at or now
                if moment is not None:
                    self.progress.labels(name).set(moment.timestamp())
            before = self._phases.get(name)
            if before is not None and before != phase and phase in ("Completed", "Halted"):
                self.runs_finished.labels(name, phase).inc()
                if phase == "Halted":
                    self.halts.labels(name).inc()
            self._phases[name] = phase

    def observe_result(self, name: str, result: NodeResult) -> None:
        with self._lock:
            if self._runs.get(name) not in (None, result.run_id):
                return  # a straggler of an older run: its series were dropped with that run
            failed = self._failed_checks.setdefault(name, {})
            all_durations = self._node_series.durations
            node = result.node
            values: dict[str, tuple[str, float]] = {}
            for check_id, outcome in result.checks.items():
                nodes = failed.get(check_id)
                if nodes is None:
                    nodes = failed[check_id] = set()
                    self.check_failed.labels(name, check_id).set(0)
                if outcome.verdict in _FAILING:
                    if node not in nodes:
                        nodes.add(node)
                        self.check_failed.labels(name, check_id).set(len(nodes))
                elif node in nodes:
                    nodes.discard(node)
                    self.check_failed.labels(name, check_id).set(len(nodes))
                if outcome.duration_seconds:
                    durations = all_durations.get((name, check_id))
                    if durations is None:
                        durations = all_durations[(name, check_id)] = [0.0] * (len(DURATION_BUCKETS) + 2)
                    durations[bisect.bisect_left(DURATION_BUCKETS, outcome.duration_seconds)] += 1
                    durations[-1] += outcome.duration_seconds
                # Per-node values only for the checks compared across the pool (about a dozen): with all
                # checks a 5,000-node pool would export over 100,000 series from one operator.
                unit = _COMPARED_UNITS.get(check_id)
                if unit is not None and outcome.value is not None:
                    values[check_id] = (unit, outcome.value)
            self._node_series.nodes.setdefault(name, {})[result.node] = _NodeSample(
                result.verdict.value, values, result.duration_seconds)

    def _drop_series(self, name: str) -> None:
        """Forget the per-node series of `name`'s current run (a new run starts, or it is gone)."""
        self._node_series.nodes.pop(name, None)
        for check_id in self._failed_checks.pop(name, {}):
            _remove(self.check_failed, name, check_id)

    def node_marked(self, name: str, mark: MarkNode) -> None:
        for taint in mark.add_taints:
            self.taints.labels(name, "add", taint.key).inc()
        for taint in mark.remove_taints:
            self.taints.labels(name, "remove", taint.key).inc()

    def reconcile_error(self, name: str, operation: str) -> None:
        self.errors.labels(name, operation).inc()

    def evidence_backlog(self, name: str, count: int, outbox_bytes: int = 0) -> None:
        self.backlog.labels(name).set(count)
        self.outbox_bytes.labels(name).set(outbox_bytes)

    def evidence_uploaded(self, ok: bool, count: int = 1) -> None:
        self.uploads.labels("ok" if ok else "failed").inc(count)

    def forget(self, names: Iterable[str]) -> None:
        """Remove every series of Qualifications that are gone (or whose daemon stopped)."""
        with self._lock:
            for name in names:
                self._drop_series(name)
                for key in [k for k in self._node_series.durations if k[0] == name]:
                    del self._node_series.durations[key]
                self._runs.pop(name, None)
                self._phases.pop(name, None)
                self._done.pop(name, None)
                for phase in PHASES:
                    _remove(self.phase, name, phase)
                for state in STATES:
                    _remove(self.nodes, name, state)
                for gauge in (self.run_started, self.last_run_finished, self.progress, self.backlog,
                              self.outbox_bytes):
                    _remove(gauge, name)


@dataclass(frozen=True)
class _NodeSample:
    verdict: str
    #: check id -> (unit, primary value), for the checks compared across the pool
    values: dict[str, tuple[str, float]]
    duration_seconds: float


class _NodeSeries(Collector):
    """The per-node series of the current runs and the check durations, built at scrape time."""

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        #: qualification -> node -> its latest result in the current run
        self.nodes: dict[str, dict[str, _NodeSample]] = {}
        #: (qualification, check) -> observations per bucket of DURATION_BUCKETS (+Inf last), then their sum
        self.durations: dict[tuple[str, str], list[float]] = {}

    def collect(self) -> Iterable[Metric]:
        verdicts = GaugeMetricFamily(
            "accelqual_node_verdict", "1 for the verdict of a node in the current run of a Qualification (pass, "
            "fail, inconclusive), 0 for the others", labels=["qualification", "node", "verdict"])
        values = GaugeMetricFamily(
            "accelqual_check_value", "Primary measured value of a performance check on a node in the current run "
            "(the worst device), in the check's unit; only checks compared across the pool are exported per node, "
            "to bound the series count; the check's limit is in the node's report",
            labels=["qualification", "node", "check", "unit"])
        durations = GaugeMetricFamily(
            "accelqual_node_probe_duration_seconds", "Wall time of the whole probe run on a node in the current run",
            labels=["qualification", "node"])
        histogram = HistogramMetricFamily(
            "accelqual_check_duration_seconds", "Wall time of one check on one node, as the probe measured it",
            labels=["qualification", "check"])
        with self._lock:
            snapshot = [(name, list(nodes.items())) for name, nodes in self.nodes.items()]
            duration_rows = [(key, list(counts)) for key, counts in self.durations.items()]
        for (name, check_id), counts in duration_rows:
            cumulative, buckets = 0.0, []
            for bound, count in zip(_BUCKET_BOUNDS, counts, strict=False):
                cumulative += count
                buckets.append((bound, cumulative))
            histogram.add_metric([name, check_id], buckets, counts[-1])
        for name, nodes in snapshot:
            for node, sample in nodes:
                for verdict in VERDICTS:
                    verdicts.add_metric([name, node, verdict], 1.0 if sample.verdict == verdict else 0.0)
                for check_id, (unit, value) in sample.values.items():
                    values.add_metric([name, node, check_id, unit], value)
                durations.add_metric([name, node], sample.duration_seconds)
        return [verdicts, values, durations, histogram]


def _remove(metric: Gauge, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass

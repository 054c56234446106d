"""One reconcile of one Qualification: build the snapshot, call `plan()`, apply the actions, write status.

Called by the per-Qualification daemon (`handlers.registry`). The cluster view comes
from kopf indexes (watch-fed, no listing per reconcile); blocking API and S3 calls run
in a thread pool. Results of finished probe pods are read once (log tail + termination
message), validated as hostile input and cached; their evidence is handed to
`handlers.delivery` (S3, or the durable outbox while S3 fails).

Crash points: a test harness may pass `crash_points`, called with the name of each point
below as the reconcile passes it. An exception from it is the operator's death at that
point: the reconcile stops where it is, and this reconciler never writes anything again
(a new one, with empty memory, takes over, as after a pod restart). Points:
`pod-created` (a probe pod's create succeeded), `result-collected` (a finished pod's output
read and judged, before its evidence or mark), `evidence-stored` (an object is in S3, before
the outbox or the caches forget it), `node-marked` (a node's verdict and taint are written,
before the status), `summary-delivered` (the run summary is stored, before the status names
it), `status-written`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from accelqual_probes.catalog import select
from accelqual_probes.profiles import CardProfileSpec
from accelqual_probes.schema import MAX_REPORT_BYTES

from accelqual.adapters.evidence import EvidenceError, EvidenceStore, S3Credentials, S3Evidence, sha256_hex
from accelqual.adapters.kube import (
    MERGE_PATCH,
    KubeClient,
    KubeError,
    event_path,
    node_path,
    pod_path,
    qualification_path,
)
from accelqual.adapters.kube_async import AsyncKube
from accelqual.adapters.metrics import Metrics
from accelqual.adapters.objects import node_info
from accelqual.adapters.watch import Connection
from accelqual.constants import MANAGER, ConditionType, Phase, Reason
from accelqual.handlers.delivery import CRASH_EVIDENCE_STORED, EvidenceDelivery
from accelqual.handlers.delivery import EvidenceFactory as EvidenceFactory  # re-exported for runtime
from accelqual.handlers.state import OperatorState, PendingEvidence, QualificationState
from accelqual.models import QualificationSpec, QualificationStatus, ReportSpec
from accelqual.planning.actions import (
    Action,
    CreatePod,
    DeletePod,
    MarkNode,
    PostEvent,
    RemoveAnnotation,
    UploadSummary,
    node_patch,
)
from accelqual.planning.conditions import set_condition
from accelqual.planning.naming import event_name, evidence_key
from accelqual.planning.plan import plan
from accelqual.planning.profiles import profile_for
from accelqual.planning.results import evaluate_pod
from accelqual.planning.snapshot import NodeInfo, NodeResult, PodPhase, ProbePodInfo, Snapshot
from accelqual.planning.validation import SpecProblem, invalid_status, validate_spec

log = logging.getLogger("accelqual.reconcile")
T = TypeVar("T")

#: How much of a probe pod's log is read: the report is the last line; a little slack for
#: progress lines printed after it. Anything longer is truncated and the node inconclusive.
LOG_TAIL_LINES = 20
LOG_LIMIT_BYTES = MAX_REPORT_BYTES + 65536
#: A created pod that no watch event confirmed within this time is forgotten (and re-planned).
CREATED_TTL = timedelta(seconds=120)

CRASH_POD_CREATED = "pod-created"
CRASH_RESULT_COLLECTED = "result-collected"
CRASH_NODE_MARKED = "node-marked"
CRASH_SUMMARY_DELIVERED = "summary-delivered"
CRASH_STATUS_WRITTEN = "status-written"
#: Every named point of a reconcile, in the order a run passes them (see the module docstring).
CRASH_POINTS = (CRASH_POD_CREATED, CRASH_RESULT_COLLECTED, CRASH_EVIDENCE_STORED, CRASH_NODE_MARKED,
                CRASH_SUMMARY_DELIVERED, CRASH_STATUS_WRITTEN)
#: How long a dead reconciler's daemon waits between (empty) reconciles until it is stopped.
DEAD_REQUEUE = 3600.0

CrashPoints = Callable[[str], None]


class OperatorDead(Exception):  # noqa: N818 - a state, not an error of the caller's
    """Raised by a reconciler that died at a crash point, at its next attempt to write anything."""


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of one operator process."""

    namespace: str = "accelqual-system"  # where probe pods run
    event_namespace: str = "default"  # Events of cluster-scoped objects (nodes, qualifications)
    #: Where the operator reads a report Secret that names no namespace.
    secret_namespace: str = "accelqual-system"
    workers: int = 16
    instance: str = "accelqual-operator"
    #: Longest wait between S3 attempts while evidence waits in the outbox.
    evidence_backoff_max: float = 60.0
    #: Probe image per software stack (cuda, rocm, ascend, cpu) for Qualifications that name none.
    probe_images: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterView:
    """The watch-fed indexes a reconcile reads (kopf indexes, or plain dicts in tests)."""

    nodes: Mapping[str, Iterable[NodeInfo]]
    probe_pods: Mapping[str, Iterable[tuple[ProbePodInfo, str | None]]]
    busy: Mapping[str, Iterable[frozenset[str]]]
    profiles: Mapping[str, Iterable[CardProfileSpec | str]]


def default_evidence_factory(report: ReportSpec, credentials: S3Credentials | None) -> EvidenceStore:
    return S3Evidence(report.bucket, region=report.region, endpoint=report.endpoint, credentials=credentials)


class Reconciler:
    """Holds the clients and caches; `reconcile()` is called by the daemon of each Qualification."""

    def __init__(self, kube: KubeClient, config: OperatorConfig, *, state: OperatorState | None = None,
                 metrics: Metrics | None = None, clock: Callable[[], datetime] | None = None,
                 evidence_factory: EvidenceFactory = default_evidence_factory,
                 crash_points: CrashPoints | None = None, monotonic: Callable[[], float] | None = None) -> None:
        self.kube = kube
        self.config = config
        self.state = state or OperatorState()
        self.metrics = metrics or Metrics()
        self.clock = clock or (lambda: datetime.now(UTC))
        #: Seconds that never step (the wall clock may): how long the operator itself has watched a pod.
        self.monotonic = monotonic or time.monotonic
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="accelqual-io")
        # The per-node hot path (pods, logs, node marks) goes over aiohttp on the event loop.
        self.akube = AsyncKube(Connection(kube.configuration))
        self._crash_points = crash_points
        #: The crash point this reconciler died at (then it never writes again), else None.
        self.died_at: str | None = None
        self.delivery = EvidenceDelivery(kube, config.namespace, config.secret_namespace, self.metrics, self._io,
                                         evidence_factory, backoff_max=config.evidence_backoff_max,
                                         checkpoint=self._checkpoint)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _checkpoint(self, point: str | None) -> None:
        """Pass crash point `point` (None: only check that this reconciler is alive, before a write)."""
        if self.died_at is not None:
            raise OperatorDead(f"the operator died at {self.died_at}")
        if point is None or self._crash_points is None:
            return
        try:
            self._crash_points(point)
        except Exception:
            self.died_at = point
            raise

    # --- the reconcile ------------------------------------------------------------------

    async def reconcile(self, name: str, body: Mapping[str, Any], view: ClusterView) -> float:
        """Reconcile one Qualification; returns the seconds until the next reconcile at the latest."""
        if self.died_at is not None:
            return DEAD_REQUEUE
        try:
            return await self._reconcile(name, body, view)
        except Exception:
            if self.died_at is None:
                raise
            log.error("operator died at crash point %s while reconciling %s; it writes nothing more", self.died_at,
                      name)
            return DEAD_REQUEUE

    async def _reconcile(self, name: str, body: Mapping[str, Any], view: ClusterView) -> float:
        now = self.clock()
        qs = self.state.of(name)
        meta = body.get("metadata") or {}
        generation = int(meta.get("generation") or 0)
        uid = str(meta.get("uid") or "")
        status = self._current_status(qs, body)
        profiles = _profiles(view.profiles)
        checked = validate_spec(body.get("spec") or {}, profiles)
        if isinstance(checked, SpecProblem):
            for event in await self.delivery.flush(name, uid, qs, now):  # evidence of earlier runs still goes
                await self._try_post(name, qs, event, uid)
            await self._reject(name, qs, status, checked, generation, now)
            retry = self.delivery.retry_in(qs, now)
            return 60.0 if retry is None else min(60.0, retry)
        spec = checked

        nodes = self._pool_nodes(spec, view)
        pods = self._probe_pods(name, qs, view, now)
        await self._collect(name, qs, spec, pods, nodes, profiles)
        for event in await self.delivery.flush(name, uid, qs, now):
            await self._try_post(name, qs, event, uid)
        snapshot = Snapshot(
            name=name,
            uid=uid,
            generation=generation,
            annotations=dict(meta.get("annotations") or {}),
            nodes=tuple(nodes.values()),
            busy=_busy(view.busy),
            pods=tuple(pods),
            results={pod: result for pod, (_, result) in qs.results.items()},
            custom_profiles=profiles,
            probe_images=self.config.probe_images,
            evidence_pending=frozenset(qs.evidence),
            evidence_outbox=self.delivery.backlog(qs) - len(qs.evidence),
        )
        decided = plan(spec, snapshot, status, now, namespace=self.config.namespace)
        new_status = decided.status
        actions = decided.actions
        if new_status.run_id != status.run_id and any(isinstance(a, CreatePod) for a in actions):
            # A new run is recorded before its first pod exists: an operator restarted after creating
            # pods, or whose next status write fails, must go on with this run, not start a twin beside it.
            if not await self._write_status(name, qs, status, new_status):
                actions = [a for a in actions if not isinstance(a, CreatePod)]
        failures = await self._apply(name, uid, qs, spec, actions, new_status, nodes, now)
        self._count_backlog(qs, new_status, now)
        await self._write_status(name, qs, status, new_status)
        self.metrics.observe_status(name, new_status, now)
        retry = self.delivery.retry_in(qs, now)
        requeue = decided.requeue_after if retry is None else min(decided.requeue_after, retry)
        return 1.0 if failures else requeue

    def _count_backlog(self, qs: QualificationState, status: QualificationStatus, now: datetime) -> None:
        """The backlog after this reconcile's actions (a run summary may just have joined the outbox)."""
        backlog = self.delivery.backlog(qs)
        if backlog > status.evidence_backlog:
            set_condition(status, ConditionType.DEGRADED, True, Reason.EVIDENCE_BACKLOG,
                          f"{backlog} evidence objects wait for upload", now, status.observed_generation or 0)
        status.evidence_backlog = backlog

    def _current_status(self, qs: QualificationState, body: Mapping[str, Any]) -> QualificationStatus:
        """The status we wrote last (the watch may lag behind our own write), else the object's."""
        if qs.status is not None:
            return qs.status
        raw = body.get("status") or {}
        try:
            return QualificationStatus.model_validate(dict(raw))
        except ValueError:
            log.warning("status of %s is not ours or is corrupt; starting from an empty status",
                        (body.get("metadata") or {}).get("name"))
            return QualificationStatus()

    async def _reject(self, name: str, qs: QualificationState, status: QualificationStatus, problem: SpecProblem,
                      generation: int, now: datetime) -> None:
        new_status = invalid_status(status, problem, generation, now)
        await self._write_status(name, qs, status, new_status)
        self.metrics.observe_status(name, new_status)
        if qs.invalid_reported != generation:
            qs.invalid_reported = generation
            log.warning("Qualification %s is invalid: %s", name, problem.message)
            await self._post_event(qs, PostEvent("Qualification", name, "Warning", problem.reason.value,
                                                 problem.message, key=f"invalid/{generation}"))

    # --- snapshot -----------------------------------------------------------------------

    def _pool_nodes(self, spec: QualificationSpec, view: ClusterView) -> dict[str, NodeInfo]:
        nodes: dict[str, NodeInfo] = {}
        overlay = self.state.node_overlay
        for name, infos in view.nodes.items():
            for info in infos:
                newer = overlay.get(name)
                if newer is not None:
                    if _rv_newer_or_equal(info.resource_version, newer.resource_version):
                        overlay.pop(name, None)
                    else:
                        info = newer
                if spec.node_selector.matches(info.labels):
                    nodes[name] = info
        return nodes

    def _probe_pods(self, name: str, qs: QualificationState, view: ClusterView, now: datetime) -> list[ProbePodInfo]:
        pods: dict[str, ProbePodInfo] = {}
        self._termination: dict[str, str | None] = {}
        mono = self.monotonic()
        observed: dict[str, tuple[str, float]] = {}
        for pod, message in view.probe_pods.get(name, ()):
            if pod.name in qs.deleted:
                pod = replace(pod, deleting=True)
            if not pod.finished:
                phase = "running" if pod.started_at is not None else "pending"
                seen = qs.observed.get(pod.name)
                since = seen[1] if seen is not None and seen[0] == phase else mono
                observed[pod.name] = (phase, since)
                pod = replace(pod, observed_seconds=mono - since)
            pods[pod.name] = pod
            self._termination[pod.name] = message
        qs.observed = observed
        qs.deleted &= set(pods)
        for pod_name, (node, run) in list(qs.created.items()):
            if pod_name in pods:
                del qs.created[pod_name]
                continue
            created_at = datetime.fromisoformat(run.split("|", 1)[1]) if "|" in run else now
            if now - created_at > CREATED_TTL:
                del qs.created[pod_name]
                continue
            pods[pod_name] = ProbePodInfo(name=pod_name, node=node, run_id=run.split("|", 1)[0],
                                          phase=PodPhase.PENDING, created_at=created_at)
        # Cached results of pods that are gone are dropped (their run is over or the pod was deleted).
        for gone in set(qs.results) - set(pods):
            qs.results.pop(gone, None)
        return list(pods.values())

    async def _collect(self, name: str, qs: QualificationState, spec: QualificationSpec,
                       pods: list[ProbePodInfo], nodes: Mapping[str, NodeInfo],
                       profiles: Mapping[str, CardProfileSpec]) -> None:
        todo = [p for p in pods if p.finished and not p.deleting
                and (p.name not in qs.results or qs.results[p.name][0] != p.uid)]
        if not todo:
            return
        expected = tuple(select(spec.suite, spec.checks or None, spec.skip_checks))

        def judge(pod: ProbePodInfo, text: str, profile: CardProfileSpec | None) -> NodeResult:
            # On the event loop: about a millisecond of CPU per report (bounded by LOG_LIMIT_BYTES); a worker
            # thread gained no parallelism under the GIL and cost a hand-off per node.
            truncated = len(text.encode("utf-8", errors="replace")) >= LOG_LIMIT_BYTES
            return evaluate_pod(pod, text, self._termination.get(pod.name), expected_checks=expected,
                                profile=profile, log_truncated=truncated)

        async def collect(pod: ProbePodInfo) -> None:
            node = nodes.get(pod.node)
            profile = profile_for(spec.profile, node, profiles).spec if node is not None else None
            try:
                text = await self.akube.read_log(pod_path(self.config.namespace, pod.name), tail_lines=LOG_TAIL_LINES,
                                                 limit_bytes=LOG_LIMIT_BYTES)
                result = judge(pod, text, profile)
            except KubeError as exc:
                if exc.not_found:
                    return
                log.warning("cannot read the output of probe pod %s: %s", pod.name, exc)
                self.metrics.reconcile_error(name, "log")
                return
            self.metrics.observe_result(name, result)
            if spec.report is not None:
                key = evidence_key(spec.report.prefix, name, pod.run_id, pod.node)
                body = _evidence_body(name, pod, result)
                if result.report_sha256 is None:
                    # A rejected output's record is its evidence: the node mark and the summary name it too.
                    result = replace(result, report_sha256=sha256_hex(body))
                qs.evidence[pod.name] = PendingEvidence(key=key, body=body, report=spec.report.to_json_dict())
            # The report text now lives in the evidence queue (or nowhere, without a report bucket);
            # the cache keeps only the verdict and the numbers, so memory stays flat at fleet scale.
            qs.results[pod.name] = (pod.uid, replace(result, report_json=None))
            log.info("node %s: %s (%s)", pod.node, result.verdict.value, result.reason)
            self._checkpoint(CRASH_RESULT_COLLECTED)

        await asyncio.gather(*(collect(p) for p in todo))

    # --- applying the plan --------------------------------------------------------------

    async def _apply(self, name: str, uid: str, qs: QualificationState, spec: QualificationSpec,
                     actions: list[Action], status: QualificationStatus, nodes: Mapping[str, NodeInfo],
                     now: datetime) -> int:
        """Apply in dependency order; returns how many actions failed (they are re-planned next time)."""
        failures = 0
        order: list[type] = [RemoveAnnotation, MarkNode, CreatePod, DeletePod, UploadSummary, PostEvent]
        for kind in order:
            batch = [a for a in actions if isinstance(a, kind)]
            if not batch:
                continue
            outcomes = await asyncio.gather(*(self._apply_one(name, uid, qs, spec, a, status, nodes, now)
                                              for a in batch))
            failures += sum(1 for ok in outcomes if not ok)
        return failures

    async def _apply_one(self, name: str, uid: str, qs: QualificationState, spec: QualificationSpec, action: Action,
                         status: QualificationStatus, nodes: Mapping[str, NodeInfo], now: datetime) -> bool:
        try:
            self._checkpoint(None)
            if isinstance(action, CreatePod):
                await self._create_pod(qs, action, now)
            elif isinstance(action, DeletePod):
                await self._delete_pod(qs, action)
            elif isinstance(action, MarkNode):
                await self._mark(name, action, nodes.get(action.node))
            elif isinstance(action, PostEvent):
                await self._post_event(qs, action, uid if action.kind == "Qualification" else _node_uid(nodes, action))
            elif isinstance(action, UploadSummary):
                await self._upload_summary(name, uid, qs, spec, action, status, now)
            elif isinstance(action, RemoveAnnotation):
                await self._io(self.kube.patch, qualification_path(name),
                               {"metadata": {"annotations": {action.key: None}}}, MERGE_PATCH)
            return True
        except KubeError as exc:
            log.warning("%s for %s failed: %s", type(action).__name__, name, exc)
            self.metrics.reconcile_error(name, type(action).__name__)
            return False
        except EvidenceError as exc:
            log.warning("summary upload for %s failed: %s", name, exc)
            return False

    async def _create_pod(self, qs: QualificationState, action: CreatePod, now: datetime) -> None:
        manifest = action.manifest
        pod_name = str(manifest["metadata"]["name"])
        run = str(manifest["metadata"]["labels"]["accelqual.io/run"])
        try:
            await self.akube.create(pod_path(self.config.namespace), manifest)
        except KubeError as exc:
            if not exc.conflict:  # 409: our own pod from before a restart, which is success
                raise
        qs.created[pod_name] = (action.node, f"{run}|{now.isoformat()}")
        self._checkpoint(CRASH_POD_CREATED)

    async def _delete_pod(self, qs: QualificationState, action: DeletePod) -> None:
        try:
            await self.akube.delete(pod_path(self.config.namespace, action.name))
        except KubeError as exc:
            if not exc.not_found:
                raise
        qs.deleted.add(action.name)
        qs.results.pop(action.name, None)

    async def _mark(self, name: str, mark: MarkNode, known: NodeInfo | None) -> None:
        """Patch a node with the resourceVersion precondition; on conflict re-read and re-apply the intent."""
        current = known
        for _attempt in range(3):
            if current is None:
                current = node_info(await self.akube.get(node_path(mark.node)))
            body = node_patch(mark, current.taints, current.unschedulable, current.resource_version)
            self._checkpoint(None)
            try:
                patched = await self.akube.patch(node_path(mark.node), body, MERGE_PATCH)
            except KubeError as exc:
                if exc.conflict:
                    current = None
                    continue
                raise
            self.state.node_overlay[mark.node] = node_info(patched)
            self.metrics.node_marked(name, mark)
            self._checkpoint(CRASH_NODE_MARKED)
            return
        raise KubeError(409, "Conflict", f"node {mark.node} kept changing; will retry")

    async def _try_post(self, name: str, qs: QualificationState, event: PostEvent, uid: str = "") -> None:
        """Post an Event whose loss is acceptable (it is retried only while its cause persists)."""
        try:
            await self._post_event(qs, event, uid if event.kind == "Qualification" else "")
        except KubeError as exc:
            log.warning("cannot post Event %s for %s: %s", event.reason, name, exc)
            self.metrics.reconcile_error(name, "PostEvent")

    async def _post_event(self, qs: QualificationState, event: PostEvent, uid: str = "") -> None:
        event_id = event_name(event.name, event.reason, event.key)
        if event_id in qs.posted:
            return
        stamp = self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        involved: dict[str, Any] = {"kind": event.kind, "name": event.name}
        involved["apiVersion"] = "v1" if event.kind == "Node" else "accelqual.io/v1alpha1"
        if uid:
            involved["uid"] = uid
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": event_id, "namespace": self.config.event_namespace},
            "involvedObject": involved, "reason": event.reason, "message": event.message[:1024],
            "type": event.type, "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "source": {"component": MANAGER}, "reportingComponent": MANAGER,
            "reportingInstance": self.config.instance,
        }
        self._checkpoint(None)
        try:
            await self._io(self.kube.create, event_path(self.config.event_namespace), body)
        except KubeError as exc:
            if not exc.conflict:
                raise
        qs.posted.add(event_id)

    async def _upload_summary(self, name: str, uid: str, qs: QualificationState, spec: QualificationSpec,
                              action: UploadSummary, status: QualificationStatus, now: datetime) -> None:
        try:
            delivered = await self.delivery.deliver_summary(name, uid, qs, spec, action, now)
        except EvidenceError as exc:
            # Neither S3 nor the outbox has the summary: the run stays Running and it is tried again.
            status.phase = Phase.RUNNING
            status.finished_at = None
            status.evidence_backlog += 1
            set_condition(status, ConditionType.DEGRADED, True, Reason.EVIDENCE_BACKLOG,
                          f"run summary waits for upload: {exc}", now, status.observed_generation or 0)
            raise
        status.report_uri = delivered.uri
        status.report_sha256 = delivered.sha256
        qs.summaries.add(action.run_id)
        self._checkpoint(CRASH_SUMMARY_DELIVERED)

    async def _write_status(self, name: str, qs: QualificationState, old: QualificationStatus,
                            new: QualificationStatus) -> bool:
        """Write `new` unless the cluster has it already; False if the write failed (it is retried next time)."""
        if qs.status is not None and new == qs.status:
            return True
        if qs.status is None and new == old and new.observed_generation is not None:
            qs.status = new.model_copy(deep=True)
            return True
        body = {"status": new.model_dump(mode="json", by_alias=True)}
        self._checkpoint(None)
        try:
            await self._io(self.kube.patch, qualification_path(name, "status"), body, MERGE_PATCH)
        except KubeError as exc:
            if not exc.not_found:
                log.warning("cannot write the status of %s: %s", name, exc)
                self.metrics.reconcile_error(name, "status")
            return False
        # A copy: the caller may go on changing `new` (a summary's URI), which must then be written too.
        qs.status = new.model_copy(deep=True)
        self._checkpoint(CRASH_STATUS_WRITTEN)
        return True


def _node_uid(nodes: Mapping[str, NodeInfo], event: PostEvent) -> str:
    """The involved node's uid (its name when unknown, as the kubelet does for node Events)."""
    node = nodes.get(event.name)
    return node.uid if node is not None and node.uid else event.name


def _profiles(index: Mapping[str, Iterable[CardProfileSpec | str]]) -> dict[str, CardProfileSpec]:
    """Valid CardProfile objects by name (invalid ones are reported by their own handler)."""
    found: dict[str, CardProfileSpec] = {}
    for name, values in index.items():
        for value in values:
            if isinstance(value, CardProfileSpec):
                found[name] = value
    return found


def _busy(index: Mapping[str, Iterable[frozenset[str]]]) -> dict[str, frozenset[str]]:
    busy: dict[str, frozenset[str]] = {}
    for node, sets in index.items():
        merged: frozenset[str] = frozenset().union(*sets)
        if merged:
            busy[node] = merged
    return busy


def _rv_newer_or_equal(candidate: str, reference: str) -> bool:
    if candidate == reference:
        return True
    if candidate.isdigit() and reference.isdigit():
        return int(candidate) >= int(reference)
    return False


def _evidence_body(qualification: str, pod: ProbePodInfo, result: NodeResult) -> bytes:
    """The object stored for a node: its validated report, or a record of why its output was rejected."""
    if result.report_json is not None and result.report_sha256 is not None:
        return result.report_json.encode()
    doc = {
        "schemaVersion": "accelqual.io/v1/rejected-output",
        "qualification": qualification, "runId": pod.run_id, "node": pod.node, "pod": pod.name,
        "verdict": result.verdict.value, "reason": result.reason, "outputExcerpt": result.raw_excerpt,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

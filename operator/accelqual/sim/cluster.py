"""`SimulatedCluster`: the emulated API server, simulated kubelet, local S3 and the real operator, in one process.

Used by `accelqual simulate`, the end-to-end tests and the benchmarks. Every part
talks real HTTP to the others; the operator is exactly the one `accelqual operator`
runs, started in a background thread with its own event loop so that it can be
stopped and restarted at any moment (restart scenarios).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from accelqual.adapters.kube import MERGE_PATCH, KubeClient, KubeError, node_path, qualification_path
from accelqual.adapters.metrics import Metrics
from accelqual.handlers.reconcile import OperatorConfig, Reconciler
from accelqual.runtime import OperatorOptions, make_reconciler, run_operator
from accelqual.sim.emulator import ClusterEmulator
from accelqual.sim.kubelet import ProbeRunner, SimNode, SimulatedKubelet, SubprocessProbeRunner
from accelqual.sim.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from accelqual.sim.server import EmulatorServer
from accelqual.sim.simclock import SimClock

log = logging.getLogger("accelqual.sim")

NAMESPACE = "accelqual-system"
S3_SECRET = "accelqual-s3"
BUCKET = "accelqual-evidence"
FINAL_PHASES = ("Completed", "Halted", "Invalid")


class OperatorThread:
    """The real operator in a background thread; `stop()` is a clean shutdown, like a pod's SIGTERM."""

    def __init__(self, options: OperatorOptions, metrics: Metrics | None = None) -> None:
        self.options = options
        self.metrics = metrics
        self.reconciler: Reconciler | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, timeout: float = 30.0) -> OperatorThread:
        self.reconciler = make_reconciler(self.options, metrics=self.metrics)
        self._thread = threading.Thread(target=self._main, name="accelqual-operator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"operator did not start within {timeout:.0f}s: {self.error!r}")
        return self

    def _main(self) -> None:
        assert self.reconciler is not None
        try:
            asyncio.run(run_operator(self.options, reconciler=self.reconciler, stop_flag=self._stop,
                                     ready_flag=self._ready))
        except BaseException as exc:  # reported by start()/stop(); the thread must not die silently
            self.error = exc
            self._ready.set()
            log.exception("operator crashed")

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("operator did not stop in time")
        if self.reconciler is not None:
            self.reconciler.close()
            self.reconciler.kube.close()


class ClusterDriver:
    """What the end-to-end tests drive: the operator's lifecycle and the cluster's content.

    `SimulatedCluster` is the default; the test suite's `RealCluster` implements it over a real
    cluster's kubeconfig, so the same tests run against kind or k3s elsewhere."""

    namespace: str
    kube: KubeClient | None
    operator: OperatorThread | None
    metrics: Metrics
    #: The local S3 of the run's evidence (only the operator talks to it), or None.
    s3: LocalS3 | None
    #: Waits are this many times what the tests ask (a real cluster pulls images and runs real probes).
    timeout_scale: float = 1.0

    @property
    def api(self) -> KubeClient:
        if self.kube is None:
            raise RuntimeError("the cluster is not running")
        return self.kube

    def options(self) -> OperatorOptions:
        """How `start_operator()` runs the operator against this cluster."""
        raise NotImplementedError

    def node_name(self, name: str) -> str:
        """The cluster's name of the node a test calls `name` (a real cluster's nodes have their own)."""
        return name

    # --- operator -----------------------------------------------------------------------

    def start_operator(self, **changes: Any) -> OperatorThread:
        if self.operator is not None:
            raise RuntimeError("the operator is already running")
        options = replace(self.options(), **changes)
        self.operator = OperatorThread(options, metrics=self.metrics).start()
        return self.operator

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def restart_operator(self, **changes: Any) -> OperatorThread:
        """Stop the operator (losing all its memory) and start a new one, like a pod restart.

        `changes` are `OperatorOptions` fields of the new one (e.g. `crash_points`, `clock`)."""
        self.stop_operator()
        self.metrics = Metrics()
        return self.start_operator(**changes)

    # --- cluster content ----------------------------------------------------------------

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Qualification or CardProfile (or replace its spec if it exists)."""
        kind = manifest.get("kind")
        plural = {"Qualification": "qualifications", "CardProfile": "cardprofiles"}.get(str(kind))
        if plural is None:
            raise ValueError(f"cannot apply kind {kind!r}")
        path = f"/apis/accelqual.io/v1alpha1/{plural}"
        try:
            return self.api.create(path, manifest)
        except KubeError as exc:
            if not exc.conflict:
                raise
        name = manifest["metadata"]["name"]
        return self.api.patch(f"{path}/{name}", {"spec": manifest.get("spec")}, MERGE_PATCH)

    def qualification(self, name: str) -> dict[str, Any]:
        return self.api.get(qualification_path(name))

    def wait_for_phase(self, name: str, phases: Iterable[str] = FINAL_PHASES, timeout: float = 300.0,
                       progress: Callable[[dict[str, Any]], None] | None = None,
                       run_id: str | None = None) -> dict[str, Any]:
        """Poll until the Qualification reaches one of `phases` (for a new run, if `run_id` is the old one)."""
        wanted = set(phases)
        timeout *= self.timeout_scale
        deadline = time.monotonic() + timeout
        while True:
            obj = self.qualification(name)
            status = obj.get("status") or {}
            if progress is not None:
                progress(status)
            if status.get("phase") in wanted and (run_id is None or status.get("runId") != run_id):
                return obj
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not reach {sorted(wanted)} within {timeout:.0f}s; "
                                   f"it is {status.get('phase')!r}: {status.get('message', '')}")
            time.sleep(0.25)

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["metadata"]["name"]: n for n in self.api.list_all("/api/v1/nodes")}

    def pods(self, label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.api.list_all(f"/api/v1/namespaces/{self.namespace}/pods", label_selector=label_selector)

    def events(self) -> list[dict[str, Any]]:
        return self.api.list_all("/api/v1/events")

    def report_spec(self, prefix: str = "runs") -> dict[str, Any]:
        """The `report` section pointing at this cluster's local S3."""
        if self.s3 is None:
            raise RuntimeError("this cluster has no S3")
        return {"bucket": BUCKET, "prefix": prefix, "endpoint": self.s3.endpoint, "region": REGION,
                "credentialsSecret": {"name": S3_SECRET, "namespace": self.namespace}}

    def s3_secret(self) -> dict[str, Any]:
        """The Secret holding the local S3's keys, which `report_spec()` names."""
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": S3_SECRET, "namespace": self.namespace},
                "data": {"AWS_ACCESS_KEY_ID": base64.b64encode(ACCESS_KEY.encode()).decode(),
                         "AWS_SECRET_ACCESS_KEY": base64.b64encode(SECRET_KEY.encode()).decode()}}


class SimulatedCluster(ClusterDriver):
    """Context manager owning every part of a simulated accelerator fleet."""

    def __init__(
        self,
        *,
        runner: ProbeRunner | None = None,
        kubelet_parallel: int = 2,
        kubelet_interval: float = 0.2,
        kubelet_fleet_mode: bool = False,
        with_s3: bool = True,
        namespace: str = NAMESPACE,
        operator_options: Callable[[OperatorOptions], OperatorOptions] | None = None,
        clock: SimClock | None = None,
    ) -> None:
        self.namespace = namespace
        #: Simulated time shared by the API server, kubelet and operator (None: real time).
        self.clock = clock
        self.server = EmulatorServer(ClusterEmulator(clock=clock.now) if clock is not None else None)
        self.s3: LocalS3 | None = LocalS3() if with_s3 else None
        self._runner = runner or SubprocessProbeRunner(threads=1)
        self._kubelet_parallel = kubelet_parallel
        self._kubelet_interval = kubelet_interval
        #: The kubelet watches instead of listing and writes into the emulator's store (see `sim.kubelet`).
        self._kubelet_fleet_mode = kubelet_fleet_mode
        self._customize = operator_options
        self.kube: KubeClient | None = None
        self.kubelet: SimulatedKubelet | None = None
        self.operator: OperatorThread | None = None
        self.metrics = Metrics()
        self.sim_nodes: dict[str, SimNode] = {}

    # --- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> SimulatedCluster:
        try:
            self._start()
        except BaseException:
            self.close()  # a part that failed to start leaves no server or thread of the others running
            raise
        return self

    def _start(self) -> None:
        self.server.start()
        self.kube = KubeClient.for_url(self.server.url)
        self.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": self.namespace}})
        if self.s3 is not None:
            self.s3.start()
            self.s3.create_bucket(BUCKET)
            self.api.create(f"/api/v1/namespaces/{self.namespace}/secrets", self.s3_secret())
        kubelet = SimulatedKubelet(self.api, self.sim_nodes, self._runner, max_parallel=self._kubelet_parallel,
                                   interval=self._kubelet_interval, log_sink=self.server.emulator.set_pod_log,
                                   watch=self._kubelet_fleet_mode,
                                   direct=self.server.emulator if self._kubelet_fleet_mode else None)
        if self.clock is not None:
            kubelet.clock, kubelet.wallclock = self.clock.elapsed, self.clock.now
        kubelet.start()
        self.kubelet = kubelet

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.operator is not None:
            try:
                self.operator.stop()
            except RuntimeError:
                log.warning("operator did not stop cleanly")
            self.operator = None
        if self.kubelet is not None:
            self.kubelet.stop()
            self.kubelet = None
        if self.kube is not None:
            self.kube.close()
            self.kube = None
        if self.s3 is not None:
            self.s3.stop()
        self.server.stop()

    def options(self) -> OperatorOptions:
        options = OperatorOptions(config=OperatorConfig(namespace=self.namespace, secret_namespace=self.namespace),
                                  server=self.server.url, debounce=0.2)
        if self.clock is not None:
            options = replace(options, clock=self.clock.now, monotonic=self.clock.elapsed, time_scale=self.clock.scale)
        return self._customize(options) if self._customize else options

    # --- cluster content ----------------------------------------------------------------

    def add_nodes(self, nodes: Iterable[SimNode]) -> None:
        for node in nodes:
            self.sim_nodes[node.name] = node
            if self.kubelet is not None:
                self.kubelet.nodes[node.name] = node
            self.api.create("/api/v1/nodes", node.manifest())

    def delete_node(self, name: str) -> None:
        self.api.delete(node_path(name))
        self.sim_nodes.pop(name, None)
        if self.kubelet is not None:
            self.kubelet.nodes.pop(name, None)

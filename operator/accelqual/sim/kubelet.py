"""A simulated scheduler and kubelet for simulated accelerator nodes.

It does over HTTP what the real ones do: binds pending pods to a node that satisfies
their required node affinity, tolerations and extended-resource requests (so a probe
waits while a node's accelerators are in use), starts bound pods, runs the probe
container, stores its output as the pod log, and reports the container's exit code,
termination message and phase, enforcing `activeDeadlineSeconds`. Like the real kubelet
it can also end a probe abnormally: evicted (`evict()`, or a probe that ends `Evicted`:
pod `Failed` with reason `Evicted`) or OOM-killed (container terminated `OOMKilled`, exit 137).

A probe container is run by a `ProbeRunner`: the real `accelqual probe` as a
subprocess on this machine's CPU (faults of the simulated node injected through
`ACCELQUAL_INJECT`), or a modelled one for fleet-scale runs without torch.

By default each step lists the unfinished pods (and, to schedule, the nodes) over HTTP and
writes bindings and pod status over HTTP, so injected API faults reach the kubelet too. At
fleet scale that made the simulation, not the operator, the busiest process on the machine
(it shares the CPU with the operator the benchmarks measure). `watch=True` keeps pods and
nodes current with watches instead, as real kubelets and schedulers do, and `direct=`
writes bindings and status straight into an in-process emulator's store (the operator sees
the same watch events; the emulator's request counts then hold no kubelet writes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from accelqual.adapters.kube import MERGE_PATCH, KubeClient, KubeError, pod_path
from accelqual.adapters.watch import Connection, ResourceMirror
from accelqual.sim.emu_errors import ApiError

if TYPE_CHECKING:
    from accelqual.sim.emulator import ClusterEmulator

log = logging.getLogger("accelqual.sim.kubelet")

#: Longest termination message the kubelet keeps (Kubernetes: 4096 bytes).
TERMINATION_MESSAGE_LIMIT = 4096
UNFINISHED = "status.phase!=Succeeded,status.phase!=Failed"


@dataclass
class SimNode:
    """One simulated accelerator node: its API object and the faults its 'hardware' has."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    allocatable: dict[str, str] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    #: Extra environment for the probe process (e.g. device-count expectations).
    env: dict[str, str] = field(default_factory=dict)
    #: Registered cordoned (`spec.unschedulable`).
    unschedulable: bool = False

    def manifest(self) -> dict[str, Any]:
        capacity = dict(self.allocatable)
        spec: dict[str, Any] = {"taints": list(self.taints)} if self.taints else {}
        if self.unschedulable:
            spec["unschedulable"] = True
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": dict(self.labels)},
            "spec": spec,
            "status": {
                "allocatable": dict(self.allocatable),
                "capacity": capacity,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "simulated kubelet is posting ready status"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0-accelqual-sim", "osImage": "simulated",
                             "containerRuntimeVersion": "sim://1"},
            },
        }


#: How a probe container can end abnormally (`RunningProbe.ended_by`).
OOM_KILLED = "OOMKilled"
EVICTED = "Evicted"
EVICTION_MESSAGE = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 12Mi."


class RunningProbe(Protocol):
    def poll(self) -> int | None: ...

    def kill(self) -> None: ...

    def output(self) -> str: ...

    def termination_message(self) -> str: ...

    def ended_by(self) -> str:
        """Once finished: `OOMKilled` or `Evicted` when the container ended so, else ''."""


class ProbeRunner(Protocol):
    def start(self, pod: Mapping[str, Any], node: SimNode) -> RunningProbe: ...


class _Process:
    def __init__(self, popen: subprocess.Popen[bytes], out: Path, term: Path,
                 workdir: tempfile.TemporaryDirectory[str]) -> None:
        self._popen = popen
        self._out = out
        self._term = term
        self._workdir = workdir

    def poll(self) -> int | None:
        return self._popen.poll()

    def kill(self) -> None:
        if self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait(timeout=10)

    def output(self) -> str:
        try:
            return self._out.read_text(encoding="utf-8", errors="replace")
        finally:
            if self._popen.poll() is not None:
                self._workdir.cleanup()

    def termination_message(self) -> str:
        try:
            return self._term.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode("utf-8", errors="replace")
        except OSError:
            return ""

    def ended_by(self) -> str:
        return ""


class SubprocessProbeRunner:
    """Runs the pod's container as `python -m accelqual_probes ARGS` (the probe image's entrypoint)."""

    def __init__(self, threads: int = 1, python: str = sys.executable) -> None:
        self.threads = threads
        self.python = python

    def start(self, pod: Mapping[str, Any], node: SimNode) -> RunningProbe:
        container = pod["spec"]["containers"][0]
        workdir = tempfile.TemporaryDirectory(prefix="accelqual-sim-")
        term_path = Path(workdir.name) / "termination-log"
        declared = container.get("terminationMessagePath", "/dev/termination-log")
        # The kubelet mounts a file at terminationMessagePath; here the path is mapped to a temp file.
        args = [str(term_path) if a == declared else str(a) for a in container.get("args") or []]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELQUAL_")}
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif (item.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                env[item["name"]] = node.name
        env.update(node.env)
        # The container's CPU share on this machine: torch and BLAS threads follow it.
        env.update({"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
                    "OPENBLAS_NUM_THREADS": str(self.threads), "HOME": workdir.name, "TMPDIR": workdir.name})
        if node.faults:
            env["ACCELQUAL_INJECT"] = ",".join(node.faults)
        out_path = Path(workdir.name) / "output.log"
        with out_path.open("wb") as out:
            popen = subprocess.Popen([self.python, "-m", "accelqual_probes", *args], stdout=out,
                                     stderr=subprocess.STDOUT, env=env, cwd=workdir.name)
        return _Process(popen, out_path, term_path, workdir)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def tolerates(tolerations: Sequence[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol.get("key") == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and (tol.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def _quantity(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def unschedulable_reason(pod: Mapping[str, Any], node: Mapping[str, Any], used: Mapping[str, int]) -> str:
    """Why `pod` cannot go to `node` now ('' if it can): affinity, taints, cordon, extended resources."""
    spec = pod.get("spec") or {}
    meta = node.get("metadata") or {}
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if affinity:
        labels = meta.get("labels") or {}
        ok = False
        for term in affinity.get("nodeSelectorTerms") or []:
            fields_ok = all(
                (expr.get("key") == "metadata.name" and (meta.get("name") in (expr.get("values") or [])))
                == (expr.get("operator") == "In")
                for expr in term.get("matchFields") or [])
            labels_ok = all(
                (labels.get(expr.get("key")) in (expr.get("values") or [])) == (expr.get("operator") == "In")
                for expr in term.get("matchExpressions") or [])
            ok = ok or (fields_ok and labels_ok)
        if not ok:
            return "node affinity does not match"
    for key, value in (spec.get("nodeSelector") or {}).items():
        if (meta.get("labels") or {}).get(key) != value:
            return "node selector does not match"
    tolerations = spec.get("tolerations") or []
    node_spec = node.get("spec") or {}
    if node_spec.get("unschedulable") and not tolerates(
            tolerations, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}):
        return "node is unschedulable"
    for taint in node_spec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return f"untolerated taint {taint.get('key')}"
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    for name, qty in _extended_requests(pod).items():
        if used.get(name, 0) + qty > _quantity(allocatable.get(name, 0)):
            return f"insufficient {name}"
    return ""


def affinity_node_names(pod: Mapping[str, Any]) -> list[str] | None:
    """The only nodes `pod` may go to by its required `metadata.name In` node affinity (None: not so bound).

    Like kube-scheduler's NodeAffinity pre-filter: a probe pod names its node, so the scheduler
    looks at that node alone rather than at every node of the fleet for every pod."""
    required = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or []
    names: list[str] = []
    for term in terms:
        named = [expr.get("values") or [] for expr in term.get("matchFields") or []
                 if expr.get("key") == "metadata.name" and expr.get("operator") == "In"]
        if not named:
            return None  # a term that any node may satisfy
        names.extend(str(v) for v in named[0])
    return names if terms else None


def _extended_requests(pod: Mapping[str, Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        for name, qty in ((container.get("resources") or {}).get("requests") or {}).items():
            if "/" in name:
                total[name] = total.get(name, 0) + _quantity(qty)
    return total


def _unfinished(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """A pod the kubelet has work with (not finished, not being deleted), else None."""
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return None
    return pod


class _Watches:
    """Pods and nodes mirrored by watches, in a thread with an event loop of its own."""

    def __init__(self, kube: KubeClient) -> None:
        connection = Connection(kube.configuration)
        self.pods: ResourceMirror[Mapping[str, Any]] = ResourceMirror(connection, "/api/v1/pods", parse=_unfinished)
        self.nodes: ResourceMirror[Mapping[str, Any]] = ResourceMirror(connection, "/api/v1/nodes",
                                                                       parse=lambda node: node)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="sim-kubelet-watches", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not (self.pods.relists and self.nodes.relists):
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"the simulated kubelet could not list pods and nodes within {timeout:g} s")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._thread.is_alive():
            stop = self._stop
            if stop is not None:
                self._loop.call_soon_threadsafe(stop.set)
            self._thread.join(timeout=30)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            await asyncio.gather(self.pods.run(self._stop), self.nodes.run(self._stop))
        try:
            self._loop.run_until_complete(main())
        finally:
            self._loop.close()


class SimulatedKubelet:
    """Scheduler + kubelet for the simulated nodes, stepping in a background thread (see the module doc)."""

    def __init__(self, kube: KubeClient, nodes: Mapping[str, SimNode], runner: ProbeRunner, *,
                 max_parallel: int = 2, interval: float = 0.2,
                 clock: Callable[[], float] = time.monotonic,
                 wallclock: Callable[[], datetime] = _utc_now,
                 log_sink: Callable[[str, str, str], None] | None = None,
                 watch: bool = False, direct: ClusterEmulator | None = None) -> None:
        self.kube = kube
        self.nodes = dict(nodes)
        self.runner = runner
        self.max_parallel = max_parallel
        self.interval = interval
        self.clock = clock
        #: Time stamped on pod status (start and finish times); a simulated clock in rehearsals.
        self.wallclock = wallclock
        # Where container output goes: the emulator's log store in-process (a real kubelet keeps logs
        # on the node and the API server proxies them), else the emulator-only PUT .../log endpoint.
        self.log_sink = log_sink
        self.direct = direct
        self._watches = _Watches(kube) if watch else None
        #: Pods this kubelet finished whose end its watch may not show yet (never started twice).
        self._finished: set[str] = set()
        self._running: dict[str, tuple[RunningProbe, float, Mapping[str, Any]]] = {}
        #: Running pods to evict at the next step (namespace/name -> message), see `evict()`.
        self._evictions: dict[str, str] = {}
        self._evictions_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_count = 0
        self.max_seen_parallel = 0
        self.errors: list[str] = []

    def start(self) -> SimulatedKubelet:
        if self._watches is not None:
            self._watches.start()
        self._thread = threading.Thread(target=self._loop, name="sim-kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for probe, _, _ in self._running.values():
            probe.kill()
        self._running.clear()
        if self._watches is not None:
            self._watches.stop()

    def evict(self, namespace: str, name: str, message: str = EVICTION_MESSAGE) -> None:
        """Evict the pod at the next step if it is running then (node pressure): it ends `Failed`, reason `Evicted`."""
        with self._evictions_lock:
            self._evictions[f"{namespace}/{name}"] = message

    def running(self) -> list[str]:
        """namespace/name of the probe pods whose container runs now."""
        return list(self._running)

    def _now(self) -> str:
        return self.wallclock().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except KubeError as exc:
                log.debug("kubelet step failed: %s", exc)
            except Exception as exc:  # the simulation must keep going; the error is recorded
                log.exception("kubelet step failed")
                self.errors.append(repr(exc))
            self._stop.wait(self.interval)

    def _live_pods(self) -> dict[str, Mapping[str, Any]]:
        """namespace/name -> the pods with work for the kubelet (unfinished, not being deleted)."""
        if self._watches is None:
            # Finished pods hold nothing and need nothing: a fleet's history is not re-read every pass.
            listed = self.kube.request("GET", "/api/v1/pods", query=[("fieldSelector", UNFINISHED)])
            pods: list[dict[str, Any]] = listed.get("items") or []
            return {_key(p): p for p in pods if _unfinished(p) is not None}
        live = dict(self._watches.pods.items())
        self._finished &= live.keys()
        for key in self._finished:
            del live[key]
        return live

    def _nodes(self) -> dict[str, Mapping[str, Any]]:
        if self._watches is None:
            return {n["metadata"]["name"]: n for n in self.kube.list_all("/api/v1/nodes")}
        return {node["metadata"]["name"]: node for node in self._watches.nodes.values()}

    def _patch_pod(self, namespace: str, name: str, body: Mapping[str, Any],
                   subresource: str | None = None) -> dict[str, Any]:
        """A merge patch of a pod (or its status): over HTTP, or into the `direct` emulator's store."""
        if self.direct is None:
            return self.kube.patch(pod_path(namespace, name) + (f"/{subresource}" if subresource else ""), body,
                                   MERGE_PATCH)
        try:
            return self.direct.patch("pods", namespace, name, body, subresource=subresource)
        except ApiError as exc:
            raise KubeError(exc.status, exc.reason, exc.message) from None

    def step(self) -> None:
        live = self._live_pods()
        nodes: dict[str, Mapping[str, Any]] = {}
        if any(not (p.get("spec") or {}).get("nodeName") for p in live.values()):
            nodes = self._nodes()
        for key in list(self._running):
            if key not in live:  # deleted while running: the container is killed
                self._running.pop(key)[0].kill()
        used: dict[str, dict[str, int]] = {}
        for pod in live.values():  # none finished (see `_live_pods`): each bound one holds its resources
            node = (pod.get("spec") or {}).get("nodeName")
            if node:
                for name, qty in _extended_requests(pod).items():
                    used.setdefault(node, {})[name] = used.setdefault(node, {}).get(name, 0) + qty
        self._finish(live)
        for key, pod in sorted(live.items(), key=lambda kv: (kv[1].get("metadata") or {}).get("creationTimestamp", "")):
            spec = pod.get("spec") or {}
            phase = (pod.get("status") or {}).get("phase") or "Pending"
            node_name = spec.get("nodeName")
            if not node_name:
                bound = self._schedule(pod, nodes, used)
                if bound is not None:  # the kubelet of the node picks a bound pod up at once
                    self._start(key, bound)
            elif node_name in self.nodes and key not in self._running and phase == "Pending":
                self._start(key, pod)

    def _schedule(self, pod: Mapping[str, Any], nodes: Mapping[str, Mapping[str, Any]],
                  used: dict[str, dict[str, int]]) -> dict[str, Any] | None:
        """Bind `pod` to the first node that can take it; the bound pod, or None if none can."""
        named = affinity_node_names(pod)
        candidates = nodes.items() if named is None else [(n, nodes[n]) for n in named if n in nodes]
        for name, node in candidates:
            if name not in self.nodes:
                continue
            if not unschedulable_reason(pod, node, used.get(name, {})):
                meta = pod["metadata"]
                try:
                    bound: dict[str, Any] = self._patch_pod(meta["namespace"], meta["name"],
                                                            {"spec": {"nodeName": name}})
                except KubeError as exc:
                    log.debug("binding %s failed: %s", meta["name"], exc)
                    return None
                for res, qty in _extended_requests(pod).items():
                    used.setdefault(name, {})[res] = used.setdefault(name, {}).get(res, 0) + qty
                return bound
        return None

    def _start(self, key: str, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        node = self.nodes[pod["spec"]["nodeName"]]
        is_probe = (meta.get("labels") or {}).get("app.kubernetes.io/component") == "probe"
        if is_probe and len(self._running) >= self.max_parallel:
            return  # ContainerCreating: waits for a free slot on this machine
        status: dict[str, Any] = {"phase": "Running", "startTime": self._now(), "hostIP": "127.0.0.1",
                                  "containerStatuses": [{"name": c["name"], "ready": True, "restartCount": 0,
                                                         "image": c.get("image", ""),
                                                         "state": {"running": {"startedAt": self._now()}}}
                                                        for c in pod["spec"].get("containers") or []]}
        self._patch_pod(meta["namespace"], meta["name"], {"status": status}, "status")
        if not is_probe:
            return  # a workload pod: it just holds its resources until deleted
        self._running[key] = (self.runner.start(pod, node), self.clock(), pod)
        self.started_count += 1
        self.max_seen_parallel = max(self.max_seen_parallel, len(self._running))

    def _finish(self, live: Mapping[str, Mapping[str, Any]]) -> None:
        with self._evictions_lock:
            evictions, self._evictions = self._evictions, {}
        for key, (probe, started, pod) in list(self._running.items()):
            deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
            code = probe.poll()
            reason, message = None, ""
            if code is None and key in evictions:
                probe.kill()
                code, reason, message = 137, EVICTED, evictions[key]
            elif code is None and deadline is not None and self.clock() - started > float(deadline):
                probe.kill()
                code, reason = 137, "DeadlineExceeded"
                message = "Pod was active on the node longer than the specified deadline"
            if code is None:
                continue
            ended_by = probe.ended_by() if reason is None else ""
            if ended_by == EVICTED:  # the kubelet killed the container to reclaim memory
                code, reason, message = 137, EVICTED, EVICTION_MESSAGE
            self._running.pop(key)
            meta = pod["metadata"]
            path = pod_path(meta["namespace"], meta["name"])
            output = probe.output()
            try:
                if self.log_sink is not None:
                    self.log_sink(meta["namespace"], meta["name"], output)
                else:
                    self.kube.request("PUT", path + "/log", body=output, content_type="text/plain")
            except KubeError as exc:
                log.warning("storing the log of %s failed: %s", meta["name"], exc)
            container_reason = OOM_KILLED if ended_by == OOM_KILLED else "Completed" if code == 0 else "Error"
            terminated = {"exitCode": code, "reason": container_reason,
                          "finishedAt": self._now(), "message": "" if reason else probe.termination_message()}
            status: dict[str, Any] = {
                "phase": "Succeeded" if code == 0 and not reason else "Failed",
                "containerStatuses": [{"name": "probe", "ready": False, "restartCount": 0,
                                       "state": {"terminated": terminated}}],
            }
            if reason:
                status.update({"reason": reason, "message": message})
            self._patch_pod(meta["namespace"], meta["name"], {"status": status}, "status")
            if self._watches is not None:
                self._finished.add(key)


def _key(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}"

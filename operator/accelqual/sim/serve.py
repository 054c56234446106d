"""`accelqual simulate --serve`: keep a simulated cluster running for the real kubectl.

The same parts as `accelqual simulate` (emulated API server, simulated scheduler and
kubelet, local S3, the real operator), but nothing is applied: the command writes a
kubeconfig and waits, so a person (or a test) can run the README's flow literally:

    kubectl apply -f examples/qualification.yaml
    kubectl get aq -w
    kubectl get nodes -L accelqual.io/verdict
    kubectl describe node NODE

To make that flow work unchanged, the simulated nodes look like the H100 pool the example
selects (`nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3`, 8 `nvidia.com/gpu` each), and the
probe containers are *modelled*: each produces the report a healthy H100 (or one with the
node's injected fault) would, in seconds. Real probes would judge this machine's CPU against
an H100's datasheet. Every S3 bucket a Qualification names is served by the local S3 (created
on first use), so evidence uploads succeed without cloud credentials.

Runs until interrupted (Ctrl-C, SIGTERM); exits 0 after a clean shutdown.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from rich.console import Console

from accelqual.adapters.evidence import EvidenceError, EvidenceStore, S3Credentials
from accelqual.adapters.kube import MERGE_PATCH, node_path
from accelqual.handlers.reconcile import default_evidence_factory
from accelqual.logs import configure_logging
from accelqual.models import ReportSpec
from accelqual.runtime import OperatorOptions
from accelqual.sim.cluster import NAMESPACE, S3_SECRET, SimulatedCluster
from accelqual.sim.kubelet import SimNode
from accelqual.sim.modelled import ModelledProbeRunner
from accelqual.sim.s3 import ACCESS_KEY, REGION, SECRET_KEY, LocalS3
from accelqual.sim.simulate import POOL, POOL_LABEL, Fault, fleet

#: The pool examples/qualification.yaml selects; the simulated nodes carry this label.
PRODUCT_LABEL = "nvidia.com/gpu.product"
PRODUCT = "NVIDIA-H100-80GB-HBM3"
GPU_RESOURCE = "nvidia.com/gpu"
GPUS_PER_NODE = 8
#: Seconds a modelled probe container runs before it exits with its report.
PROBE_SECONDS = 2.0
DEFAULT_KUBECONFIG = Path(tempfile.gettempdir()) / "accelqual-simulate" / "kubeconfig"


def serve_fleet(nodes: int, faulty: int, seed: int) -> tuple[list[SimNode], dict[str, Fault]]:
    """`simulate`'s fleet (same names, faults and seed) dressed as an H100 pool of 8-GPU nodes."""
    base, faults = fleet(nodes, faulty, seed)
    dressed = [
        replace(node,
                labels={POOL_LABEL: POOL, PRODUCT_LABEL: PRODUCT, "kubernetes.io/hostname": node.name,
                        "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                        "node.kubernetes.io/instance-type": "sim-h100-8x"},
                allocatable={"cpu": "192", "memory": "2Ti", "pods": "110", GPU_RESOURCE: str(GPUS_PER_NODE)})
        for node in base
    ]
    return dressed, faults


class LocalEvidence:
    """An evidence factory that sends every Qualification's bucket to the local S3, creating it on first use."""

    def __init__(self, s3: LocalS3) -> None:
        self._s3 = s3
        self._buckets: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, report: ReportSpec, credentials: S3Credentials | None) -> EvidenceStore:
        with self._lock:
            if report.bucket not in self._buckets:
                try:
                    self._s3.create_bucket(report.bucket)
                except Exception as exc:  # already there is fine; anything else is the upload's problem
                    if "BucketAlready" not in str(exc):
                        raise EvidenceError(f"local S3 cannot create bucket {report.bucket}: {exc}") from exc
                self._buckets.add(report.bucket)
        local = report.model_copy(update={"endpoint": self._s3.endpoint, "region": REGION})
        return default_evidence_factory(local, credentials or S3Credentials(ACCESS_KEY, SECRET_KEY))


def serve(args: argparse.Namespace) -> int:
    """Run the simulated cluster until interrupted; `args` are `accelqual simulate`'s (see simulate.parse)."""
    configure_logging("text", args.log_level)
    # kopf's note that it cannot install signal handlers outside the main thread: expected here.
    logging.getLogger("kopf._core.reactor.running").setLevel(logging.ERROR)
    console = Console(stderr=True)
    try:
        nodes, faults = serve_fleet(args.nodes, args.faulty, args.seed)
    except ValueError as exc:
        print(f"accelqual simulate: {exc}", file=sys.stderr)
        return 2
    kubeconfig = Path(args.kubeconfig) if args.kubeconfig else DEFAULT_KUBECONFIG
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    evidence: list[LocalEvidence] = []

    def operator_options(options: OperatorOptions) -> OperatorOptions:
        return replace(options, evidence_factory=evidence[0]) if evidence else options

    try:
        cluster = SimulatedCluster(runner=ModelledProbeRunner(duration=PROBE_SECONDS, seed=args.seed),
                                   kubelet_parallel=max(args.nodes, 1), kubelet_interval=0.2,
                                   operator_options=operator_options)
        with cluster:
            assert cluster.s3 is not None
            evidence.append(LocalEvidence(cluster.s3))
            cluster.add_nodes(nodes)
            _report_like_a_kubelet(cluster, nodes, datetime.now(UTC))
            cluster.start_operator()
            written = _write_kubeconfig(cluster, kubeconfig)
            _print_instructions(console, cluster, written, faults)
            stop.wait()
            console.print("accelqual simulate: stopping the simulated cluster")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _report_like_a_kubelet(cluster: SimulatedCluster, nodes: list[SimNode], now: datetime) -> None:
    """What a kubelet would have posted and `kubectl describe node` shows: heartbeats, addresses, a Lease."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": "kube-node-lease"}})
    for number, node in enumerate(nodes):
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "simulated kubelet is posting ready status",
                 "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
        cluster.api.patch(node_path(node.name) + "/status", {"status": {
            "conditions": [ready],
            "addresses": [{"type": "InternalIP", "address": f"10.0.{number // 250}.{number % 250 + 2}"},
                          {"type": "Hostname", "address": node.name}],
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
        }}, MERGE_PATCH)
        cluster.api.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": node.name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": node.name, "leaseDurationSeconds": 40,
                     "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}})


def _write_kubeconfig(cluster: SimulatedCluster, path: Path) -> Path:
    """Written last and atomically: a reader that sees the file finds the operator running."""
    tmp = path.with_name(path.name + ".tmp")
    cluster.server.write_kubeconfig(tmp, namespace=NAMESPACE)
    tmp.replace(path)
    return path


def _print_instructions(console: Console, cluster: SimulatedCluster, kubeconfig: Path,
                        faults: dict[str, Fault]) -> None:
    faulty = ", ".join(f"{name} ({fault.inject})" for name, fault in sorted(faults.items())) or "none"
    s3 = cluster.s3.endpoint if cluster.s3 is not None else "-"
    console.print(
        f"Simulated cluster at {cluster.server.url}: {len(cluster.sim_nodes)} nodes labelled "
        f"{PRODUCT_LABEL}={PRODUCT} with {GPUS_PER_NODE} {GPU_RESOURCE} each; injected faults: {faulty}.\n"
        f"The operator runs; probe containers are modelled ({PROBE_SECONDS:g} s each). Local S3 at {s3} "
        f"(every bucket; Secret {NAMESPACE}/{S3_SECRET} holds its credentials).\n\n"
        f"  export KUBECONFIG={kubeconfig}\n"
        f"  kubectl apply -f examples/qualification.yaml\n"
        f"  kubectl get aq -w\n"
        f"  kubectl get nodes -L accelqual.io/verdict\n"
        f"  kubectl describe node NODE\n\n"
        f"Ctrl-C stops the cluster.",
        highlight=False, soft_wrap=True)

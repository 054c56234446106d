"""Running the operator: kopf in the current event loop, with our registry and settings."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import kopf

from accelqual.adapters.kube import KubeClient
from accelqual.adapters.metrics import Metrics
from accelqual.handlers.reconcile import (
    CrashPoints,
    EvidenceFactory,
    OperatorConfig,
    Reconciler,
    default_evidence_factory,
)
from accelqual.handlers.registry import DEBOUNCE_SECONDS, build_registry
from accelqual.pacing import DEFAULT_RECONCILE_WAIT_FACTOR


@dataclass
class OperatorOptions:
    config: OperatorConfig = field(default_factory=OperatorConfig)
    #: Pin the API server (simulation/tests); None: in-cluster config or kubeconfig.
    server: str | None = None
    kubeconfig: str | None = None
    peering: str | None = None
    #: kopf peering priority (with `peering`): the live replica with the highest one acts.
    priority: int | None = None
    liveness: str | None = None
    metrics_port: int | None = None
    debounce: float = DEBOUNCE_SECONDS
    #: Wake-ups wait at least this many times the last reconcile's CPU (see `handlers.registry`).
    reconcile_wait_factor: float = DEFAULT_RECONCILE_WAIT_FACTOR
    #: Simulated time runs this much faster than real time (rehearsals); waits shrink to match.
    time_scale: float = 1.0
    clock: Callable[[], datetime] | None = None
    evidence_factory: EvidenceFactory = default_evidence_factory
    #: Test harnesses only: called at each named point of a reconcile; raising there kills the
    #: operator at that point (see `handlers.reconcile`). None in production.
    crash_points: CrashPoints | None = None
    #: Seconds that never step, in the unit of `clock` (simulated seconds in rehearsals); None: time.monotonic.
    monotonic: Callable[[], float] | None = None


def make_reconciler(options: OperatorOptions, metrics: Metrics | None = None) -> Reconciler:
    workers = options.config.workers  # the threads that call the API at once
    kube = KubeClient.for_url(options.server, pool_size=workers) if options.server else \
        KubeClient.from_environment(options.kubeconfig, pool_size=workers)
    return Reconciler(kube, options.config, metrics=metrics, clock=options.clock,
                      evidence_factory=options.evidence_factory, crash_points=options.crash_points,
                      monotonic=options.monotonic)


async def run_operator(
    options: OperatorOptions,
    *,
    reconciler: Reconciler | None = None,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
) -> None:
    """Run until `stop_flag` is set (or a signal arrives when run from the CLI)."""
    own = reconciler is None
    reconciler = reconciler or make_reconciler(options)
    registry = build_registry(reconciler, debounce=options.debounce, wait_factor=options.reconcile_wait_factor,
                              time_scale=options.time_scale)
    if options.metrics_port is not None:  # 0: any free port (tests); `reconciler.metrics.port` says which
        reconciler.metrics.serve(options.metrics_port)
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=True,
            standalone=options.peering is None,
            peering_name=options.peering,
            priority=options.priority,
            liveness_endpoint=options.liveness,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        reconciler.metrics.stop_serving()
        if own:
            reconciler.close()
            reconciler.kube.close()

"""The kopf registry: watch-fed indexes of nodes, pods and profiles, and one reconcile daemon per Qualification.

Level-based: indexes mirror the cluster (no listing per reconcile), every relevant
change wakes the affected Qualification's daemon, and each daemon also reconciles on a
timer, so a missed event only delays, never loses, a decision. kopf's own bookkeeping
goes to annotations; the status is ours alone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf
from accelqual_probes.profiles import CardProfileSpec
from pydantic import ValidationError

from accelqual.adapters.watch import Connection
from accelqual.constants import CARDPROFILES, GROUP, QUALIFICATIONS, VERSION
from accelqual.handlers.mirrors import ClusterMirrors
from accelqual.handlers.reconcile import ClusterView, Reconciler
from accelqual.pacing import DEFAULT_RECONCILE_WAIT_FACTOR

log = logging.getLogger("accelqual.handlers")

#: After a wake-up, wait this long for more events before reconciling (batching at fleet scale).
DEBOUNCE_SECONDS = 0.5


def build_registry(reconciler: Reconciler, *, debounce: float = DEBOUNCE_SECONDS,
                   wait_factor: float = DEFAULT_RECONCILE_WAIT_FACTOR,
                   time_scale: float = 1.0) -> kopf.OperatorRegistry:
    """All handlers of the operator; kopf connects with the same configuration as our own client.

    `time_scale` > 1 shortens the waits between reconciles by that factor: with a clock that runs
    as much faster (rehearsal scenarios), a day of schedules replays in minutes.
    """
    registry = kopf.OperatorRegistry()
    state = reconciler.state

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return _connection_info(reconciler.kube.configuration)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration")
        # Events are ours to post (deterministic names, precise messages); kopf's would double them.
        settings.posting.enabled = False
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 60
        settings.execution.max_workers = 8

    # Nodes and pods are mirrored by lean watches rather than kopf indexes (see adapters/watch.py).
    mirrors = ClusterMirrors(Connection(reconciler.kube.configuration), reconciler.config.namespace, state.wake)
    mirror_stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry, id="pod-mirrors")
    async def start_mirrors(**_: Any) -> None:
        mirror_stop.clear()
        tasks.append(asyncio.create_task(mirrors.run(mirror_stop), name="accelqual-pod-mirrors"))

    @kopf.on.cleanup(registry=registry, id="pod-mirrors")
    async def stop_mirrors(**_: Any) -> None:
        mirror_stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks.clear()
        await reconciler.akube.close()

    @kopf.index(GROUP, VERSION, CARDPROFILES, registry=registry, id="profiles")
    async def profiles(name: str, spec: kopf.Spec, logger: kopf.Logger, **_: Any) -> dict[str, CardProfileSpec | str]:
        state.wake()
        try:
            return {name: CardProfileSpec.model_validate(dict(spec))}
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = f"CardProfile {name} is invalid at spec.{where}: {first['msg']}"
            logger.warning(message)
            return {name: message}

    @kopf.index(GROUP, VERSION, QUALIFICATIONS, registry=registry, id="qualifications")
    async def qualifications(name: str, meta: kopf.Meta, **_: Any) -> dict[str, int]:
        # Spec and annotation changes (e.g. the resume request) wake the daemon at once.
        state.wake(name)
        return {name: int(meta.get("generation") or 0)}

    @kopf.daemon(GROUP, VERSION, QUALIFICATIONS, registry=registry, id="reconcile", cancellation_timeout=10.0)
    async def reconcile(*, name: str, body: kopf.Body, stopped: kopf.DaemonStopped, **kwargs: Any) -> None:
        # kopf passes each index as a keyword argument named after its id.
        view = ClusterView(nodes=mirrors.nodes, probe_pods=mirrors.probe_pods, busy=mirrors.busy,
                           profiles=kwargs["profiles"])
        waker = state.waker(name)
        # Like kopf with its indexes: no decision before the pods of the cluster are known.
        await mirrors.wait_ready()
        try:
            while not stopped:
                waker.clear()
                started = time.thread_time()
                try:
                    delay = await reconciler.reconcile(name, _plain(body), view)
                except Exception:
                    log.exception("reconcile of %s failed; retrying", name)
                    reconciler.metrics.reconcile_error(name, "reconcile")
                    delay = 5.0
                batch = wake_up_batch(time.thread_time() - started, wait_factor, debounce, time_scale)
                # A timed look never comes sooner than a woken one would (at a time scale of 1000,
                # a 5 s requeue would otherwise be a reconcile every 5 ms of real time).
                await _sleep(waker, stopped, max(delay / time_scale, debounce), batch)
        finally:
            # Deleted or the operator stopping: caches of this Qualification are rebuilt if it comes back.
            state.forget(name)
            reconciler.metrics.forget([name])

    return registry


def wake_up_batch(reconcile_cpu: float, wait_factor: float, debounce: float, time_scale: float = 1.0) -> float:
    """Seconds to gather wake-ups after a reconcile that took `reconcile_cpu` seconds of the loop's CPU.

    A reconcile looks at the whole pool, so its cost grows with the pool: waiting `wait_factor`
    times its CPU keeps the operator's share of a core bounded however large the pool and busy
    the watches. CPU, not elapsed time: a slow or throttling API server (answers after seconds,
    Retry-After) makes a reconcile long but not costly, and must not make the operator ten times
    slower. Like the requeue delay, the batch shrinks with the time scale (in rehearsals it is
    simulated time); never shorter than the debounce.
    """
    return max(debounce, wait_factor * max(0.0, reconcile_cpu) / time_scale)


def _connection_info(configuration: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from the kubernetes client configuration (in-cluster, kubeconfig or a pinned URL)."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization")
    scheme, token = [*header.split(" ", 1), None][:2] if header else (None, None)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme if token else None,
        token=token if token else scheme,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        username=configuration.username or None,
        password=configuration.password or None,
    )


def _plain(body: kopf.Body) -> Mapping[str, Any]:
    """A consistent copy of the live body for one reconcile."""
    return {"metadata": dict(body.get("metadata") or {}), "spec": dict(body.get("spec") or {}),
            "status": dict(body.get("status") or {})}


async def _sleep(waker: asyncio.Event, stopped: kopf.DaemonStopped, delay: float, debounce: float) -> None:
    """Wait for a wake-up, the stop flag or `delay`, then `debounce` more to batch event storms.

    The stop flag ends the debounce too: at fleet scale it lasts seconds (the wait factor times a
    reconcile's CPU), and a daemon that slept through it would be cancelled by kopf after its
    cancellation timeout rather than return, delaying the operator's shutdown by as much."""
    stop = asyncio.ensure_future(stopped.wait())
    woken = asyncio.ensure_future(waker.wait())
    try:
        await asyncio.wait({stop, woken}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        if waker.is_set() and not stopped:
            await asyncio.wait({stop}, timeout=debounce)
    finally:
        stop.cancel()
        woken.cancel()

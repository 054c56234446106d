"""Watch-fed mirrors of nodes and pods, grouped the way the reconcile reads them.

Nodes by name; probe pods grouped by their Qualification; workload pods holding extended
resources by node (idle detection). All come from `adapters.watch.ResourceMirror` rather
than kopf indexes: see that module for why. Every change wakes the Qualifications it concerns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from accelqual.adapters.objects import busy_pod, node_info, pod_qualification, probe_pod_info
from accelqual.adapters.watch import Connection, ResourceMirror
from accelqual.constants import LABEL_APP_MANAGED_BY, MANAGER
from accelqual.planning.snapshot import NodeInfo, ProbePodInfo

V = TypeVar("V")
ProbeEntry = tuple[str, ProbePodInfo, str | None]
BusyEntry = tuple[str, frozenset[str]]


class Groups(Mapping[str, Iterable[V]], Generic[V]):
    """group -> the values of the objects in it; maintained from a mirror's change callbacks."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, V]] = {}

    def __getitem__(self, group: str) -> Iterable[V]:
        return list(self._groups[group].values())

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._groups))

    def __len__(self) -> int:
        return len(self._groups)

    def items(self) -> list[tuple[str, Iterable[V]]]:  # type: ignore[override]
        # Every reconcile walks all groups (a node is a group of one): without the Mapping mixin's
        # view and a lookup per key.
        return [(group, list(members.values())) for group, members in self._groups.items()]

    def move(self, key: str, old_group: str | None, new_group: str | None, value: V | None) -> None:
        if old_group is not None and old_group in self._groups:
            self._groups[old_group].pop(key, None)
            if not self._groups[old_group]:
                del self._groups[old_group]
        if new_group is not None and value is not None:
            self._groups.setdefault(new_group, {})[key] = value


def _probe(obj: Mapping[str, Any]) -> ProbeEntry | None:
    qualification = pod_qualification(obj)
    if qualification is None:
        return None
    info, message = probe_pod_info(obj)
    return qualification, info, message


def _busy(obj: Mapping[str, Any]) -> BusyEntry | None:
    return busy_pod(obj)


class ClusterMirrors:
    """The node and pod mirrors of one operator; `run()` until stopped, `wait_ready()` once all have listed."""

    def __init__(self, connection: Connection, namespace: str, wake: Callable[[str | None], None]) -> None:
        self.nodes: Groups[NodeInfo] = Groups()
        self.probe_pods: Groups[tuple[ProbePodInfo, str | None]] = Groups()
        self.busy: Groups[frozenset[str]] = Groups()

        def node_changed(key: str, old: NodeInfo | None, new: NodeInfo | None) -> None:
            self.nodes.move(key, old.name if old else None, new.name if new else None, new)
            wake(None)

        def probe_changed(key: str, old: ProbeEntry | None, new: ProbeEntry | None) -> None:
            self.probe_pods.move(key, old[0] if old else None, new[0] if new else None,
                                 (new[1], new[2]) if new else None)
            # Only a pod appearing, finishing or going away changes a decision; binding and starting
            # do not (the periodic reconcile still sees them, e.g. for deadlines).
            if old is None or new is None or new[1].finished != old[1].finished or new[0] != old[0] \
                    or new[1].deleting != old[1].deleting:
                for entry in (old, new):
                    if entry is not None:
                        wake(entry[0])

        def busy_changed(key: str, old: BusyEntry | None, new: BusyEntry | None) -> None:
            self.busy.move(key, old[0] if old else None, new[0] if new else None, new[1] if new else None)
            wake(None)

        self._nodes = ResourceMirror(connection, "/api/v1/nodes", parse=node_info, on_change=node_changed)
        self._probes = ResourceMirror(connection, f"/api/v1/namespaces/{namespace}/pods", parse=_probe,
                                      on_change=probe_changed, label_selector=f"{LABEL_APP_MANAGED_BY}={MANAGER}")
        # Only pods bound to a node and not finished can hold accelerators, and our own probe pods are not
        # workloads: the server filters them out (the probe mirror sees them), so each of a probe pod's
        # state changes is sent and decoded once, not twice. `!=` also matches pods without the label.
        self._workloads = ResourceMirror(connection, "/api/v1/pods", parse=_busy, on_change=busy_changed,
                                         label_selector=f"{LABEL_APP_MANAGED_BY}!={MANAGER}",
                                         field_selector="spec.nodeName!=,status.phase!=Succeeded,"
                                                        "status.phase!=Failed")

    @property
    def _mirrors(self) -> tuple[ResourceMirror[Any], ...]:
        return self._nodes, self._probes, self._workloads

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(m.run(stop) for m in self._mirrors))

    async def wait_ready(self) -> None:
        await asyncio.gather(*(m.ready.wait() for m in self._mirrors))

    @property
    def events(self) -> int:
        return sum(m.events for m in self._mirrors)

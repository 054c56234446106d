"""`Recorder`: what a rehearsal saw happen, from the API server's own watch streams.

Independent of the operator: it watches nodes, probe pods and Qualifications over HTTP
like any other client (resuming from its last resourceVersion after an error, relisting
after 410 Gone, so no change is lost), and records, with the simulated time of each:
- the timeline of node marks: joins, deletions, taints added and removed, verdict labels, cordons;
- every run of every Qualification: when it started and ended, its last phase, summary and message;
- probe concurrency per Qualification: how many probe pods existed unfinished and how many
  ran at once, against the Qualification's `maxConcurrent` resolved for the pool at that moment.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from accelqual.constants import LABEL_APP_COMPONENT, LABEL_POD_QUALIFICATION, LABEL_VERDICT, PROBE_COMPONENT
from accelqual.models import QualificationSpec, resolve_count
from accelqual.sim.simclock import SimClock

log = logging.getLogger("accelqual.sim.recorder")

Obj = dict[str, Any]
#: A share of a pool that changes size is judged against the largest pool of the last moments:
#: the operator acts on a watch that lags the recorder's by a little.
POOL_LAG_SECONDS = 2.0


class WatchStream(threading.Thread):
    """Keeps `on_change(kind, old, new)` informed of every object of one collection (None: absent)."""

    def __init__(self, base_url: str, path: str, on_change: Callable[[str, Obj | None, Obj | None], None],
                 stop: threading.Event, *, label_selector: str | None = None) -> None:
        super().__init__(name=f"recorder{path.replace('/', '-')}", daemon=True)
        self.base_url = base_url.rstrip("/")
        self.path = path
        self.on_change = on_change
        self.stop = stop
        self.label_selector = label_selector
        self.known: dict[str, Obj] = {}
        self.synced = threading.Event()
        self.errors = 0

    def _url(self, **query: str) -> str:
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        return f"{self.base_url}{self.path}?{urllib.parse.urlencode(query)}"

    def _key(self, obj: Obj) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace') or ''}/{meta.get('name')}"

    def _relist(self) -> str:
        with urllib.request.urlopen(self._url(), timeout=30) as response:
            data = json.load(response)
        fresh = {self._key(o): o for o in data.get("items") or []}
        for key in set(self.known) - set(fresh):
            self.on_change("DELETED", self.known.pop(key), None)
        for key, obj in fresh.items():
            old = self.known.get(key)
            if old is None or old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self.known[key] = obj
                self.on_change("ADDED" if old is None else "MODIFIED", old, obj)
        self.synced.set()
        return str((data.get("metadata") or {}).get("resourceVersion") or "")

    def run(self) -> None:
        rv: str | None = None
        while not self.stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                url = self._url(watch="true", resourceVersion=rv, allowWatchBookmarks="true", timeoutSeconds="30")
                with urllib.request.urlopen(url, timeout=60) as response:
                    for line in response:
                        if self.stop.is_set():
                            return
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            rv = None if obj.get("code") == 410 else rv
                            break
                        rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                        if event.get("type") == "BOOKMARK":
                            continue
                        key = self._key(obj)
                        if event.get("type") == "DELETED":
                            self.on_change("DELETED", self.known.pop(key, None), None)
                        else:
                            old = self.known.get(key)
                            self.known[key] = obj
                            self.on_change(event.get("type", "MODIFIED"), old, obj)
            except urllib.error.HTTPError as exc:
                self.errors += 1
                if exc.code == 410:
                    rv = None
                self.stop.wait(0.1)
            except (OSError, ValueError) as exc:  # connection refused/reset, an API error burst, a cut stream
                self.errors += 1
                log.debug("watch of %s interrupted: %s", self.path, exc)
                self.stop.wait(0.1)


@dataclass
class Concurrency:
    """One Qualification's probes at once, as the API server shows them."""

    max_active: int = 0  # probe pods that exist and have not finished (pending or running)
    max_running: int = 0  # probe pods in phase Running
    violations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunRecord:
    run_id: str
    started_at: str | None = None
    finished_at: str | None = None
    phase: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    phases_seen: list[str] = field(default_factory=list)


class Recorder:
    """Start it before the operator; `result()` gives the timeline, runs and concurrency."""

    def __init__(self, base_url: str, namespace: str, clock: SimClock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.timeline: list[dict[str, Any]] = []
        self.runs: dict[str, dict[str, RunRecord]] = {}
        self.concurrency: dict[str, Concurrency] = {}
        self._specs: dict[str, QualificationSpec] = {}
        self._nodes: dict[str, Obj] = {}
        self._pods: dict[str, tuple[str, str]] = {}  # pod -> (qualification, phase)
        self._limits: dict[str, deque[tuple[float, int]]] = {}
        self.touched: set[str] = set()
        selector = f"{LABEL_APP_COMPONENT}={PROBE_COMPONENT}"
        self.streams = [
            WatchStream(base_url, "/api/v1/nodes", self._node_changed, self._stop),
            WatchStream(base_url, "/apis/accelqual.io/v1alpha1/qualifications", self._qualification_changed,
                        self._stop),
            WatchStream(base_url, f"/api/v1/namespaces/{namespace}/pods", self._pod_changed, self._stop,
                        label_selector=selector),
        ]

    def start(self, timeout: float = 10.0) -> Recorder:
        for stream in self.streams:
            stream.start()
        for stream in self.streams:
            if not stream.synced.wait(timeout):
                raise RuntimeError(f"the recorder could not list {stream.path}")
        return self

    def stop(self) -> None:
        self._stop.set()
        for stream in self.streams:
            stream.join(timeout=5)

    def _stamp(self) -> str:
        return self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")

    # --- nodes ------------------------------------------------------------------------------

    def _node_changed(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        with self._lock:
            name = str(((new or old) or {}).get("metadata", {}).get("name"))
            t = self._stamp()
            if new is None:
                self._nodes.pop(name, None)
                self.timeline.append({"t": t, "node": name, "change": "deleted"})
            else:
                self._nodes[name] = new
                if old is None:
                    self.timeline.append({"t": t, "node": name, "change": "joined",
                                          "taints": [_taint(x) for x in _taints(new)]})
                else:
                    self._diff_node(t, name, old, new)
            self._update_limits()

    def _diff_node(self, t: str, name: str, old: Obj, new: Obj) -> None:
        before, after = {_taint(x) for x in _taints(old)}, {_taint(x) for x in _taints(new)}
        changes: list[dict[str, Any]] = [{"change": "taintAdded", "taint": x} for x in sorted(after - before)]
        changes += [{"change": "taintRemoved", "taint": x} for x in sorted(before - after)]
        verdict_old, verdict_new = _labels(old).get(LABEL_VERDICT), _labels(new).get(LABEL_VERDICT)
        if verdict_old != verdict_new:
            changes.append({"change": "verdict", "value": verdict_new, "previous": verdict_old})
        cordon_old, cordon_new = bool(old.get("spec", {}).get("unschedulable")), bool(
            new.get("spec", {}).get("unschedulable"))
        if cordon_old != cordon_new:
            changes.append({"change": "cordoned" if cordon_new else "uncordoned"})
        for change in changes:
            self.timeline.append({"t": t, "node": name, **change})
        if changes and any(c["change"] in ("taintAdded", "taintRemoved", "verdict", "cordoned", "uncordoned")
                           for c in changes):
            self.touched.add(name)

    def pool_size(self, spec: QualificationSpec) -> int:
        return sum(1 for n in self._nodes.values() if spec.node_selector.matches(_labels(n)))

    def _update_limits(self) -> None:
        now = time.monotonic()
        for name, spec in self._specs.items():
            history = self._limits.setdefault(name, deque())
            history.append((now, resolve_count(spec.max_concurrent, self.pool_size(spec), minimum=1)))
            while len(history) > 1 and history[1][0] < now - POOL_LAG_SECONDS:
                history.popleft()

    def _limit(self, qualification: str) -> int | None:
        history = self._limits.get(qualification)
        if not history:
            return None
        return max(limit for _, limit in history)

    # --- qualifications ---------------------------------------------------------------------

    def _qualification_changed(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            return
        with self._lock:
            name = str(new["metadata"]["name"])
            try:
                self._specs[name] = QualificationSpec.model_validate(new.get("spec") or {})
            except ValueError:
                self._specs.pop(name, None)
            self._update_limits()
            status = new.get("status") or {}
            run = status.get("runId")
            if not run:
                return
            record = self.runs.setdefault(name, {}).setdefault(str(run), RunRecord(str(run)))
            record.started_at = status.get("startedAt") or record.started_at
            record.finished_at = status.get("finishedAt") or record.finished_at
            record.phase = str(status.get("phase") or "")
            record.summary = dict(status.get("summary") or {})
            record.message = str(status.get("message") or "")
            if not record.phases_seen or record.phases_seen[-1] != record.phase:
                record.phases_seen.append(record.phase)

    # --- probe pods -------------------------------------------------------------------------

    def _pod_changed(self, kind: str, old: Obj | None, new: Obj | None) -> None:
        with self._lock:
            obj = new or old or {}
            name = str(obj.get("metadata", {}).get("name"))
            qualification = _labels(obj).get(LABEL_POD_QUALIFICATION, "")
            if new is None:
                self._pods.pop(name, None)
            else:
                self._pods[name] = (qualification, str((new.get("status") or {}).get("phase") or "Pending"))
            active = sum(1 for q, p in self._pods.values() if q == qualification and p in ("Pending", "Running"))
            running = sum(1 for q, p in self._pods.values() if q == qualification and p == "Running")
            seen = self.concurrency.setdefault(qualification, Concurrency())
            seen.max_active = max(seen.max_active, active)
            seen.max_running = max(seen.max_running, running)
            limit = self._limit(qualification)
            if limit is not None and active > limit and len(seen.violations) < 20:
                seen.violations.append({"t": self._stamp(), "active": active, "running": running, "limit": limit})

    def active_probes(self) -> int:
        with self._lock:
            return sum(1 for _, p in self._pods.values() if p in ("Pending", "Running"))

    def result(self) -> dict[str, Any]:
        with self._lock:
            return {
                "timeline": list(self.timeline),
                "runs": {q: [vars(r) for r in sorted(rs.values(), key=lambda r: r.run_id)]
                         for q, rs in sorted(self.runs.items())},
                "concurrency": {q: {"maxActive": c.max_active, "maxRunning": c.max_running,
                                    "limit": self._limit(q), "violations": list(c.violations)}
                                for q, c in sorted(self.concurrency.items())},
                "watchErrors": sum(s.errors for s in self.streams),
            }


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _taints(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((obj.get("spec") or {}).get("taints") or [])


def _taint(taint: Mapping[str, Any]) -> str:
    value = f"={taint['value']}" if taint.get("value") else ""
    return f"{taint.get('key')}{value}:{taint.get('effect')}"

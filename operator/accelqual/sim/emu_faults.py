"""Fault injection and request counters of the emulated API server, for reliability tests.

A test adds `FaultRule`s to `emulator.faults`; the emulator checks them before serving each
request: the first active rule that matches fails the request with its status (and
`Retry-After`), delays it, or — with `cut_watch_after=K` — lets a watch start and ends the
stream after K events, as a dropped connection or an API server restart would.
`RequestStats` counts served requests by `(verb, resource, subresource)`, so a test can
assert that an operator stays within an API budget (e.g. no LIST per reconcile).
`WriteLog` keeps the writes (create, update, patch, delete) to the resources a test asks
for, with their object name, body and answer, so it can count writes per object (e.g.
that each node was marked exactly once, or that no pod was created twice).
All are thread-safe: tests add rules and read counters from their own threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: The verbs a request is classified as (Kubernetes' RBAC verbs, minus the rare ones).
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")


@dataclass(eq=False)
class FaultRule:
    """One injected fault. `None` criteria match anything; `count=None` fires forever.

    - `method`: HTTP method ("GET", "PATCH", ...); `action`: the verb (see `VERBS`);
      `resource`: the plural ("pods"); `subresource`: "status", "log", ...; `name`,
      `namespace`: of the object.
    - `status`: the HTTP status to fail with (500, 409, 429, 503, ...); `None` serves the
      request normally after `delay_s` (a slow server) or cuts the watch (see below).
    - `retry_after`: seconds for a `Retry-After` header (429/503 throttling).
    - `delay_s`: sleep before answering (or failing).
    - `cut_watch_after`: for matching watches, serve normally but end the stream after this
      many events; such a rule never fails the request with `status`. With `cut_mid_event`
      the connection drops halfway through that event's line (no end of the chunked body).
    """

    method: str | None = None
    action: str | None = None
    resource: str | None = None
    subresource: str | None = None
    name: str | None = None
    namespace: str | None = None
    status: int | None = 500
    retry_after: float | None = None
    delay_s: float = 0.0
    count: int | None = 1
    cut_watch_after: int | None = None
    cut_mid_event: bool = False
    #: How many requests this rule has fired on so far.
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.action is not None and self.action not in VERBS:
            raise ValueError(f"FaultRule.action must be one of {VERBS} or None, not {self.action!r}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"FaultRule.status must be an HTTP status code, not {self.status!r}")

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def matches(self, *, method: str, verb: str, resource: str, subresource: str | None,
                namespace: str | None, name: str | None) -> bool:
        if self.cut_watch_after is not None and verb != "watch":
            return False
        return ((self.method is None or self.method.upper() == method.upper())
                and (self.action is None or self.action == verb)
                and (self.resource is None or self.resource == resource)
                and (self.subresource is None or self.subresource == subresource)
                and (self.namespace is None or self.namespace == namespace)
                and (self.name is None or self.name == name))


class FaultSet:
    """The active fault rules of an emulator (`emulator.faults`)."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: FaultRule) -> None:
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for rule in self._rules if not rule.exhausted)

    def take(self, *, method: str, verb: str, resource: str, subresource: str | None,
             namespace: str | None, name: str | None) -> FaultRule | None:
        """The first live rule matching the request, counted as fired (exhausted rules are dropped)."""
        with self._lock:
            if not self._rules:
                return None
            for rule in self._rules:
                if not rule.exhausted and rule.matches(method=method, verb=verb, resource=resource,
                                                       subresource=subresource, namespace=namespace, name=name):
                    rule.fired += 1
                    self._rules = [r for r in self._rules if not r.exhausted]
                    return rule
        return None


StatsKey = tuple[str, str, str | None]


class RequestStats:
    """Served requests by `(verb, resource, subresource)`; non-resource paths count as ("get", "", None)."""

    def __init__(self) -> None:
        self._counts: Counter[StatsKey] = Counter()
        self._lock = threading.Lock()

    def count(self, verb: str, resource: str, subresource: str | None) -> None:
        with self._lock:
            self._counts[(verb, resource, subresource)] += 1

    def snapshot(self) -> dict[StatsKey, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


#: The verbs `WriteLog` records.
WRITE_VERBS = ("create", "update", "patch", "delete")


@dataclass(frozen=True)
class WriteRecord:
    """One write request: what it targeted, what it sent (the parsed JSON body) and the HTTP status of the answer."""

    verb: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None
    status: int
    body: Any

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300


class WriteLog:
    """Writes to the resources named by `watch()` (none by default: a fleet-scale run would keep them all)."""

    def __init__(self) -> None:
        self._resources: set[str] = set()
        self._records: list[WriteRecord] = []
        self._lock = threading.Lock()

    def watch(self, resources: Iterable[str]) -> None:
        """Start recording writes to these resources (plurals, e.g. "nodes", "pods")."""
        with self._lock:
            self._resources.update(resources)

    def wants(self, verb: str, resource: str) -> bool:
        return verb in WRITE_VERBS and resource in self._resources

    def add(self, record: WriteRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self, resource: str | None = None) -> list[WriteRecord]:
        with self._lock:
            return [r for r in self._records if resource is None or r.resource == resource]

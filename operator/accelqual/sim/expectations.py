"""Checks a rehearsal's outcome against the scenario's `expect:` section (pure; one result per expectation)."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from accelqual.sim.scenario import Count, Scenario


@dataclass(frozen=True)
class Checked:
    expectation: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"expectation": self.expectation, "ok": self.ok, "detail": self.detail}


def _count(what: str, count: Count, value: int) -> Checked:
    return Checked(f"{what}: {count.describe()}", count.accepts(value), f"{value}")


def _names(names: set[str] | list[str], most: int = 8) -> str:
    ordered = sorted(names)
    more = f" and {len(ordered) - most} more" if len(ordered) > most else ""
    return ", ".join(ordered[:most]) + more if ordered else "none"


def _time(stamp: str | None) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else datetime.min.replace(tzinfo=UTC)


def _no_overlap(name: str, runs: list[dict[str, Any]]) -> Checked:
    """Each run starts after the previous one finished (run ids sort by start time)."""
    for earlier, later in itertools.pairwise(runs):
        if not earlier.get("finished_at") or _time(later.get("started_at")) < _time(earlier["finished_at"]):
            return Checked(f"runs of {name} never overlap", False,
                           f"{later['run_id']} started before {earlier['run_id']} finished")
    return Checked(f"runs of {name} never overlap", True, f"{len(runs)} runs one after the other")


def check(scenario: Scenario, outcome: dict[str, Any]) -> list[Checked]:
    """Every expectation of the scenario, checked; an empty list when the scenario has none."""
    expect = scenario.expect
    if expect is None:
        return []
    final_nodes: dict[str, dict[str, Any]] = outcome["final"]["nodes"]
    statuses: dict[str, dict[str, Any]] = outcome["final"]["qualifications"]
    runs: dict[str, list[dict[str, Any]]] = outcome["runs"]
    results: list[Checked] = []
    for name, phase in expect.phases.items():
        actual = statuses.get(name, {}).get("phase")
        results.append(Checked(f"{name} ends {phase.value}", actual == phase.value, f"{actual}"))
    for name, count in expect.runs.items():
        results.append(_count(f"runs of {name}", count, len(runs.get(name, []))))
        results.append(_no_overlap(name, runs.get(name, [])))
    verdicts = Counter(node.get("verdict") or "none" for node in final_nodes.values())
    for verdict, count in expect.verdicts.items():
        results.append(_count(f"nodes with verdict {verdict}", count, verdicts.get(verdict, 0)))
    for taint in expect.tainted:
        carrying = {n for n, node in final_nodes.items()
                    if any(t.split(":", 1)[0].split("=", 1)[0] == taint.key for t in node["taints"])}
        if taint.nodes is not None:
            wanted = set(scenario.expand(taint.nodes)) & set(final_nodes)
            extra, missing = carrying - wanted, wanted - carrying
            detail = "as expected" if not extra and not missing else \
                f"unexpected: {_names(extra)}; missing: {_names(missing)}"
            results.append(Checked(f"exactly {_names(taint.nodes)} carry {taint.key}", not extra and not missing,
                                   detail))
        if taint.count is not None:
            results.append(_count(f"nodes carrying {taint.key}", taint.count, len(carrying)))
    if expect.untouched:
        touched = set(outcome["touchedNodes"]) & set(scenario.expand(expect.untouched))
        marked = {n for n in scenario.expand(expect.untouched) if (final_nodes.get(n) or {}).get("verdict")}
        changed = touched | marked
        results.append(Checked(f"{_names(expect.untouched)} never marked", not changed,
                               f"changed: {_names(changed)}" if changed else "untouched"))
    for cond in expect.conditions:
        found = next((c for c in statuses.get(cond.qualification, {}).get("conditions") or []
                      if c.get("type") == cond.type), None)
        problems = []
        if found is None:
            problems.append("no such condition")
        else:
            if cond.status is not None and found.get("status") != cond.status:
                problems.append(f"status {found.get('status')}")
            if cond.reason is not None and found.get("reason") != cond.reason:
                problems.append(f"reason {found.get('reason')}")
            problems += [f"message lacks {text!r}" for text in cond.message_contains
                         if text not in (found.get("message") or "")]
        stated = " ".join(p for p in (cond.status, cond.reason) if p)
        results.append(Checked(f"{cond.qualification} condition {cond.type} {stated}".rstrip(), not problems,
                               "; ".join(problems) or (found or {}).get("message", "")[:300]))
    reasons = Counter(e.get("reason") for e in outcome["events"])
    for event in expect.events:
        results.append(_count(f"Events with reason {event.reason}", event.count, reasons.get(event.reason, 0)))
    for name, count in expect.skipped.items():
        total = sum(int((r.get("summary") or {}).get("skipped", 0)) for r in runs.get(name, []))
        results.append(_count(f"nodes {name} reported skipped", count, total))
    if expect.max_concurrent_respected:
        over = {q: c["violations"] for q, c in outcome["concurrency"].items() if c["violations"]}
        detail = "; ".join(f"{q}: {v[0]['active']} probes at {v[0]['t']} with a limit of {v[0]['limit']}"
                           for q, v in over.items())
        peak = ", ".join(f"{q} {c['maxActive']} (limit {c['limit']})" for q, c in outcome["concurrency"].items())
        results.append(Checked("maxConcurrent never exceeded", not over, detail or f"peak {peak or 'no probes'}"))
    if expect.probes_started is not None:
        results.append(_count("probes started", expect.probes_started, int(outcome["probesStarted"])))
    if expect.cordoned is not None:
        cordoned = {n for n, node in final_nodes.items() if node.get("unschedulable")}
        wanted_cordoned = set(scenario.expand(expect.cordoned)) & set(final_nodes)
        results.append(Checked(f"exactly {_names(expect.cordoned)} cordoned", cordoned == wanted_cordoned,
                               f"cordoned: {_names(cordoned)}"))
    for name, count in expect.max_active.items():
        seen = int((outcome["concurrency"].get(name) or {}).get("maxActive", 0))
        results.append(_count(f"most {name} probes under test at once", count, seen))
    for name, count in expect.max_running.items():
        seen = int((outcome["concurrency"].get(name) or {}).get("maxRunning", 0))
        results.append(_count(f"most {name} probes running at once", count, seen))
    return results

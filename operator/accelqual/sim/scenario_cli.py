"""`accelqual simulate --scenario FILE.yaml [--json PATH]`: rehearse a policy on a fleet's shape.

Loads and validates the scenario (a mistake is one line on stderr, exit 2), plays it against
the real operator in simulated time, prints what happened (runs, node marks, concurrency,
expectations) and writes the whole outcome as JSON. Exit 0 when every expectation holds
(or the scenario states none), 1 otherwise.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from accelqual.logs import configure_logging
from accelqual.sim.expectations import check
from accelqual.sim.rehearsal import Rehearsal
from accelqual.sim.scenario import Scenario, ScenarioError, load_scenario


def rehearse(scenario: Scenario, *, console: Console | None = None) -> dict[str, Any]:
    """Play `scenario` and return its outcome, with `expectations` and `ok` added."""
    progress = (lambda line: console.print(f"  [dim]{line}[/]")) if console is not None else None
    outcome = Rehearsal(scenario, progress=progress).run()
    results = check(scenario, outcome)
    outcome["expectations"] = [r.to_json() for r in results]
    outcome["ok"] = all(r.ok for r in results)
    return outcome


def main(path: str, json_path: str | None = None, log_level: str = "WARNING") -> int:
    configure_logging("text", log_level)
    for noisy in ("kopf", "aiohttp", "urllib3", "botocore", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.ERROR, logging.getLogger().level))
    try:
        scenario = load_scenario(path)
    except ScenarioError as exc:
        print(f"accelqual simulate: {exc}", file=sys.stderr)
        return 2
    console = Console(stderr=json_path == "-")
    t = scenario.timing
    console.print(f"Rehearsing [bold]{scenario.name}[/]: {sum(g.count for g in scenario.nodes)} nodes, "
                  f"{len(scenario.qualifications)} Qualification(s), {t.duration / 3600:g} h simulated at "
                  f"{t.time_scale:g}x")
    outcome = rehearse(scenario, console=console)
    print_outcome(console, outcome)
    if json_path:
        text = json.dumps(outcome, indent=2, sort_keys=True)
        if json_path == "-":
            print(text)
        else:
            Path(json_path).write_text(text + "\n", encoding="utf-8")
    return 0 if outcome["ok"] else 1


def print_outcome(console: Console, outcome: dict[str, Any]) -> None:
    runs = Table(title="Runs", header_style="bold")
    for column in ("qualification", "run", "started", "finished", "phase", "passed", "failed", "inconcl.",
                   "skipped", "total"):
        runs.add_column(column)
    for name, records in outcome["runs"].items():
        for r in records:
            s = r.get("summary") or {}
            runs.add_row(name, r["run_id"], _hm(r.get("started_at")), _hm(r.get("finished_at")), r["phase"],
                         *(str(s.get(k, 0)) for k in ("passed", "failed", "inconclusive", "skipped", "total")))
    console.print(runs)
    changes = Counter(e["change"] for e in outcome["timeline"])
    console.print("Node timeline: " + (", ".join(f"{n} {c}" for c, n in sorted(changes.items())) or "no changes"))
    for name, c in outcome["concurrency"].items():
        console.print(f"Probes of {name} at once (seen at the API server): at most {c['maxActive']} "
                      f"(running {c['maxRunning']}), maxConcurrent {c['limit']}")
    final = outcome["final"]["nodes"]
    verdicts = Counter(n.get("verdict") or "none" for n in final.values())
    console.print("Final verdicts: " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())))
    for name, status in outcome["final"]["qualifications"].items():
        console.print(f"Qualification {name}: [bold]{status.get('phase')}[/] {status.get('message', '')}")
    sim = outcome["simulated"]
    ended = "nothing left to happen" if sim["endedEarly"] else "its duration"
    console.print(f"Simulated {sim['start']} to {sim['end']} ({sim['seconds'] / 3600:.1f} h, ended at {ended}) "
                  f"in {outcome['wallSeconds']} s")
    for item in outcome["expectations"]:
        mark = "[green]ok[/]" if item["ok"] else "[red]FAILED[/]"
        console.print(f"  {mark} {item['expectation']} ({item['detail']})")
    if outcome["expectations"]:
        failed = sum(1 for i in outcome["expectations"] if not i["ok"])
        verdict = "[green]as expected[/]" if not failed else f"[red]{failed} expectation(s) not met[/]"
        console.print(f"Rehearsal {outcome['scenario']}: {verdict}")


def _hm(stamp: str | None) -> str:
    return stamp[5:16].replace("T", " ") if stamp else "-"

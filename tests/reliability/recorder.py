"""A pytest plugin that records what docs/reliability.md reports: outcomes, scenario counters, fuzz counts.

Loaded only by `make reliability-doc` (`pytest -p tests.reliability.recorder --reliability-results=PATH`):
it writes one JSON file with the outcome and duration of every test that ran, and the
properties tests attached to themselves (`record_property`-style user properties named
`reliability-scenario` and `fuzz-target`). `tests.reliability.render_doc` turns it into the doc.
"""

from __future__ import annotations

import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

_RESULTS: dict[str, Any] = {"tests": {}, "scenarios": {}, "fuzz": {}}
_STARTED = time.monotonic()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-results", metavar="PATH", default=None,
                     help="write test outcomes and reliability counters to this JSON file")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when != "call" and report.outcome == "passed":
        return  # setup/teardown that passed say nothing; their failures do
    entry = _RESULTS["tests"].setdefault(report.nodeid, {"outcome": "passed", "seconds": 0.0})
    if report.outcome != "passed" or report.when == "call":
        entry["outcome"] = report.outcome if entry["outcome"] == "passed" else entry["outcome"]
    entry["seconds"] = round(entry["seconds"] + report.duration, 2)
    for name, value in report.user_properties:
        if not isinstance(value, dict):
            continue
        if name == "reliability-scenario":
            _RESULTS["scenarios"][value["id"]] = {**value, "nodeid": report.nodeid}
        elif name == "fuzz-target":
            _RESULTS["fuzz"][value["target"]] = {**value, "nodeid": report.nodeid}


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--reliability-results")
    if not path:
        return
    for entry in (*_RESULTS["scenarios"].values(), *_RESULTS["fuzz"].values()):
        entry["outcome"] = _RESULTS["tests"].get(entry["nodeid"], {}).get("outcome", "unknown")
    _RESULTS["run"] = {"finished": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                       "seconds": round(time.monotonic() - _STARTED, 1), "python": platform.python_version(),
                       "machine": f"{platform.system()} {platform.machine()}"}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_RESULTS, indent=1, sort_keys=True) + "\n")

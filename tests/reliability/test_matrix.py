"""The fault matrix end to end: every row of `matrix.SCENARIOS` against the real operator, emulated API and S3.

Each scenario must end in its expected phase with a reason, every collected result must reach
the status, the node marks and S3 exactly once, no node may be tainted or released wrongly and
no duplicate probe pod may exist. The counters of each run are recorded for docs/reliability.md
(see conftest.py and render_doc.py).
"""

from __future__ import annotations

import pytest

from tests.reliability.conftest import ScenarioRecorder
from tests.reliability.harness import ScenarioRun
from tests.reliability.matrix import SCENARIOS, Scenario


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_fault_matrix_scenario_loses_nothing_and_taints_nothing_wrongly(scenario: Scenario,
                                                                         record_scenario: ScenarioRecorder) -> None:
    counters = ScenarioRun(scenario).run()
    record_scenario(scenario, counters)

    assert counters.phase == scenario.phase, counters.findings
    assert counters.reason, "the run names no reason for its final phase"
    assert counters.bad() == {}, counters.findings
    assert counters.findings == []
    assert counters.results_expected == len(scenario.nodes) - sum(
        1 for f in scenario.faults if type(f).__name__ == "DeleteNode")

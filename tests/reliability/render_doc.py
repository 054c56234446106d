"""Render docs/reliability.md from the fault matrix's rows and the results of a test run.

    python -m tests.reliability.render_doc build/reliability-results.json docs/reliability.md \
        [--fuzz build/fuzz-results.json]

The results file is written by the `tests.reliability.recorder` plugin (`make reliability-doc` runs
both). Every number in the document comes from that file: the scenario table from each scenario's
recorded counters, the fuzz table from the example counts the fuzz tests recorded, the security
table from the outcomes of the tests that make each review item testable. Nothing is typed in.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.reliability.matrix import SCENARIOS

#: Each security review item and the tests that make it testable (node ids, or prefixes of them).
SECURITY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("RBAC least privilege: exactly the documented verbs, no wildcards, no cluster-wide Secrets, every call of a "
     "real run allowed", ("tests/deploy/test_rbac.py::test_rbac_is_exactly_the_documented_least_privilege_set",
                          "tests/deploy/test_rbac.py::test_rbac_has_no_wildcards_no_cluster_wide_secrets_and_no_pod_exec",
                          "tests/deploy/test_rbac.py::test_no_secret_access_at_all_without_report_secrets",
                          "tests/deploy/test_rbac.py::test_every_role_is_bound_to_the_operators_service_account_only",
                          "tests/deploy/test_rbac.py::test_every_call_of_a_real_run_is_allowed_by_the_chart")),
    ("Probe pods carry no service-account token and no S3 credentials",
     ("tests/deploy/test_rbac.py::test_probe_pods_the_operator_created_carry_no_token_and_no_s3_credentials",
      "tests/deploy/test_rbac.py::test_rendered_probe_pod_of_a_qualification_with_report_credentials_has_none_of_them",
      "tests/deploy/test_rbac.py::test_network_policy_isolates_exactly_the_probe_pods")),
    ("Credentials never logged (all loggers at DEBUG, Events, status, every API write; Secret and environment keys)",
     ("tests/security/test_credentials_never_logged.py",)),
    ("Report digests verified on read by `accelqual report` (node reports, report.md, rejected-output evidence, "
     "the summary against status.reportSHA256)",
     ("tests/reporting/test_report_rendering.py::test_a_node_report_changed_after_the_run_is_refused_loudly",
      "tests/reporting/test_report_rendering.py::test_a_tampered_report_in_s3_is_refused",
      "tests/security/test_report_tamper.py")),
    ("No shell interpolation of user-controlled strings into probe pods (no `command`, separate argv items, "
     "exec-form ENTRYPOINT)",
     ("tests/security/test_no_shell_interpolation.py",
      "tests/deploy/test_images.py::test_probe_image_entrypoint_is_the_program_pods_pass_arguments_to")),
)

INVARIANTS = (
    "the run reaches its expected final phase (Completed, or Halted) and its condition names the reason",
    "results lost = 0: every node that finished is counted in the status, marked by the run (label, annotations) "
    "and has its evidence in S3, with the same SHA-256 in its node annotation, the run summary and S3; the status "
    "names the summary in S3 by its digest and the summary names report.md by its",
    "false passes = 0: no node passes unless its probe was honest and healthy",
    "wrong taints = 0: exactly the failed nodes carry the failure taint (only the budget's share when halted), "
    "nothing is tainted without the run's mark, another controller's taints survive",
    "written once: every S3 key has one version (bucket versioning counts PUTs), every node one verdict patch, "
    "every probe pod one successful create, one pod per node; no probe pod remains after a completed run",
    "bounded: the status stays under 16 KiB and our node annotations under 4 KiB",
)


def _outcome(tests: Mapping[str, Any], selectors: Sequence[str]) -> tuple[str, int]:
    matched = [entry for nodeid, entry in tests.items() if any(nodeid == s or nodeid.startswith(s + "::")
                                                               or nodeid.startswith(s + "[") for s in selectors)]
    if not matched:
        return "not run", 0
    failed = [e for e in matched if e["outcome"] != "passed"]
    return ("pass" if not failed else f"FAIL ({len(failed)} of {len(matched)})"), len(matched)


def render(results: Mapping[str, Any], fuzz: Mapping[str, Any] | None = None) -> str:
    scenarios: Mapping[str, Any] = results.get("scenarios") or {}
    tests: Mapping[str, Any] = results.get("tests") or {}
    run = results.get("run") or {}
    rows = [(s, scenarios.get(s.id)) for s in SCENARIOS]
    recorded = [r for _, r in rows if r is not None]

    def total(key: str) -> int:
        return sum(int(r.get(key) or 0) for r in recorded)

    passed = sum(1 for r in recorded if r.get("outcome") == "passed")
    out = [
        "# Reliability and security",
        "",
        "<!-- Generated by `make reliability-doc` (tests/reliability/render_doc.py) from the results of the test run; "
        "do not edit by hand. -->",
        "",
        "The fault matrix runs the real operator (kopf), the emulated API server with its fault injection, the "
        "simulated kubelet, modelled probes and a moto S3 with bucket versioning (`tests/reliability/`); the "
        "hostile-input suites fuzz probe output, Qualification specs and names with hypothesis (`tests/fuzz/`); the "
        "security review items are tests (`tests/security/`, `tests/deploy/`, `tests/reporting/`). Regenerate with "
        "`make reliability-doc`; `make fuzz` runs 10,000 examples per fuzz target.",
        "",
        f"Run: {run.get('finished', '?')}, {run.get('seconds', '?')} s, Python {run.get('python', '?')} on "
        f"{run.get('machine', '?')}.",
        "",
        "## Totals",
        "",
        "| scenarios | passed | faults injected | results checked | results lost | false passes | wrong taints | "
        "duplicate S3 writes | duplicate marks | duplicate pods | operator restarts |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {len(SCENARIOS)} | {passed} | {total('faults_injected')} | {total('results_expected')} | "
        f"{total('results_lost')} | {total('false_passes')} | {total('wrong_taints')} | {total('duplicate_s3_writes')} "
        f"| {total('duplicate_marks')} | {total('duplicate_pods') + total('leftover_pods')} | "
        f"{total('operator_restarts')} |",
        "",
        "## Fault matrix",
        "",
        "| scenario | what is injected | expected | result | faults | results | lost | false passes | wrong taints "
        "| restarts | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for scenario, r in rows:
        if r is None:
            out.append(f"| `{scenario.id}` | {scenario.injected} | {scenario.expected} | not run | | | | | | | |")
            continue
        result = f"pass: {r.get('phase')} ({r.get('reason')})" if r.get("outcome") == "passed" else \
            "FAIL: " + "; ".join(str(f) for f in (r.get("findings") or [r.get("outcome")]))[:300]
        out.append(f"| `{scenario.id}` | {scenario.injected} | {scenario.expected} | {_cell(result)} | "
                   f"{r.get('faults_injected')} | {r.get('results_expected')} | {r.get('results_lost')} | "
                   f"{r.get('false_passes')} | {r.get('wrong_taints')} | {r.get('operator_restarts')} | "
                   f"{r.get('seconds')} |")
    out += ["", "Every scenario asserts:", ""] + [f"- {line}" for line in INVARIANTS]
    out += ["", "## Hostile input (fuzzing)", ""]
    deep = (fuzz or {}).get("fuzz") or {}
    deep_when = ((fuzz or {}).get("run") or {}).get("finished", "")
    out += [f"| target | examples (`make test`) | examples (`make fuzz`{', ' + deep_when if deep_when else ''}) "
            "| result |", "|---|---|---|---|"]
    for target, entry in sorted((results.get("fuzz") or {}).items()):
        other = deep.get(target)
        deep_cell = f"{other['examples']} ({'pass' if other.get('outcome') == 'passed' else other.get('outcome')})" \
            if other else "-"
        out.append(f"| {target} | {entry['examples']} | {deep_cell} | "
                   f"{'pass' if entry.get('outcome') == 'passed' else entry.get('outcome')} |")
    out += ["", "Properties: probe output never passes a node unless it is an honest, consistent report of that node, "
            "never crashes the operator, and everything derived from it (status, node labels and annotations, Events, "
            "summary, report.md) stays bounded, valid and free of control, bidi/format and surrogate characters; "
            "a spec never crashes validation or planning, and a wrong field is named in the condition; names derived "
            "from names at Kubernetes' limits are valid, and the API server refuses what Kubernetes refuses.",
            "", "## Security review", "", "| item | tests | result |", "|---|---|---|"]
    for item, selectors in SECURITY:
        result, count = _outcome(tests, selectors)
        names = ", ".join(f"`{s.split('::')[-1] if '::' in s else s}`" for s in selectors)
        out.append(f"| {item} | {names} ({count}) | {result} |")
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.render_doc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="the JSON written by pytest -p tests.reliability.recorder")
    parser.add_argument("output", help="the Markdown to write (docs/reliability.md)")
    parser.add_argument("--fuzz", default=None, help="results of a `make fuzz` run, for its example counts")
    args = parser.parse_args(argv)
    results = json.loads(Path(args.results).read_text())
    fuzz = json.loads(Path(args.fuzz).read_text()) if args.fuzz and Path(args.fuzz).is_file() else None
    Path(args.output).write_text(render(results, fuzz))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

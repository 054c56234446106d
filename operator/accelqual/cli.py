"""The `accelqual` command line: `probe`, `operator`, `simulate`, `crds`, `report`.

Subcommands import their implementation lazily, so `accelqual operator` never loads
torch and `accelqual probe` never loads the Kubernetes client.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: accelqual COMMAND [ARGS]

commands:
  probe      run the standard's checks on this machine and print the report
  operator   run the operator against the cluster in KUBECONFIG or in-cluster config
  simulate   qualify a simulated accelerator fleet with the real operator
  crds       print the CustomResourceDefinitions generated from the models
  report     render a run (summary.json, run directory, s3:// URI, probe report) as Markdown or HTML

`accelqual COMMAND --help` describes each command."""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "probe":
        from accelqual_probes.cli import main as probe_main

        return probe_main(rest)
    if command == "operator":
        from accelqual.operator_main import main as operator_main

        return operator_main(rest)
    if command == "simulate":
        from accelqual.sim.simulate import main as simulate_main

        return simulate_main(rest)
    if command == "crds":
        from accelqual.crdgen import main as crds_main

        return crds_main(rest)
    if command == "report":
        from accelqual.reporting.cli import main as report_main

        return report_main(rest)
    print(f"accelqual: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""`python -m accelqual_probes ...`: the probe CLI without the operator's `accelqual` wrapper."""

import sys

from accelqual_probes.cli import main

# The guard matters: `sec.residual` spawns child processes on accelerators, and a spawned
# child imports the parent's main module; it must not start a probe run of its own.
if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

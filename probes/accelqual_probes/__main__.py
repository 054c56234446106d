"""`python -m accelqual_probes ...`: the probe CLI without the operator's `accelqual` wrapper."""

import sys

from accelqual_probes.cli import main

sys.exit(main(sys.argv[1:]))

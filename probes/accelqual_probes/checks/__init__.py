"""The built-in checks, one module per category of the standard (see `accelqual_probes.builtin`)."""

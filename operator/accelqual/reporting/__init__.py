"""Human reports of qualification runs: Markdown (also stored by the operator beside each summary) and HTML.

`accelqual report SOURCE` (`reporting.cli`) reads a run from a local file or directory
or from S3, verifies the node reports against the digests in the run's summary, and
renders it. Only `reporting.html` and `reporting.charts` need plotly; the operator
imports `reporting.markdown` alone.
"""

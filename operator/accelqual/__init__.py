"""accelqual: a Kubernetes operator that qualifies AI accelerator cards at fleet scale.

Layers (one-way): `models` <- `planning` (pure) <- `adapters` (Kubernetes, S3, metrics)
<- `handlers` (kopf glue). `sim` is the embedded emulated cluster used by
`accelqual simulate` and the end-to-end tests. The operator never imports torch.
"""

__version__ = "0.1.0"

"""kopf glue: indexes that mirror the cluster, one reconcile daemon per Qualification, thin and typed."""

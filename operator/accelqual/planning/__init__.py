"""Pure decision logic: given a Qualification's spec, a snapshot of the cluster and `now`,
decide the actions and the new status. No kopf, Kubernetes client, S3 or metrics here
(an import-linter contract enforces it), so every decision is unit-tested without a server.
"""

"""Adapters: the only modules that talk to Kubernetes, S3 and Prometheus, each behind a small interface."""

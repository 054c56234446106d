"""The Kubernetes client adapter: credential refresh is throttled, errors carry status and reason."""

from __future__ import annotations

from typing import Any

from accelqual.adapters.kube import KubeError, error_from, throttle_refresh
from kubernetes import client as k8s


def test_credential_refresh_runs_at_most_once_per_interval_even_when_the_loader_reinstalls_its_hook() -> None:
    configuration = k8s.Configuration()
    calls: list[int] = []

    def loader_hook(config: Any) -> None:
        calls.append(1)
        config.refresh_api_key_hook = loader_hook  # the kubeconfig loader does this on every refresh

    configuration.refresh_api_key_hook = loader_hook  # type: ignore[assignment]
    throttle_refresh(configuration, interval=3600)
    for _ in range(50):
        configuration.get_api_key_with_prefix("BearerToken")
    assert calls == [1]
    throttle_refresh(configuration)  # idempotent: no double wrapping
    configuration.get_api_key_with_prefix("BearerToken")
    assert calls == [1]


def test_error_from_reads_the_kubernetes_status_and_retry_after() -> None:
    error = error_from(429, b'{"kind":"Status","reason":"TooManyRequests","message":"slow down"}', "3")
    assert isinstance(error, KubeError)
    assert (error.status, error.reason, error.message, error.retry_after) == (429, "TooManyRequests", "slow down", 3.0)
    raw = error_from(502, b"<html>bad gateway</html>", None)
    assert raw.status == 502 and "bad gateway" in raw.message and raw.retry_after is None

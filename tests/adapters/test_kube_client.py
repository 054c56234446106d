"""The Kubernetes client adapter: credential refresh is throttled, errors carry status and reason, and its
connection pool fits the threads that call it."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from accelqual.adapters.kube import KubeClient, KubeError, error_from, throttle_refresh
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


def test_as_many_threads_as_the_pool_size_call_at_once_without_discarding_connections(
        caplog: pytest.LogCaptureFixture) -> None:
    """The operator's 16 I/O threads post Events at once at fleet scale: each keeps its connection."""
    threads = 16
    arrived = threading.Barrier(threads, timeout=10)
    peers: set[tuple[str, int]] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            peers.add(self.client_address)
            arrived.wait()  # every call is in flight at once
            body = b'{"kind":"Node"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kube = KubeClient.for_url(f"http://127.0.0.1:{server.server_port}", pool_size=threads)
        assert kube.configuration.connection_pool_maxsize == threads
        with caplog.at_level(logging.WARNING, logger="urllib3"), ThreadPoolExecutor(threads) as pool:
            for _ in range(2):  # the second round reuses the first round's connections
                answers = list(pool.map(lambda _: kube.get("/api/v1/nodes/n"), range(threads)))
                assert answers == [{"kind": "Node"}] * threads
        kube.close()
    finally:
        server.shutdown()
        server.server_close()
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    assert len(peers) == threads  # 16 connections for 32 calls


def test_the_pool_is_never_made_smaller_than_the_clients_default() -> None:
    configuration = k8s.Configuration(host="http://127.0.0.1:1")
    default = configuration.connection_pool_maxsize
    KubeClient(configuration, pool_size=1).close()
    assert configuration.connection_pool_maxsize == default

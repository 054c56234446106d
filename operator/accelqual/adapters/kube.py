"""A thin, raw-JSON Kubernetes client on top of the `kubernetes` package's ApiClient.

The generated typed client (kubernetes 37) validates and converts every call through
pydantic models, which costs milliseconds per request at fleet scale and hides the
wire format we must control (patch content types, resourceVersion preconditions). We
keep its configuration loading, authentication and connection pool, and speak JSON.
All calls are blocking: the handlers run them in worker threads, never on the event loop.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from accelqual.constants import API_VERSION, QUALIFICATIONS

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

#: Statuses worth retrying: throttling and transient server errors.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class KubeError(Exception):
    """A failed API call; `status` 0 means the server could not be reached."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 5.0


class KubeClient:
    """Raw JSON calls against one API server, with bounded retries for throttling and 5xx."""

    def __init__(self, configuration: k8s.Configuration, retry: RetryPolicy = RetryPolicy(),
                 timeout: float = 30.0, *, pool_size: int | None = None) -> None:
        throttle_refresh(configuration)
        if pool_size is not None and pool_size > (configuration.connection_pool_maxsize or 0):
            # A keep-alive connection for each thread that calls at once (the operator's I/O workers): the
            # client's default pool (5 per CPU, 10 on two cores) discarded the connection of every call
            # beyond it, with a warning each, when a 10,000-node run posted its Events.
            configuration.connection_pool_maxsize = pool_size
        self._api = k8s.ApiClient(configuration)
        self._retry = retry
        self._timeout = timeout

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, context: str | None = None, *,
                         pool_size: int | None = None) -> KubeClient:
        """In-cluster config when running in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
        configuration = k8s.Configuration()
        if kubeconfig is None:
            try:
                k8s_config.load_incluster_config(client_configuration=configuration)
                return cls(configuration, pool_size=pool_size)
            except k8s_config.ConfigException:
                pass
        k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        return cls(configuration, pool_size=pool_size)

    @classmethod
    def for_url(cls, url: str, token: str = "accelqual", retry: RetryPolicy = RetryPolicy(), *,
                pool_size: int | None = None) -> KubeClient:
        configuration = k8s.Configuration(host=url.rstrip("/"))
        configuration.api_key = {"authorization": f"Bearer {token}"}
        configuration.verify_ssl = False
        return cls(configuration, retry=retry, pool_size=pool_size)

    @property
    def configuration(self) -> k8s.Configuration:
        config: k8s.Configuration = self._api.configuration
        return config

    @property
    def server(self) -> str:
        return str(self._api.configuration.host)

    def close(self) -> None:
        self._api.close()

    # --- the one request primitive -------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
        text: bool = False,
        retry: bool = True,
    ) -> Any:
        """One API call; JSON (or text) response, `KubeError` on failure after retries."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        attempts = self._retry.attempts if retry else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._once(method, path, query or [], headers, body, text)
            except KubeError as exc:
                if attempt == attempts or not (exc.status in RETRY_STATUSES or exc.status == 0):
                    raise
                delay = exc.retry_after if exc.retry_after is not None else min(
                    self._retry.max_delay, self._retry.base_delay * 2 ** (attempt - 1))
                delay = min(delay, self._retry.max_delay) * (0.8 + 0.4 * random.random())
                log.debug("retrying %s %s after %s (%.2fs)", method, path, exc, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, query: Sequence[tuple[str, str]], headers: dict[str, str],
              body: Any, text: bool) -> Any:
        serialized = self._api.param_serialize(
            method=method, resource_path=path, query_params=list(query), header_params=headers, body=body,
            auth_settings=["BearerToken"],
        )
        url, header_params, payload = serialized[1], serialized[2], serialized[3]
        try:
            response: Any = self._api.call_api(method, url, header_params=header_params, body=payload,
                                               _request_timeout=self._timeout)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(0, "Unreachable", f"{type(exc).__name__}: {exc}") from None
        except k8s.ApiException as exc:
            raise KubeError(int(exc.status or 0), str(exc.reason or ""), str(exc.body or "")[:500]) from None
        data = response.read() or b""
        if response.status >= 400:
            raise error_from(response.status, data, response.getheader("Retry-After"))
        if text:
            return data.decode("utf-8", errors="replace")
        return json.loads(data) if data else None

    # --- verbs the operator uses ---------------------------------------------------------

    def get(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", path)
        return result

    def list_all(self, path: str, *, label_selector: str | None = None, page: int = 500) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query = [("limit", str(page))]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            data = self.request("GET", path, query=query)
            items.extend(data.get("items") or [])
            token = (data.get("metadata") or {}).get("continue")
            if not token:
                return items

    def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", path, body=dict(body))
        return result

    def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PATCH", path, body=body, content_type=content_type)
        return result

    def delete(self, path: str) -> None:
        self.request("DELETE", path, body={"kind": "DeleteOptions", "apiVersion": "v1",
                                           "propagationPolicy": "Background"})

    def read_log(self, namespace: str, pod: str, *, tail_lines: int, limit_bytes: int) -> str:
        text: str = self.request(
            "GET", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/log",
            query=[("tailLines", str(tail_lines)), ("limitBytes", str(limit_bytes))],
            accept="text/plain", text=True,
        )
        return text


#: Credentials are re-read at most this often (the loaders re-parse the whole kubeconfig on each refresh).
REFRESH_INTERVAL_SECONDS = 60.0


def throttle_refresh(configuration: k8s.Configuration, interval: float = REFRESH_INTERVAL_SECONDS) -> None:
    """Make the configuration's credential refresh run at most every `interval` seconds.

    The kubeconfig and in-cluster loaders install a `refresh_api_key_hook` that the client
    calls before *every* request; it reloads the kubeconfig (and scans the environment for
    proxies), which cost about 2 ms per request, more than the request itself. Rotating
    tokens (service-account tokens, exec plugins) change on the scale of minutes to hours.
    """
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is None or getattr(hook, "_accelqual_throttled", False):
        return
    last = [float("-inf")]

    def throttled(config: k8s.Configuration) -> None:
        now = time.monotonic()
        if now - last[0] >= interval:
            last[0] = now
            hook(config)
            # The kubeconfig loader re-installs its own hook on every refresh: put ours back.
            config.refresh_api_key_hook = throttled  # type: ignore[assignment]

    throttled._accelqual_throttled = True  # type: ignore[attr-defined]
    configuration.refresh_api_key_hook = throttled  # type: ignore[assignment]


def error_from(status: int, data: bytes, retry_after: str | None) -> KubeError:
    reason, message = "", data[:500].decode("utf-8", errors="replace")
    try:
        doc = json.loads(data)
        if isinstance(doc, dict):
            reason = str(doc.get("reason") or "")
            message = str(doc.get("message") or message)[:500]
    except ValueError:
        pass
    after: float | None = None
    if retry_after:
        try:
            after = float(retry_after)
        except ValueError:
            after = None
    return KubeError(status, reason, message, retry_after=after)


def node_path(name: str) -> str:
    return f"/api/v1/nodes/{quote(name)}"


def pod_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{quote(namespace)}/pods"
    return f"{base}/{quote(name)}" if name else base


def qualification_path(name: str | None = None, subresource: str | None = None) -> str:
    base = f"/apis/{API_VERSION}/{QUALIFICATIONS}"
    if name is None:
        return base
    return f"{base}/{quote(name)}" + (f"/{subresource}" if subresource else "")


def event_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace)}/events"

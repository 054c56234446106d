"""Async JSON calls for the per-node hot path (create/delete probe pods, read their logs, patch nodes).

Each node of every run costs four such calls. Through the `kubernetes` package's
ApiClient and urllib3 they cost about 0.5-0.65 ms of CPU each, plus a thread hand-off;
through aiohttp on the operator's own event loop about 0.3 ms; through `adapters.http1`'s
keep-alive connections about 0.08 ms. Same configuration and credentials as `KubeClient`
(via `adapters.watch.Connection`), same errors (`KubeError`) and the same bounded
retries for throttling and transient server errors.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import pydantic_core

from accelqual import __version__
from accelqual.adapters.http1 import Http1Pool
from accelqual.adapters.kube import RETRY_STATUSES, KubeError, RetryPolicy, error_from
from accelqual.adapters.watch import Connection, loads

#: Bodies larger than this are refused (the largest answer read here is a log tail of about 1 MiB).
MAX_BODY_BYTES = 64 * 1024 * 1024


class AsyncKube:
    """Connections of one event loop; `close()` before the loop ends."""

    def __init__(self, connection: Connection, retry: RetryPolicy | None = None, timeout: float = 30.0) -> None:
        self._connection = connection
        self._retry = retry or RetryPolicy()
        self._timeout = timeout
        self._pool: Http1Pool | None = None

    @property
    def pool(self) -> Http1Pool:
        if self._pool is None:
            self._pool = Http1Pool(self._connection.server, self._connection.ssl_context, limit=64,
                                   max_body=MAX_BODY_BYTES, timeout=self._timeout)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def request(self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (), body: Any = None,
                      content_type: str = "application/json", text: bool = False, parse: bool = True) -> Any:
        """The response's JSON (its text with `text`; None with `parse=False`, for calls whose answer is
        not used: decoding a pod object costs more than sending the request)."""
        target = path + ("?" + urlencode(list(query)) if query else "")
        # pydantic-core's encoder: a pod manifest in 9 us rather than json.dumps's 32 (one per node and run).
        data = None if body is None else pydantic_core.to_json(body)
        for attempt in range(1, self._retry.attempts + 1):
            headers = self._connection.headers()
            headers["User-Agent"] = f"accelqual/{__version__}"
            if text:
                headers["Accept"] = "text/plain"
            if data is not None:
                headers["Content-Type"] = content_type
            try:
                response = await self.pool.request(method, target, headers, data)
                if response.status >= 400:
                    raise error_from(response.status, response.body, response.headers.get("retry-after"))
            except (TimeoutError, OSError) as exc:
                error = KubeError(0, "Unreachable", f"{type(exc).__name__}: {exc}")
            except KubeError as exc:
                error = exc
            else:
                if text:
                    return response.body.decode("utf-8", errors="replace")
                return loads(response.body) if response.body and parse else None
            if attempt == self._retry.attempts or not (error.status in RETRY_STATUSES or error.status == 0):
                raise error
            delay = error.retry_after if error.retry_after is not None else \
                self._retry.base_delay * 2 ** (attempt - 1)
            await asyncio.sleep(min(delay, self._retry.max_delay) * (0.8 + 0.4 * random.random()))
        raise AssertionError("unreachable")

    async def get(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", path)
        return result

    async def create(self, path: str, body: Mapping[str, Any]) -> None:
        """Create an object (the created object is not read back)."""
        await self.request("POST", path, body=dict(body), parse=False)

    async def patch(self, path: str, body: Any, content_type: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("PATCH", path, body=body, content_type=content_type)
        return result

    async def delete(self, path: str) -> None:
        await self.request("DELETE", path, query=[("propagationPolicy", "Background")], parse=False)

    async def read_log(self, path: str, *, tail_lines: int, limit_bytes: int) -> str:
        text: str = await self.request("GET", f"{path}/log", text=True,
                                       query=[("tailLines", str(tail_lines)), ("limitBytes", str(limit_bytes))])
        return text

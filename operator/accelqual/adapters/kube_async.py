"""Async JSON calls for the per-node hot path (create/delete probe pods, read their logs, patch nodes).

Each node of every run costs four such calls. Through the `kubernetes` package's
ApiClient and urllib3 they cost about 0.5-0.65 ms of CPU each, plus a thread hand-off;
over aiohttp on the operator's own event loop, about 0.25 ms. Same configuration and
credentials as `KubeClient` (via `adapters.watch.Connection`), same errors (`KubeError`)
and the same bounded retries for throttling and transient server errors.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp

from accelqual.adapters.kube import RETRY_STATUSES, KubeError, RetryPolicy, error_from
from accelqual.adapters.watch import Connection


class AsyncKube:
    """A session per event loop; `close()` before the loop ends."""

    def __init__(self, connection: Connection, retry: RetryPolicy | None = None, timeout: float = 30.0) -> None:
        self._connection = connection
        self._retry = retry or RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout,
                                                  connector=aiohttp.TCPConnector(limit=64))
        return self._session

    async def request(self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (), body: Any = None,
                      content_type: str = "application/json", text: bool = False, parse: bool = True) -> Any:
        """The response's JSON (its text with `text`; None with `parse=False`, for calls whose answer is
        not used: decoding a pod object costs more than sending the request)."""
        url = f"{self._connection.server}{path}"
        if query:
            url += "?" + urlencode(list(query))
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        for attempt in range(1, self._retry.attempts + 1):
            headers = self._connection.headers()
            if text:
                headers["Accept"] = "text/plain"
            # A ready payload: aiohttp's lookup of a payload type for plain bytes cost more than the send.
            payload_out = None if data is None else aiohttp.BytesPayload(data, content_type=content_type)
            try:
                async with self._get_session().request(method, url, data=payload_out, headers=headers,
                                                       ssl=self._connection.ssl_context()) as response:
                    payload = await response.read()
                    if response.status >= 400:
                        raise error_from(response.status, payload, response.headers.get("Retry-After"))
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                error = KubeError(0, "Unreachable", f"{type(exc).__name__}: {exc}")
            except KubeError as exc:
                error = exc
            else:
                if text:
                    return payload.decode("utf-8", errors="replace")
                return json.loads(payload) if payload and parse else None
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

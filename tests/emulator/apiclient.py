"""A small async HTTP client for the emulator's contract tests: raw requests in, status + JSON out.

Deliberately not kopf's or the `kubernetes` client's: the contract tests assert on the wire
format (status codes, `Status` bodies, JSON lines) that those clients would hide.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"


@dataclass
class Reply:
    status: int
    body: Any
    text: str
    headers: Mapping[str, str]

    @property
    def rv(self) -> str:
        return str(self.body["metadata"]["resourceVersion"])

    @property
    def names(self) -> list[str]:
        """The names of a list reply's items, in order."""
        return [str(item["metadata"]["name"]) for item in self.body["items"]]


class WatchStream:
    """An open watch: read its JSON-lines events one at a time, with a timeout."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, per_event_s: float = 3.0) -> dict[str, Any] | None:
        """The next event, or None when the server ended the stream."""
        line = await asyncio.wait_for(self.response.content.readline(), per_event_s)
        if not line:
            return None
        event: dict[str, Any] = json.loads(line)
        return event

    async def take(self, count: int, per_event_s: float = 3.0, *, skip_bookmarks: bool = True) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        while len(events) < count:
            event = await self.next(per_event_s)
            if event is None:
                break
            if skip_bookmarks and event["type"] == "BOOKMARK":
                continue
            events.append(event)
        return events

    async def rest(self, per_event_s: float = 5.0) -> list[dict[str, Any]]:
        """Every event until the server ends the stream."""
        events: list[dict[str, Any]] = []
        while (event := await self.next(per_event_s)) is not None:
            events.append(event)
        return events

    def close(self) -> None:
        self.response.close()


class Api:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                      params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                      raw: bytes | str | None = None) -> Reply:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.session.request(method, self.url + path, data=data, params=params,
                                        headers=all_headers) as response:
            text = await response.text()
            try:
                decoded = json.loads(text) if text else None
            except ValueError:
                decoded = None
            return Reply(response.status, decoded, text, dict(response.headers))

    async def get(self, path: str, **params: str) -> Reply:
        return await self.request("GET", path, params=params or None)

    async def post(self, path: str, body: Any) -> Reply:
        return await self.request("POST", path, body)

    async def put(self, path: str, body: Any) -> Reply:
        return await self.request("PUT", path, body)

    async def patch(self, path: str, body: Any, content_type: str = MERGE) -> Reply:
        return await self.request("PATCH", path, body, content_type=content_type)

    async def delete(self, path: str, body: Any = None) -> Reply:
        return await self.request("DELETE", path, body)

    async def watch(self, path: str, **params: str) -> WatchStream:
        response = await self.session.get(self.url + path, params={"watch": "true", **params},
                                          timeout=aiohttp.ClientTimeout(total=None, sock_read=None))
        assert response.status == 200, await response.text()
        return WatchStream(response)


def node(name: str, labels: Mapping[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels or {})}, **extra}


def pod(name: str, labels: Mapping[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": dict(labels or {})},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]}, **extra}


def qualification(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "accelqual.io/v1alpha1", "kind": "Qualification", "metadata": {"name": name},
            "spec": {"nodeSelector": {"matchLabels": {"pool": "a"}}, "suite": "quick", **spec}}


QUALIFICATIONS = "/apis/accelqual.io/v1alpha1/qualifications"
NODES = "/api/v1/nodes"


def pods(namespace: str = "default") -> str:
    return f"/api/v1/namespaces/{namespace}/pods"

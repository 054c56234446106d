"""A lean list+watch mirror of one resource, for the hot paths at fleet scale.

kopf runs every watch event through its full handler pipeline (cause detection, diff
bases, handler invocation), about a millisecond per event: fine for Qualifications and
nodes, too much for pods, each of which changes state five times per run on every node
of the fleet (and, for idle detection, every workload pod of the cluster). This mirror
keeps a dict of *parsed* values (`parse(obj) -> value | None`), resumes from the last
resourceVersion (bookmarks keep it fresh), relists on 410 GoneError, reconnects with backoff
on errors, and calls `on_change(key)` so the affected reconcile can be woken.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

import aiohttp
import pydantic_core

from accelqual.adapters.kube import throttle_refresh

log = logging.getLogger("accelqual.watch")
V = TypeVar("V")

#: A watch is re-established this often even when healthy (servers cut long watches anyway).
WATCH_TIMEOUT_SECONDS = 300
MAX_LINE_BYTES = 16 * 1024 * 1024


class Connection:
    """How to reach the API server: URL, auth header and TLS, taken from the kubernetes client's configuration."""

    def __init__(self, configuration: Any) -> None:
        throttle_refresh(configuration)
        self._configuration = configuration
        self._ssl: tuple[Any, ssl.SSLContext] | None = None

    @property
    def server(self) -> str:
        return str(self._configuration.host).rstrip("/")

    def headers(self) -> dict[str, str]:
        config = self._configuration
        # get_api_key_with_prefix runs the (throttled, see adapters.kube) refresh hook of rotating tokens.
        token = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
        return {"Authorization": token, "Accept": "application/json"} if token else {"Accept": "application/json"}

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The TLS context of every request, built once per set of certificate files.

        Building one loads the CA bundle (milliseconds of CPU): per request it was most of a request's
        cost against a real (https) API server. Rotated certificate files give a new one."""
        config = self._configuration
        if not self.server.startswith("https"):
            return False
        files = (config.ssl_ca_cert, config.cert_file, config.key_file)
        key = (files, bool(config.verify_ssl), tuple(_mtime(f) for f in files))
        if self._ssl is None or self._ssl[0] != key:
            context = ssl.create_default_context(cafile=config.ssl_ca_cert) if config.ssl_ca_cert else \
                ssl.create_default_context()
            if not config.verify_ssl:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if config.cert_file:
                context.load_cert_chain(config.cert_file, config.key_file)
            self._ssl = (key, context)
        return self._ssl[1]


def _mtime(path: str | None) -> float | None:
    if not path:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def loads(data: bytes | str) -> Any:
    """An API server's JSON, decoded by pydantic-core's parser: 1.6x as fast as `json.loads` on pod objects,
    of which the operator decodes about six per node per run. Invalid JSON raises ValueError."""
    return pydantic_core.from_json(data, cache_strings="keys")


class GoneError(Exception):
    """The resourceVersion we resume from is too old: relist."""


class ResourceMirror(Generic[V]):
    """`mirror[key]` is the parsed value of the object `key` (namespace/name), kept current by a watch."""

    def __init__(self, connection: Connection, path: str, *, parse: Callable[[Mapping[str, Any]], V | None],
                 on_change: Callable[[str, V | None, V | None], None] | None = None,
                 label_selector: str | None = None, field_selector: str | None = None,
                 page_size: int = 500) -> None:
        self._connection = connection
        self._path = path
        self._parse = parse
        self._on_change = on_change
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._page_size = page_size
        self._items: dict[str, V] = {}
        self._rv = ""
        self.ready = asyncio.Event()
        self.events = 0
        self.relists = 0

    def __getitem__(self, key: str) -> V:
        return self._items[key]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def values(self) -> list[V]:
        return list(self._items.values())

    def items(self) -> list[tuple[str, V]]:
        return list(self._items.items())

    async def run(self, stop: asyncio.Event) -> None:
        """List and watch until `stop` is set; errors are logged and retried with backoff."""
        backoff = 0.5
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=WATCH_TIMEOUT_SECONDS + 60)
        async with aiohttp.ClientSession(timeout=timeout, read_bufsize=2**16) as session:
            while not stop.is_set():
                try:
                    if not self._rv:
                        await self._list(session)
                    await self._watch(session, stop)
                    backoff = 0.5
                except GoneError:
                    self._rv = ""
                except (TimeoutError, aiohttp.ClientError, ValueError, OSError) as exc:
                    log.warning("watch of %s failed (%s); retrying in %.1fs", self._path, exc, backoff)
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=backoff)
                    except TimeoutError:
                        pass
                    backoff = min(backoff * 2, 30.0)

    def _query(self, **extra: str) -> str:
        params = {k: v for k, v in (("labelSelector", self._label_selector),
                                     ("fieldSelector", self._field_selector)) if v}
        params.update(extra)
        return urlencode(params)

    async def _list(self, session: aiohttp.ClientSession) -> None:
        fresh: dict[str, V] = {}
        token = ""
        while True:
            extra = {"limit": str(self._page_size)}
            if token:
                extra["continue"] = token
            url = f"{self._connection.server}{self._path}?{self._query(**extra)}"
            async with session.get(url, headers=self._connection.headers(),
                                   ssl=self._connection.ssl_context()) as response:
                if response.status == 410:
                    token = ""
                    fresh.clear()
                    continue
                response.raise_for_status()
                data = loads(await response.read())
            if not isinstance(data, Mapping) or not isinstance(data.get("items") or [], list):
                raise ValueError(f"the list of {self._path} is not a Kubernetes list object")
            for obj in data.get("items") or []:
                if not _is_object(obj):
                    raise ValueError(f"the list of {self._path} holds an item that is not an object")
                value = self._parse(obj)
                if value is not None:
                    fresh[_key(obj)] = value
            meta = data.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                self._rv = str(meta.get("resourceVersion") or "")
                break
        old, self._items = self._items, fresh
        self.relists += 1
        self.ready.set()
        if self._on_change is not None:
            for key in set(old) | set(fresh):
                if old.get(key) != fresh.get(key):
                    self._on_change(key, old.get(key), fresh.get(key))

    async def _watch(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        query = self._query(watch="true", resourceVersion=self._rv, allowWatchBookmarks="true",
                            timeoutSeconds=str(WATCH_TIMEOUT_SECONDS))
        url = f"{self._connection.server}{self._path}?{query}"
        async with session.get(url, headers=self._connection.headers(),
                               ssl=self._connection.ssl_context()) as response:
            if response.status == 410:
                raise GoneError()
            response.raise_for_status()

            async def lines() -> None:
                # One task for the whole stream: a task and a wait per line (to race each read against
                # `stop`) cost more than decoding the line. And one read per chunk the server sent (at
                # fleet scale tens of events), split into lines here: aiohttp's readline costs a wait
                # and a buffer scan per line.
                unfinished: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_any():
                    parts = chunk.split(b"\n")
                    tail = parts.pop()
                    if parts and unfinished:
                        unfinished.append(parts[0])
                        parts[0] = b"".join(unfinished)
                        unfinished.clear()
                        size = 0
                    if tail:
                        unfinished.append(tail)
                        size += len(tail)
                        if size > MAX_LINE_BYTES:
                            raise ValueError(f"a watch event of {self._path} is over {MAX_LINE_BYTES} bytes")
                    for line in parts:
                        if line.strip():
                            self._apply(loads(line))

            reader = asyncio.ensure_future(lines())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                done, _ = await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    reader.result()  # the server ended the watch (timeoutSeconds), or an error to retry on
            finally:
                reader.cancel()
                stopper.cancel()

    def _apply(self, event: Any) -> None:
        # A malformed event ends the watch with ValueError: logged, and the watch is made again.
        if not isinstance(event, Mapping):
            raise ValueError(f"a watch event of {self._path} is not an object")
        kind = event.get("type")
        obj = event.get("object") or {}
        if not _is_object(obj):
            raise ValueError(f"a {kind} watch event of {self._path} carries no object")
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise GoneError()
            raise ValueError(f"watch error: {obj.get('message')}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self._rv = str(rv)
        if kind == "BOOKMARK":
            return
        self.events += 1
        key = _key(obj)
        old = self._items.get(key)
        new = None if kind == "DELETED" else self._parse(obj)
        if new is None:
            self._items.pop(key, None)
        else:
            self._items[key] = new
        if self._on_change is not None and old != new:
            self._on_change(key, old, new)


def _is_object(obj: Any) -> bool:
    """Whether `obj` has the shape every Kubernetes object has (a mapping whose metadata is one)."""
    return isinstance(obj, Mapping) and isinstance(obj.get("metadata") or {}, Mapping)


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))

"""Watch streams of the emulated API server (`GET ...?watch=true`), as JSON lines.

A stream starts from what `ObjectStore.open_watch` gives (synthetic ADDED events for a watch
without a resourceVersion, or the retained history after the requested one) and continues
with live events until `timeoutSeconds`, a fault rule's `cut_watch_after`, the client going
away, or the emulator shutting down. A resourceVersion older than the retained history gets
the real server's answer: HTTP 200 with one ERROR event carrying a 410 `Status` (kopf then
relists). Selectors are applied per event with the real watch cache's transformation: an
object that stops matching is sent as DELETED, one that starts matching as ADDED.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp.web

from accelqual.sim.emu_errors import ApiError, bad_request
from accelqual.sim.emu_http import int_param
from accelqual.sim.emu_patch import JsonObj
from accelqual.sim.emu_resources import ResourceSpec
from accelqual.sim.emu_selectors import FieldSelector, LabelSelector
from accelqual.sim.emu_store import ObjectStore, WatchEvent
from accelqual.sim.emu_tables import render_table, wants_table

log = logging.getLogger("accelqual.sim.emulator")

#: How often an idle stream wakes up to notice a client that went away.
IDLE_CHECK_S = 1.0


@dataclass(frozen=True)
class WatchRequest:
    """What one watch asks for, already parsed and validated by the HTTP layer."""

    spec: ResourceSpec
    matches: Callable[[JsonObj], bool]
    since: int | None
    bookmarks: bool
    bookmark_interval: float
    timeout_s: float | None
    send_initial_events_end: bool
    cut_after: int | None
    #: Drop the connection halfway through the `cut_after`-th event's line instead of ending after it.
    cut_mid_event: bool = False
    #: Turns an object into what the client asked to see (a one-row Table for `kubectl get -w`).
    render: Callable[[JsonObj], JsonObj] | None = None

    def line(self, event_type: str, event: WatchEvent) -> bytes:
        if self.render is not None:
            return _line(event_type, self.render(event.obj))
        return b'{"type":"' + event_type.encode() + b'","object":' + event.encoded_object() + b"}\n"


def parse_watch(spec: ResourceSpec, query: dict[str, str], namespace: str | None, name: str | None, *,
                accept: str | None, bookmark_interval: float, cut_after: int | None,
                cut_mid_event: bool = False) -> WatchRequest:
    """The `WatchRequest` for a `?watch=true` query on a collection (or, legacy, one named object)."""
    labels = LabelSelector.parse(query.get("labelSelector"))
    fields = FieldSelector.parse(query.get("fieldSelector"), spec.field_labels)

    def matches(obj: JsonObj) -> bool:
        meta = obj["metadata"]
        return ((namespace is None or meta.get("namespace") == namespace)
                and (name is None or meta["name"] == name)
                and labels.matches(meta.get("labels")) and fields.matches(obj))

    render = None
    if wants_table(accept):
        include = query.get("includeObject", "Metadata")

        def render(obj: JsonObj) -> JsonObj:  # `kubectl get -w`: every event is a one-row Table
            return render_table(spec, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]}, include)

    rv = query.get("resourceVersion") or None
    try:
        since = None if rv in (None, "0") else int(str(rv))
    except ValueError:
        raise bad_request(f"invalid resourceVersion {rv!r}") from None
    timeout = int_param(query, "timeoutSeconds")
    bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
    return WatchRequest(spec=spec, matches=matches, since=since, bookmarks=bookmarks,
                        bookmark_interval=bookmark_interval, timeout_s=float(timeout) if timeout is not None else None,
                        send_initial_events_end=query.get("sendInitialEvents") == "true" and bookmarks,
                        cut_after=cut_after, cut_mid_event=cut_mid_event, render=render)


def project(event: WatchEvent, matches: Callable[[JsonObj], bool]) -> str | None:
    """The event's type as a filtered watch sees it (None: not at all); selector transitions become ADDED/DELETED."""
    new_ok = matches(event.obj)
    if event.type == "MODIFIED":
        old_ok = event.old is not None and matches(event.old)
        if new_ok and old_ok:
            return "MODIFIED"
        if new_ok:
            return "ADDED"
        if old_ok:
            return "DELETED"
        return None
    return event.type if new_ok else None


def _line(event_type: str, obj: Any) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _bookmark(spec: ResourceSpec, rv: int, initial_end: bool = False) -> bytes:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return _line("BOOKMARK", {"kind": spec.kind, "apiVersion": spec.api_version, "metadata": meta})


async def serve_watch(raw_request: aiohttp.web.BaseRequest, store: ObjectStore, watch: WatchRequest,
                      closing: asyncio.Event) -> aiohttp.web.StreamResponse:
    response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    try:
        initial, watcher = store.open_watch(watch.spec, watch.since)
    except ApiError as exc:
        if exc.status != 410:
            raise
        await response.prepare(raw_request)
        await response.write(_line("ERROR", exc.status_body()))
        await response.write_eof()
        return response

    loop = asyncio.get_running_loop()
    deadline = loop.time() + watch.timeout_s if watch.timeout_s is not None else None
    next_bookmark = loop.time() + watch.bookmark_interval
    sent = 0

    def room() -> bool:
        return watch.cut_after is None or sent < watch.cut_after

    def line(event_type: str, event: WatchEvent) -> bytes:
        nonlocal sent
        sent += 1
        text = watch.line(event_type, event)
        if watch.cut_mid_event and not room():
            return text[:max(1, len(text) // 2)]  # the connection drops halfway through this event
        return text

    try:
        await response.prepare(raw_request)
        chunk = []
        for event in initial:
            projected = project(event, watch.matches)
            if projected is not None and room():
                chunk.append(line(projected, event))
        if watch.send_initial_events_end and room():  # (after a cut mid-event, no more bytes)
            chunk.append(_bookmark(watch.spec, store.resource_version, initial_end=True))
        if chunk:
            await response.write(b"".join(chunk))
        while not closing.is_set() and room():
            now = loop.time()
            if deadline is not None and now >= deadline:
                break
            transport = raw_request.transport
            if transport is None or transport.is_closing():
                break  # the client went away
            wake = min(t for t in (deadline, next_bookmark if watch.bookmarks else None, now + IDLE_CHECK_S)
                       if t is not None)
            try:
                batch: list[WatchEvent | None] = [
                    await asyncio.wait_for(watcher.queue.get(), timeout=max(0.0, wake - now))]
            except TimeoutError:
                batch = []
            while not watcher.queue.empty() and len(batch) < 1000:
                batch.append(watcher.queue.get_nowait())
            chunk = []
            for item in batch:
                if item is None:
                    break  # closed by the store (shutdown, or this consumer fell too far behind)
                projected = project(item, watch.matches)
                if projected is not None and room():
                    chunk.append(line(projected, item))
            if chunk:
                await response.write(b"".join(chunk))
            if None in batch:
                break
            if watch.bookmarks and loop.time() >= next_bookmark and watcher.queue.empty() and room():
                # Nothing is pending: every event up to the current resourceVersion was sent or
                # filtered out, so a bookmark at it is safe to resume from. Sent even while
                # filtered-out events keep coming, so that a client's inactivity timer never fires.
                await response.write(_bookmark(watch.spec, store.resource_version))
                next_bookmark = loop.time() + watch.bookmark_interval
        if watch.cut_mid_event and not room():
            # A connection that drops mid-event: no end of the chunked body, the client sees a broken payload.
            transport = raw_request.transport
            if transport is not None:
                transport.abort()
            return response
        await response.write_eof()
    except ConnectionError:
        pass  # the client disconnected mid-write: nothing left to tell it
    except Exception:  # a bug of ours, after the headers went out: end the stream, keep the server
        log.exception("the emulator's watch stream for %s failed", watch.spec.key)
    finally:
        store.close_watch(watch.spec, watcher)
    return response

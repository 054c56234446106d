"""`ClusterEmulator`: a Kubernetes API server in memory, good enough to run the real operator against.

It extends kmock's `KubernetesEmulator` (whose HTTP plumbing, request model and discovery it
reuses) with what kopf, the `kubernetes` client and kubectl need from a real server and
kmock lacks (DESIGN.md section 7): resourceVersions, uids, generations and generateName;
selectors; watches that resume from a resourceVersion (410 Gone when too old) with
bookmarks; the status subresource; merge, strategic-merge and JSON patches with 422 on a
failed `test`; PUT; optimistic concurrency; finalizers; ownerReference garbage collection;
pod logs; Table output; fault injection and request counters. The pieces live in `emu_*`
modules; this one is the HTTP front and the Python API.

Python access (`get`, `list`, `create`, `update`, `patch`, `delete`, `set_pod_log`) goes
through the same store as HTTP, so it emits watch events, and is thread-safe: from another
thread, calls are marshalled onto the emulator's event loop.

Emulator-only endpoint: `PUT /api/v1/namespaces/{ns}/pods/{name}/log` with a `text/plain`
body sets the pod's log (a real API server has no such call; the simulated kubelet uses it).
kmock's DSL reactions (`emulator['get /x'] << ...`) still work for the paths the
emulator does not serve itself (use `faults` to make resource requests fail).
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Self, TypeVar

import aiohttp.web
import attrs
import kmock
from kmock import Payload, Request

from accelqual.sim import emu_http as http
from accelqual.sim.emu_errors import ApiError, bad_request, invalid
from accelqual.sim.emu_faults import FaultRule, FaultSet, RequestStats, StatsKey, WriteLog, WriteRecord
from accelqual.sim.emu_openapi import OPENAPI_V2_PATH, openapi_v2_response
from accelqual.sim.emu_patch import JsonObj, clone, json_patch, merge_patch, strategic_merge_patch
from accelqual.sim.emu_resources import (
    RESOURCE_VERBS,
    SUBRESOURCE_VERBS,
    ResourceSpec,
    default_resources,
    resource_spec,
    spec_from_crd,
)
from accelqual.sim.emu_selectors import FieldSelector, LabelSelector
from accelqual.sim.emu_store import ObjectStore
from accelqual.sim.emu_tables import render_table, wants_table
from accelqual.sim.emu_watch import parse_watch, serve_watch

__all__ = ["ApiError", "ClusterEmulator", "FaultRule", "ResourceSpec"]

log = logging.getLogger("accelqual.sim.emulator")
T = TypeVar("T")
#: kube-apiserver's limit on a request body.
MAX_REQUEST_BYTES = 3 * 1024 * 1024
#: The emulator-only log PUT carries a probe's whole output (a real kubelet keeps logs of any size).
MAX_LOG_BYTES = 64 * 1024 * 1024
_ACTIONS = {"watch": kmock.action.WATCH, "list": kmock.action.LIST, "get": kmock.action.FETCH,
            "create": kmock.action.CREATE, "patch": kmock.action.UPDATE, "delete": kmock.action.DELETE}


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """The emulated API server; serve it with `EmulatorServer` (or any kmock/aiohttp server).

    Objects live in its own store (`get`/`list`/... below), not in kmock's `objects` view,
    which stays empty. Served in a loop of your own (`kmock.Server`), call `close_watches()`
    before shutting the server down, or aiohttp waits for the open watch streams.
    """

    #: Watch events kept per resource for resumption; older resourceVersions get 410 Gone.
    history_limit: int = 10_000
    #: Seconds between BOOKMARK events on watches that allow them.
    bookmark_interval: float = 5.0
    #: How many recent requests kmock's request log keeps (it would otherwise grow without bound).
    request_log_size: int = 200
    #: Seconds a Python call from another thread waits for the emulator loop.
    call_timeout: float = 30.0
    #: The server's time for creation/deletion timestamps; None: the real UTC time (rehearsals
    #: pass a simulated clock, so that object ages agree with the operator's `now`).
    clock: Callable[[], datetime] | None = None

    _store: ObjectStore = attrs.field(init=False)
    _specs: dict[str, ResourceSpec] = attrs.field(init=False, factory=dict)
    _aliases: dict[str, ResourceSpec] = attrs.field(init=False, factory=dict)
    _faults: FaultSet = attrs.field(init=False, factory=FaultSet)
    _stats: RequestStats = attrs.field(init=False, factory=RequestStats)
    _writes: WriteLog = attrs.field(init=False, factory=WriteLog)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(init=False, default=None)
    _closing: asyncio.Event = attrs.field(init=False, factory=asyncio.Event)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._store = ObjectStore(history_limit=self.history_limit, watch_queue_limit=self.history_limit,
                                  clock=self.clock)
        for spec in default_resources():
            self.register_spec(spec)
        for namespace in ("default", "kube-system"):
            self._store.create(self._specs["/v1/namespaces"], None, {
                "metadata": {"name": namespace}, "status": {"phase": "Active"}})

    # --- registration and introspection -------------------------------------------------------

    def register(self, group: str, version: str, plural: str, *, kind: str, namespaced: bool,
                 subresources: Iterable[str] = (), short_names: Iterable[str] = (),
                 printer_columns: Sequence[Mapping[str, Any]] = (), categories: Iterable[str] = (),
                 field_labels: Iterable[str] = (), builtin: bool | None = None) -> ResourceSpec:
        """Serve one more resource (group '' for core); returns its spec."""
        return self.register_spec(resource_spec(
            group, version, plural, kind=kind, namespaced=namespaced, subresources=subresources,
            short_names=short_names, printer_columns=printer_columns, categories=categories,
            field_labels=field_labels, builtin=builtin))

    def register_spec(self, spec: ResourceSpec) -> ResourceSpec:
        self._specs[spec.key] = spec
        self._store.add_resource(spec)
        self._resources[kmock.resource(spec.group, spec.version, spec.plural)] = kmock.ResourceInfo(
            kind=spec.kind, namespaced=spec.namespaced, singular=spec.singular_name,
            verbs=set(RESOURCE_VERBS),
            shortnames=set(spec.short_names), categories=set(spec.categories), subresources=set(spec.subresources))
        for alias in (spec.key, f"{spec.version}/{spec.plural}" if not spec.group else "",
                      f"{spec.plural}.{spec.group}" if spec.group else "", *spec.short_names):
            if alias:
                self._aliases[alias] = spec
        self._aliases.setdefault(spec.plural, spec)  # a bare plural means the first (core) one
        return spec

    def spec(self, resource: str) -> ResourceSpec:
        """The resource named by plural, `plural.group`, `group/version/plural`, `v1/plural` or short name."""
        found = self._aliases.get(resource)
        if found is None:
            raise KeyError(f"the emulator serves no resource {resource!r}")
        return found

    @property
    def faults(self) -> FaultSet:
        return self._faults

    @property
    def write_log(self) -> WriteLog:
        """Writes to the resources a test asked for (`emulator.write_log.watch(["nodes"])`), with their answers."""
        return self._writes

    def stats(self) -> dict[StatsKey, int]:
        """Requests served so far by (verb, resource plural, subresource); faulted ones included."""
        return self._stats.snapshot()

    def reset_stats(self) -> None:
        self._stats.reset()

    @property
    def resource_version(self) -> int:
        return self._store.resource_version

    def open_watches(self) -> int:
        return self._call(self._store.open_watch_count)

    def close_watches(self) -> None:
        """End every open watch stream (before a server shuts down, so it need not wait for them)."""
        def close() -> None:
            self._closing.set()
            self._store.close_all_watches()
        self._call(close)

    # --- kmock integration ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._closing.clear()
        return await super().__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        self._closing.set()
        self._store.close_all_watches()
        await super().__aexit__(*exc)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if raw_request.path == OPENAPI_V2_PATH:  # for kubectl's client-side validation (emu_openapi)
            self._stats.count("get", "", None)
            return openapi_v2_response(raw_request.headers.get("Accept"))
        route = http.parse_route(raw_request.path)
        if route is None or route.plural is None:
            self._stats.count("get", "", None)
            response = await super().__call__(raw_request)  # discovery, /version, DSL reactions
            self._trim_request_log()
            return response
        # The real API server's body limit (3 MiB); more for the emulator-only log PUT (probe output).
        limit = MAX_LOG_BYTES if route.subresource == "log" else MAX_REQUEST_BYTES
        if (raw_request.content_length or 0) > limit:
            return http.error_response(ApiError(413, f"Request entity too large: limit is {limit}",
                                                reason="RequestEntityTooLarge"))
        raw_request = raw_request.clone(client_max_size=limit)  # aiohttp's own default is 1 MiB
        body = await raw_request.read()
        query = dict(raw_request.query)
        verb = http.verb_of(raw_request.method, route, query)
        content_type = http.content_type_of(raw_request.headers)
        data: Any = None
        if body and http.is_json_content(content_type):
            try:
                data = json.loads(body)
            except ValueError:
                data = None  # reported as a 400 by the handler that needs the body
        request = Request(
            id=len(self._requests), method=raw_request.method, url=raw_request.url, params=query,
            headers=dict(raw_request.headers), body=body, text=body.decode("utf-8", errors="replace"), data=data,
            action=_ACTIONS.get(verb), resource=kmock.resource(route.group, route.version, route.plural),
            namespace=route.namespace, name=route.name, subresource=route.subresource, raw_request=raw_request)
        self._requests.append(request)
        self._trim_request_log()
        return await self._handle(request)

    async def _handle(self, request: Request) -> aiohttp.web.StreamResponse:
        if request.resource is None or request.resource.plural is None:
            return await super()._handle(request)
        verb = http.verb_of(request.method.value, http.Route(
            request.resource.group or "", request.resource.version or "", request.resource.plural,
            request.namespace, request.name, request.subresource), dict(request.params))
        self._stats.count(verb, request.resource.plural, request.subresource)
        try:
            response = await self._serve(request, verb)
        except ApiError as exc:
            response = http.error_response(exc)
        except Exception as exc:  # a bug of ours must reach the client as a 500, not a dropped connection
            log.exception("the emulator failed to serve %s %s", request.method.value, request.url)
            response = http.error_response(ApiError(500, f"emulator error: {exc!r}"))
        if self._writes.wants(verb, request.resource.plural):
            name = request.name
            if name is None and isinstance(request.data, dict):
                name = (request.data.get("metadata") or {}).get("name")
            self._writes.add(WriteRecord(verb, request.resource.plural, request.subresource, request.namespace,
                                         name, response.status, clone(request.data)))
        return response

    def _trim_request_log(self) -> None:
        keep = self.request_log_size
        if len(self._requests) > 2 * keep:
            del self._requests[:-keep]
        for level in self._errors:  # kmock also keeps every error it rendered (e.g. 404s of unknown paths)
            if len(level) > 2 * keep:
                del level[:-keep]

    async def _serve_version(self, request: Request) -> Payload:
        # kmock lists subresources with their parent's verbs and short names (kubectl then warns that
        # `aq` "could also match qualifications/status"), and the core group as "/v1".
        payload = await super()._serve_version(request)
        if isinstance(payload, dict):
            payload["groupVersion"] = payload["groupVersion"].lstrip("/")
            for item in payload.get("resources", []):
                if "/" in item["name"]:
                    item["verbs"] = list(SUBRESOURCE_VERBS.get(item["name"].split("/", 1)[1], ("get",)))
                    item["shortNames"], item["categories"] = [], []
                else:
                    item["verbs"] = sorted(item["verbs"])
        return payload

    # --- serving -------------------------------------------------------------------------------

    def _resolve(self, request: Request) -> ResourceSpec:
        assert request.resource is not None
        spec = self._specs.get(f"{request.resource.group}/{request.resource.version}/{request.resource.plural}")
        if spec is None:
            raise ApiError(404, f"the server could not find the requested resource ({request.url.path})")
        if request.subresource is not None and request.subresource not in spec.subresources:
            raise ApiError(404, f"{spec.plural}/{request.subresource} is not a subresource the server has")
        wrong_scope = (request.namespace is not None if not spec.namespaced
                       else request.name is not None and request.namespace is None)
        if wrong_scope:
            raise ApiError(404, f"the server could not find the requested resource ({request.url.path})")
        return spec

    async def _serve(self, request: Request, verb: str) -> aiohttp.web.StreamResponse:
        spec = self._resolve(request)
        cut = await self._apply_faults(request, verb)
        sub, query = request.subresource, dict(request.params)
        if query.get("dryRun") and verb in ("create", "update", "patch", "delete"):
            # Refused loudly: performing the write would be worse than a clear error.
            raise ApiError(400, "dryRun is not supported by the accelqual emulator; the request was not applied")
        if verb == "watch":
            return await self._watch(request, spec, query, cut)
        if verb == "list":
            return self._list(request, spec, query)
        namespace, name = request.namespace, request.name or ""  # named for every verb below but create
        if verb == "get" and sub == "log":
            text = self._store.get_log(namespace or "", name)
            return aiohttp.web.Response(body=http.slice_log(text, http.int_param(query, "tailLines"),
                                                            http.int_param(query, "limitBytes")),
                                        content_type="text/plain", charset="utf-8")
        if verb == "get":
            obj = self._store.get(spec, namespace, name)
            if wants_table(request.headers.get("Accept")):
                return http.json_response(render_table(spec, [obj], {"resourceVersion": str(self.resource_version)},
                                                       query.get("includeObject", "Metadata")))
            return http.json_response(obj)
        if verb == "create" and sub == "binding":
            return self._bind(request, spec)
        if verb == "create" and request.name is None:
            return http.json_response(self._create(spec, request.namespace, self._body_object(request)), 201)
        if verb == "update" and sub == "log":
            self._store.set_log(namespace or "", name, request.body.decode("utf-8", errors="replace"))
            return http.json_response(http.success_status("log stored (emulator-only endpoint)"))
        if verb == "update" and sub in (None, "status"):
            body = self._body_object(request)
            return http.json_response(self._store.modify(spec, namespace, name, lambda _old: body,
                                                         subresource=sub))
        if verb == "patch" and sub in (None, "status"):
            mutate = self._patcher(spec, http.content_type_of(request.headers), request.data)
            return http.json_response(self._store.modify(spec, namespace, name, mutate, subresource=sub))
        if verb == "delete" and sub is None:
            return self._delete(request, spec, query)
        raise ApiError(405, f"{request.method.value} is not supported on {request.url.path}")

    async def _apply_faults(self, request: Request, verb: str) -> FaultRule | None:
        """Apply the first matching fault rule; the rule when it cuts a watch (see `FaultRule.cut_watch_after`)."""
        plural = request.resource.plural if request.resource is not None else None
        rule = self._faults.take(method=request.method.value, verb=verb, resource=plural or "",
                                 subresource=request.subresource, namespace=request.namespace, name=request.name)
        if rule is None:
            return None
        if rule.delay_s > 0:
            await asyncio.sleep(rule.delay_s)
        if rule.cut_watch_after is not None:
            return rule
        if rule.status is not None:
            raise ApiError(rule.status, f"injected fault: HTTP {rule.status} for {verb} {request.url.path}",
                           retry_after=rule.retry_after)
        return None

    def _body_object(self, request: Request) -> JsonObj:
        if not isinstance(request.data, dict):
            raise bad_request("the request body must be a JSON object")
        return request.data

    def _create(self, spec: ResourceSpec, namespace: str | None, body: JsonObj) -> JsonObj:
        crd_spec = None
        if spec.key == "apiextensions.k8s.io/v1/customresourcedefinitions":
            try:
                crd_spec = spec_from_crd(body)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise invalid(spec.plural, spec.group, None, f"invalid CustomResourceDefinition: {exc}") from None
        obj = self._store.create(spec, namespace, body)
        if crd_spec is not None and crd_spec.key not in self._specs:
            self.register_spec(crd_spec)  # a created CRD is served at once, as on a real server
        return obj

    def _patcher(self, spec: ResourceSpec, content_type: str, body: Any) -> Callable[[JsonObj], Any]:
        if content_type == http.PATCH_TYPES["apply"]:
            raise ApiError(415, "server-side apply (application/apply-patch+yaml) is not supported by the accelqual "
                                "emulator; use a merge patch, a strategic merge patch or a JSON patch")
        if content_type not in http.PATCH_TYPES.values():
            raise ApiError(415, f"the body of the request was in an unknown format ({content_type}) - accepted media "
                                f"types include: application/json-patch+json, application/merge-patch+json, "
                                f"application/strategic-merge-patch+json")
        if body is None:
            raise bad_request("the patch body is not valid JSON")
        if content_type == http.PATCH_TYPES["json"]:
            return lambda old: json_patch(old, body)
        if not isinstance(body, dict):
            raise bad_request("a merge patch must be a JSON object")
        if content_type == http.PATCH_TYPES["strategic"]:
            if not spec.builtin:
                raise ApiError(415, f"strategic merge patch is not supported for custom resources ({spec.plural}."
                                    f"{spec.group}); use application/merge-patch+json")
            return lambda old: strategic_merge_patch(old, body)
        return lambda old: merge_patch(old, body)

    def _delete(self, request: Request, spec: ResourceSpec, query: dict[str, str]) -> aiohttp.web.StreamResponse:
        assert request.name is not None
        options = request.data if isinstance(request.data, dict) else {}
        preconditions = options.get("preconditions") or {}
        propagation = str(options.get("propagationPolicy") or query.get("propagationPolicy") or "Background")
        obj = self._store.delete(spec, request.namespace, request.name, propagation=propagation,
                                 precondition_uid=preconditions.get("uid"),
                                 precondition_rv=preconditions.get("resourceVersion"))
        pending = obj["metadata"].get("deletionTimestamp") and obj["metadata"].get("finalizers")
        return http.json_response(obj, 202 if pending else 200)

    def _bind(self, request: Request, spec: ResourceSpec) -> aiohttp.web.StreamResponse:
        assert request.name is not None
        target = (self._body_object(request).get("target") or {}).get("name")
        if not target:
            raise invalid(spec.plural, spec.group, request.name, "Binding.target.name: Required value")

        def bind(old: JsonObj) -> Any:
            bound = (old.get("spec") or {}).get("nodeName")
            if bound:
                raise ApiError(409, f'pod {request.name} is already assigned to node "{bound}"', reason="Conflict")
            return merge_patch(old, {"spec": {"nodeName": target}})
        self._store.modify(spec, request.namespace, request.name, bind)
        return http.json_response(http.success_status(code=201), 201)

    def _list(self, request: Request, spec: ResourceSpec, query: dict[str, str]) -> aiohttp.web.StreamResponse:
        labels = LabelSelector.parse(query.get("labelSelector"))
        fields = FieldSelector.parse(query.get("fieldSelector"), spec.field_labels)
        limit = http.int_param(query, "limit") or None
        list_rv, start = self.resource_version, None
        if query.get("continue"):
            list_rv, start = http.decode_continue(query["continue"])
        found: list[tuple[tuple[str, str], JsonObj]] = []
        token = None
        everything = labels.empty and fields.empty
        for key, obj in self._store.items(spec, request.namespace, after=start):
            if not everything and not (labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)):
                continue
            if limit is not None and len(found) == limit:
                token = http.encode_continue(list_rv, *found[-1][0])
                break
            found.append((key, obj))
        meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
        if token:
            meta["continue"] = token
        if wants_table(request.headers.get("Accept")):
            return http.json_response(render_table(spec, [obj for _, obj in found], meta,
                                                   query.get("includeObject", "Metadata")))
        head = json.dumps({"apiVersion": spec.api_version, "kind": f"{spec.kind}List", "metadata": meta},
                          separators=(",", ":")).encode()
        items = b",".join(self._store.encoded(spec, key) for key, _ in found)
        return aiohttp.web.Response(body=head[:-1] + b',"items":[' + items + b"]}", content_type="application/json")

    async def _watch(self, request: Request, spec: ResourceSpec, query: dict[str, str],
                     cut: FaultRule | None) -> aiohttp.web.StreamResponse:
        assert request._raw_request is not None  # always set for requests that came over HTTP
        watch = parse_watch(spec, query, request.namespace, request.name, accept=request.headers.get("Accept"),
                            bookmark_interval=self.bookmark_interval,
                            cut_after=cut.cut_watch_after if cut is not None else None,
                            cut_mid_event=cut is not None and cut.cut_mid_event)
        return await serve_watch(request._raw_request, self._store, watch, self._closing)

    # --- the thread-safe Python API ------------------------------------------------------------

    def _call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the emulator loop (inline when already there or when no loop is running)."""
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return fn()
        try:
            if asyncio.get_running_loop() is loop:
                return fn()
        except RuntimeError:
            pass  # no loop in this thread: marshal
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # delivered to the calling thread
                future.set_exception(exc)
        loop.call_soon_threadsafe(run)
        return future.result(timeout=self.call_timeout)

    def get(self, plural: str, namespace: str | None, name: str) -> JsonObj | None:  # type: ignore[override]
        """A deep copy of one object, or None when absent (kmock's HTTP `get` is `request('GET', ...)`)."""
        spec = self.spec(plural)

        def read() -> JsonObj | None:
            try:
                return clone(self._store.get(spec, namespace, name))
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise
        return self._call(read)

    def create(self, plural: str, body: Mapping[str, Any], namespace: str | None = None) -> JsonObj:
        """Create an object (emits ADDED); raises `ApiError` (409 AlreadyExists, 422 Invalid, ...)."""
        spec, doc = self.spec(plural), clone(dict(body))
        return self._call(lambda: clone(self._create(spec, namespace, doc)))

    def update(self, plural: str, namespace: str | None, name: str, body: Mapping[str, Any], *,
               subresource: str | None = None) -> JsonObj:
        """Replace an object (PUT semantics; 409 on a stale metadata.resourceVersion)."""
        spec, doc = self.spec(plural), clone(dict(body))
        return self._call(lambda: clone(self._store.modify(spec, namespace, name, lambda _old: doc,
                                                           subresource=subresource)))

    def patch(self, plural: str, namespace: str | None, name: str, patch: Any, *,  # type: ignore[override]
              patch_type: str = "merge", subresource: str | None = None) -> JsonObj:
        """Patch an object; `patch_type` is merge | strategic | json (or a patch content type)."""
        spec, body = self.spec(plural), clone(patch)
        content_type = http.PATCH_TYPES.get(patch_type, patch_type)
        mutate = self._patcher(spec, content_type, body)
        return self._call(lambda: clone(self._store.modify(spec, namespace, name, mutate,
                                                           subresource=subresource)))

    def delete(self, plural: str, namespace: str | None, name: str, *,  # type: ignore[override]
               propagation: str = "Background") -> JsonObj:
        """Delete an object (with finalizers: mark it); returns its last state; 404 `ApiError` if absent."""
        spec = self.spec(plural)
        return self._call(lambda: clone(self._store.delete(spec, namespace, name, propagation=propagation)))

    def set_pod_log(self, namespace: str, name: str, text: str) -> None:
        """Set the text `GET .../pods/{name}/log` returns (the pod must exist)."""
        self._call(lambda: self._store.set_log(namespace, name, text))

    def pod_log(self, namespace: str, name: str) -> str:
        return self._call(lambda: self._store.get_log(namespace, name))

    # Last in the class: from here on, `list` in this class body would mean this method.
    def list(self, plural: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> builtins.list[JsonObj]:
        """Deep copies of the matching objects, sorted by namespace and name."""
        spec = self.spec(plural)
        labels = LabelSelector.parse(label_selector)
        fields = FieldSelector.parse(field_selector, spec.field_labels)
        return self._call(lambda: [clone(obj) for _, obj in self._store.items(spec, namespace)
                                   if labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)])

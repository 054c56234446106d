"""HTTP details of the emulated API server: URL routes, verbs, responses, paging tokens, log slicing.

kmock's own path parser misreads the `namespaces` resource (`/api/v1/namespaces/NAME` becomes
"namespace NAME, no resource", and `/api/v1/namespaces` fails to parse), so resource URLs are
routed here; everything else (discovery, `/version`) stays with kmock.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import aiohttp.web

from accelqual.sim.emu_errors import ApiError, bad_request

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
_JSON_TYPES = ("application/json", *PATCH_TYPES.values())


@dataclass(frozen=True)
class Route:
    """A resource URL: /api/v1/... or /apis/GROUP/VERSION/... (plural None for discovery)."""

    group: str
    version: str
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_route(path: str) -> Route | None:
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return Route(group, version)
    namespace = None
    # /namespaces/X/status and /namespaces/X/finalize are the Namespace's own subresources.
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    return Route(group, version, plural=rest[0], namespace=namespace,
                 name=rest[1] if len(rest) > 1 else None, subresource="/".join(rest[2:]) or None)


def verb_of(method: str, route: Route, query: dict[str, str]) -> str:
    """The Kubernetes verb of a resource request (RBAC's names; deletecollection included)."""
    method = method.upper()
    if method == "GET":
        if query.get("watch") in ("true", "1"):
            return "watch"
        return "get" if route.name else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if route.name else "deletecollection"
    return method.lower()


def is_json_content(content_type: str) -> bool:
    return content_type in _JSON_TYPES or content_type.endswith("+json")


def content_type_of(headers: Any) -> str:
    return str(headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()


def json_response(body: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status,
                                content_type="application/json")


def error_response(error: ApiError) -> aiohttp.web.Response:
    response = json_response(error.status_body(), status=error.status)
    if error.retry_after is not None:
        response.headers["Retry-After"] = f"{error.retry_after:g}"
    return response


def success_status(message: str = "", code: int = 200) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code,
            "message": message}


def encode_continue(rv: int, namespace: str, name: str) -> str:
    raw = json.dumps({"rv": rv, "start": [namespace, name]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error):
        raise bad_request(f"invalid continue token {token!r}") from None


def int_param(query: dict[str, str], name: str, *, minimum: int = 0) -> int | None:
    value = query.get(name)
    if value in (None, ""):
        return None
    try:
        number = int(str(value))
    except ValueError:
        raise bad_request(f"{name}: invalid integer {value!r}") from None
    if number < minimum:
        raise bad_request(f"{name}: must be at least {minimum}, got {number}")
    return number


def slice_log(text: str, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    """`kubectl logs --tail/--limit-bytes` semantics: the last N lines, then the first M bytes of those."""
    data = text.encode("utf-8")
    if tail_lines is not None:
        lines = re.findall(rb"[^\n]*\n|[^\n]+\Z", data)  # Kubernetes counts '\n'-terminated lines
        data = b"".join(lines[-tail_lines:]) if tail_lines > 0 else b""
    if limit_bytes is not None:
        data = data[:limit_bytes]
    return data

"""The emulated API server's OpenAPI endpoints, as far as `kubectl apply` needs them.

kubectl validates what it applies (`--validate=strict`, the default) with the schema
from `GET /openapi/v2` (protobuf, gnostic's `openapi_v2.Document`); without that document
it refuses to apply anything ("failed to download openapi"). The emulator answers with a
valid document that describes no kinds: kubectl's client-side validation then has no
schema to apply and lets every object through (as it does for CRDs without a published
schema), and the emulator validates custom resources against their CRD schema itself
(422, see `emu_schema`). Built-in kinds are not validated by anyone here: a real API
server would. `GET /openapi/v3` stays 404, which kubectl reads as "this server does not
do server-side field validation" and which keeps it on the client-side path above.

The document is encoded by hand (two protobuf fields; no protobuf runtime needed):
`swagger = 1` ("2.0") and `info = 2` (`title = 1`, `version = 2`). A client asking for
JSON (`kubectl get --raw /openapi/v2`) gets the same document as JSON.
"""

from __future__ import annotations

import json

import aiohttp.web

OPENAPI_V2_PATH = "/openapi/v2"
TITLE = "accelqual emulated Kubernetes API"
VERSION = "v1.33.0-accelqual-emulator"


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2) with a payload shorter than 128 bytes."""
    if len(payload) >= 128:
        raise ValueError("only short payloads are encoded here")
    return bytes([number << 3 | 2, len(payload)]) + payload


def document_protobuf() -> bytes:
    info = _field(1, TITLE.encode()) + _field(2, VERSION.encode())
    return _field(1, b"2.0") + _field(2, info)


def document_json() -> dict[str, object]:
    return {"swagger": "2.0", "info": {"title": TITLE, "version": VERSION}, "paths": {}, "definitions": {}}


def openapi_v2_response(accept: str | None) -> aiohttp.web.Response:
    """The document in the encoding the client asked for (protobuf unless it asks for JSON only)."""
    if accept and "protobuf" not in accept and "json" in accept:
        return aiohttp.web.Response(body=json.dumps(document_json()).encode(), content_type="application/json")
    # The media type kubectl asks for has an '@', which Go's mime parser rejects in a response;
    # the real API server answers octet-stream as well.
    return aiohttp.web.Response(body=document_protobuf(), content_type="application/octet-stream")

"""API errors of the emulated Kubernetes server, rendered as Kubernetes `Status` objects.

Every failure the emulator reports (404, 409, 410, 422, 415, ...) is an `ApiError`: the store,
the patch engines and the HTTP layer raise it, and the HTTP layer turns it into the same
`Status` JSON a real API server sends, so that kopf and the `kubernetes` client classify it
exactly as they would in a real cluster (e.g. kopf's `APIUnprocessableEntityError` on 422).
"""

from __future__ import annotations

from typing import Any

#: The `reason` a real API server puts into a `Status` for each code (k8s.io/apimachinery StatusReason).
REASONS: dict[int, str] = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}

CONFLICT_MESSAGE = "the object has been modified; please apply your changes to the latest version and try again"


class ApiError(Exception):
    """A failed API request: HTTP status, Kubernetes reason and a human message."""

    def __init__(self, status: int, message: str, *, reason: str | None = None,
                 details: dict[str, Any] | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason or REASONS.get(status, "Unknown")
        self.details = details
        self.retry_after = retry_after

    def status_body(self) -> dict[str, Any]:
        """The `Status` object a real API server returns for this error."""
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": self.message, "reason": self.reason, "code": self.status}
        if self.details:
            body["details"] = self.details
        return body


def _details(kind_plural: str, group: str, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": kind_plural}
    if group:
        details["group"] = group
    if name:
        details["name"] = name
    return details


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, f'{_qualified(plural, group)} "{name}" not found', details=_details(plural, group, name))


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, f'{_qualified(plural, group)} "{name}" already exists', reason="AlreadyExists",
                    details=_details(plural, group, name))


def conflict(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {CONFLICT_MESSAGE}',
                    reason="Conflict", details=_details(plural, group, name))


def invalid(plural: str, group: str, name: str | None, message: str, *, kind: str | None = None,
            causes: list[dict[str, str]] | None = None) -> ApiError:
    """422 Invalid. With `kind` and `causes` ({reason, message, field}) as a real server sends them,
    kubectl prints `The KIND "NAME" is invalid:` and one line per offending field."""
    details = _details(kind or plural, group, name)
    if causes:
        details["causes"] = causes
    return ApiError(422, message, details=details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def gone(message: str) -> ApiError:
    return ApiError(410, message)
